"""Every condition and Event `reason` the operator can write, collected from its source.

Reasons are string literals spread over the backends, reconcile and handlers; a reason
reaches the API by a few roads only, the *sinks*:

- condition builders: `Condition(type, status, reason, ...)`, `healthy_conditions(reason)`,
  `_conditions(ready, stalled, reason, ...)`, `_progress_conditions(phase, reason, ...)`,
  a dict literal with a `"reason"` key (a condition written by hand);
- Event builders: `events.normal/warning(body, reason, ...)` (also through a local
  alias such as `emit`), `kopf.event(..., reason=)`, `_event(body, type, reason, ...)`,
  a tuple appended to a list named `events` (`(reason, message)` or
  `(type, reason, message)`);
- carriers whose value later becomes a reason: `code=` / `reason=` keywords of any
  call (errors, observations, plans), `Plan(verb, reason)` / `TokenPlan(verb, reason)`,
  assignments to an attribute `.reason`, defaults of parameters named `code`/`reason`.

A Replication whose server gave no reason has its phase as the reason
(`seen.reason or phase`), so an attribute `.phase` resolves to the phases of
`backends/base.py`.

At each sink the argument is resolved: a literal is a reason; `a if c else b`, `a or b`
and `{...}.get(k, d)` are resolved part by part; a name bound in the same function or
module is resolved through its assignments; a call to a function of the package
(`reason_from_error`) through its `return` statements. What stays is allowed only if it
passes on a reason that was itself collected at a sink: an attribute `.code` or
`.reason` (every write of those is a sink), a `"reason"` read back from a condition, or
a parameter of a sink function (its callers are sinks), the loop variable of a `for` over
a list named `events` (filled by `append` sinks). Anything else fails the
collection, naming the file and line: so a reason cannot reach the API unseen.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "replication_operator"

# (callee name, index of the reason among the positional arguments)
POSITIONAL_SINKS = {
    "Condition": 2, "healthy_conditions": 0, "_conditions": 2, "_progress_conditions": 1,
    "normal": 1, "warning": 1, "emit": 1, "_event": 2, "Plan": 1, "TokenPlan": 1,
}
KEYWORD_SINKS = {"code", "reason"}
EVENT_TYPES = {"Normal", "Warning"}
# The read-only `gitops` commands print what the operator *would* do; their rows carry
# the Event reasons collected elsewhere, so they are scanned too (nothing is exempt).


@dataclass
class Found:
    reasons: dict[str, list[str]] = field(default_factory=dict)  # reason -> ["file:line"]
    unresolved: list[str] = field(default_factory=list)  # "file:line: expression"

    def add(self, reason: str, where: str) -> None:
        if reason:
            self.reasons.setdefault(reason, []).append(where)


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


class _Module:
    def __init__(self, path: Path, functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef]
                 ) -> None:
        self.path = path
        self.rel = str(path.relative_to(PACKAGE.parent))
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        self.name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.functions = functions
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(self.tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent

    def enclosing(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None


def _assigned(scope: ast.AST, name: str) -> list[ast.expr]:
    """Values assigned to `name` directly in `scope` (a function or module body)."""
    values: list[ast.expr] = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    values.append(node.value)
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for t, v in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(t, ast.Name) and t.id == name:
                            values.append(v)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                node.target.id == name and node.value is not None:
            values.append(node.value)
    return values


def _imported_from(tree: ast.Module, name: str) -> str | None:
    """The module `name` is imported from (`from replication_operator.x import name`)."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and \
                any((a.asname or a.name) == name for a in node.names):
            return node.module
    return None


def _loop_over_events(func: ast.AST, name: str) -> bool:
    """`name` is bound by `for ... in <x>.events` in `func`."""
    for node in ast.walk(func):
        if isinstance(node, ast.For | ast.AsyncFor) and \
                any(isinstance(t, ast.Name) and t.id == name for t in ast.walk(node.target)):
            source = node.iter
            if (isinstance(source, ast.Attribute) and source.attr == "events") or \
                    (isinstance(source, ast.Name) and source.id == "events"):
                return True
    return False


PHASES = ("PENDING", "RUNNING", "COMPLETED", "SUSPENDED", "FAILED", "ERROR")


