"""Translate a Mango selector into a JavaScript filter function.

PouchDB Server (and CouchDB 1.x) cannot filter a replication with a Mango selector:
the job silently copies nothing. They do run JavaScript filter functions from a
design document on the source, so on those servers the operator installs the
selector as one. Only the operators listed here are translated; anything else is
refused with a message naming it, never approximated.
"""

from __future__ import annotations

import json
from typing import Any

from replication_operator.errors import SpecError

COMPARISONS = {"$eq": "===", "$ne": "!==", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
SUPPORTED = sorted([*COMPARISONS, "$in", "$nin", "$exists", "$and", "$or", "$nor", "$not",
                    "$all", "$size", "$type"])

_HELPERS = (
    "function get(o, p){for(var i=0;i<p.length;i++){"
    "if(o===null||typeof o!=='object'||!(p[i] in o)){return undefined;}o=o[p[i]];}return o;}"
    "function same(a, b){return JSON.stringify(a)===JSON.stringify(b);}"
    "function typ(v){if(v===null){return 'null';}if(Array.isArray(v)){return 'array';}"
    "return typeof v;}"
)


def _lit(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, sort_keys=True)


def _path(field: str) -> str:
    return _lit(field.split("."))


def _condition(field: str, op: str, operand: Any) -> str:
    value = f"get(doc, {_path(field)})"
    if op in ("$eq", "$ne"):
        if isinstance(operand, dict | list):
            return ("" if op == "$eq" else "!") + f"same({value}, {_lit(operand)})"
        return f"({value} {COMPARISONS[op]} {_lit(operand)})"
    if op in COMPARISONS:
        return f"({value} !== undefined && {value} {COMPARISONS[op]} {_lit(operand)})"
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise SpecError(f"spec.filter.selector: {op} on {field!r} needs a list")
        test = f"{_lit(operand)}.some(function(x){{return same(x, {value});}})"
        return test if op == "$in" else f"!{test}"
    if op == "$exists":
        return f"({value} {'!==' if operand else '==='} undefined)"
    if op == "$all":
        if not isinstance(operand, list):
            raise SpecError(f"spec.filter.selector: $all on {field!r} needs a list")
        return (f"(Array.isArray({value}) && {_lit(operand)}.every(function(x){{"
                f"return {value}.some(function(y){{return same(x, y);}});}}))")
    if op == "$size":
        return f"(Array.isArray({value}) && {value}.length === {_lit(operand)})"
    if op == "$type":
        return f"(typ({value}) === {_lit(operand)})"
    if op == "$not":
        return f"!({_field(field, operand)})"
    raise SpecError(f"spec.filter.selector: operator {op!r} on {field!r} is not supported on "
                    f"this server (supported: {', '.join(SUPPORTED)})")


def _field(field: str, spec: Any) -> str:
    if isinstance(spec, dict) and spec and all(k.startswith("$") for k in spec):
        return " && ".join(_condition(field, op, operand) for op, operand in spec.items())
    if isinstance(spec, dict) and spec:
        nested = [_field(f"{field}.{k}", v) for k, v in spec.items()]
        return " && ".join(nested)
    return _condition(field, "$eq", spec)


def _expression(selector: Any) -> str:
    if not isinstance(selector, dict):
        raise SpecError("spec.filter.selector must be an object")
    parts: list[str] = []
    for key, value in selector.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list) or not value:
                raise SpecError(f"spec.filter.selector: {key} needs a non-empty list")
            inner = [f"({_expression(item)})" for item in value]
            joined = " && ".join(inner) if key == "$and" else " || ".join(inner)
            parts.append(f"!({joined})" if key == "$nor" else f"({joined})")
        elif key.startswith("$"):
            raise SpecError(f"spec.filter.selector: top-level operator {key!r} is not supported "
                            f"on this server (supported: $and, $or, $nor)")
        else:
            parts.append(f"({_field(key, value)})")
    return " && ".join(parts) if parts else "true"


def selector_to_js(selector: dict[str, Any]) -> str:
    """A CouchDB filter function equivalent to `selector` (raises SpecError if not)."""
    return (f"function(doc, req){{{_HELPERS}"
            f"if(doc._id.indexOf('_design/')===0){{return false;}}"
            f"return !!({_expression(selector)});}}")