def _is_sink_function(func: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
    """`name` is a parameter through which this function's callers pass a reason."""
    params = [a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs]
    if name not in params:
        return False
    if name in KEYWORD_SINKS:
        return True
    index = POSITIONAL_SINKS.get(func.name)
    if index is None:
        return False
    positional = [a.arg for a in func.args.posonlyargs + func.args.args if a.arg != "self"]
    return index < len(positional) and positional[index] == name


class Scanner:
    def __init__(self) -> None:
        self.found = Found()
        paths = sorted(PACKAGE.rglob("*.py"))
        functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        trees = []
        for path in paths:
            module = _Module(path, functions)
            trees.append(module)
            for node in ast.walk(module.tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    functions.setdefault(node.name, node)
        self.modules = trees
        self.by_name = {m.name: m for m in trees}

    def resolve(self, module: _Module, expr: ast.expr | None, where: str,
                seen: frozenset[int] = frozenset()) -> None:
        """Add the reasons `expr` can evaluate to, or record it as unresolved."""
        if expr is None or id(expr) in seen:
            return
        seen = seen | {id(expr)}
        if isinstance(expr, ast.Constant):
            if isinstance(expr.value, str):
                self.found.add(expr.value, where)
            elif expr.value is not None:
                self.found.unresolved.append(f"{where}: {ast.unparse(expr)}")
            return
        if isinstance(expr, ast.IfExp):
            self.resolve(module, expr.body, where, seen)
            self.resolve(module, expr.orelse, where, seen)
            return
        if isinstance(expr, ast.BoolOp):
            for value in expr.values:
                self.resolve(module, value, where, seen)
            return
        if isinstance(expr, ast.Dict):
            for value in expr.values:
                self.resolve(module, value, where, seen)
            return
        if isinstance(expr, ast.Attribute) and expr.attr in KEYWORD_SINKS:
            return  # a carrier: every write of `.code` / `.reason` is a sink itself
        if isinstance(expr, ast.Attribute) and expr.attr == "phase":
            base = self.by_name["replication_operator.backends.base"]
            for phase in PHASES:
                self.resolve(base, ast.Name(id=phase, ctx=ast.Load()), where, seen)
            return
        if isinstance(expr, ast.Call):
            name = _callee(expr)
            callee = expr.func
            if name == "get" and isinstance(callee, ast.Attribute):
                if isinstance(callee.value, ast.Dict):  # {k: reason, ...}.get(x, default)
                    self.resolve(module, callee.value, where, seen)
                    if len(expr.args) > 1:
                        self.resolve(module, expr.args[1], where, seen)
                    return
                if expr.args and isinstance(expr.args[0], ast.Constant) and \
                        expr.args[0].value == "reason":
                    return  # a reason read back from a condition written at a sink
            if name == "str" and expr.args:
                self.resolve(module, expr.args[0], where, seen)
                return
            target = module.functions.get(name)
            if target is not None and not isinstance(callee, ast.Attribute):
                for node in ast.walk(target):
                    if isinstance(node, ast.Return):
                        self.resolve(module, node.value, where, seen)
                return
        if isinstance(expr, ast.Subscript):
            if isinstance(expr.slice, ast.Constant) and expr.slice.value == "reason":
                return
            self.resolve(module, expr.value, where, seen)
            return
        if isinstance(expr, ast.Name):
            func = module.enclosing(expr)
            if func is not None and (_is_sink_function(func, expr.id)
                                     or _loop_over_events(func, expr.id)):
                return
            scope: ast.AST = func if func is not None else module.tree
            values = _assigned(scope, expr.id) or _assigned(module.tree, expr.id)
            if values:
                for value in values:
                    self.resolve(module, value, where, seen)
                return
            origin = self.by_name.get(_imported_from(module.tree, expr.id) or "")
            if origin is not None:
                self.resolve(origin, ast.Name(id=expr.id, ctx=ast.Load()), where, seen)
                return
        self.found.unresolved.append(f"{where}: {ast.unparse(expr)}")

    def scan(self) -> Found:
        for module in self.modules:
            for node in ast.walk(module.tree):
                where = f"{module.rel}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.Call):
                    self._call(module, node, where)
                elif isinstance(node, ast.Assign):
                    for target in node.targets:
                        self._assign(module, target, node.value, where)
                elif isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "reason":
                            self.resolve(module, value, where)
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    self._defaults(module, node, where)
        return self.found

    def _call(self, module: _Module, node: ast.Call, where: str) -> None:
        name = _callee(node)
        for keyword in node.keywords:
            if keyword.arg in KEYWORD_SINKS:
                self.resolve(module, keyword.value, where)
        index = POSITIONAL_SINKS.get(name)
        if name in ("normal", "warning") and not (
                isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "events"):
            index = None  # not the events module (e.g. a random distribution)
        if index is not None and len(node.args) > index and \
                not isinstance(node.args[index], ast.Starred):
            self.resolve(module, node.args[index], where)
        if name == "append" and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Attribute | ast.Name) and \
                (getattr(node.func.value, "attr", None) or getattr(node.func.value, "id", None)) \
                == "events" and node.args and isinstance(node.args[0], ast.Tuple):
            items = node.args[0].elts
            if items and isinstance(items[0], ast.Constant | ast.IfExp) and len(items) == 3:
                self.resolve(module, items[1], where)  # (type, reason, message)
            elif items:
                self.resolve(module, items[0], where)  # (reason, message)

    def _assign(self, module: _Module, target: ast.expr, value: ast.expr, where: str) -> None:
        if isinstance(target, ast.Attribute) and target.attr == "reason":
            self.resolve(module, value, where)
        elif isinstance(target, ast.Tuple):
            values = value.elts if isinstance(value, ast.Tuple) else []
            for t, v in zip(target.elts, values, strict=False):
                self._assign(module, t, v, where)

    def _defaults(self, module: _Module, node: ast.FunctionDef | ast.AsyncFunctionDef,
                  where: str) -> None:
        positional = node.args.posonlyargs + node.args.args
        pairs = list(zip(positional[len(positional) - len(node.args.defaults):],
                         node.args.defaults, strict=True))
        pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults,
                                         strict=True) if d is not None]
        for arg, default in pairs:
            if arg.arg in KEYWORD_SINKS:
                self.resolve(module, default, where)


def collect() -> Found:
    return Scanner().scan()


if __name__ == "__main__":
    found = collect()
    for reason in sorted(found.reasons):
        print(reason, " ".join(sorted(set(found.reasons[reason]))))
    for line in found.unresolved:
        print("UNRESOLVED", line)
