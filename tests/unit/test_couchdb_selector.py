"""Mango selector → JavaScript filter: checked by running the JS in Node.js against a
small reference implementation of the same Mango subset in Python."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replication_operator.backends.couchdb.selector import selector_to_js
from replication_operator.errors import SpecError

NODE = shutil.which("node")
MISSING = object()


def lookup(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return MISSING
        doc = doc[part]
    return doc


def _cmp(value: Any, op: str, operand: Any) -> bool:
    if value is MISSING:
        return op == "$ne"
    if op == "$eq":
        return json.dumps(value, sort_keys=True) == json.dumps(operand, sort_keys=True) \
            if isinstance(operand, dict | list) else value == operand and \
            type(value) is type(operand)
    if op == "$ne":
        return not _cmp(value, "$eq", operand)
    if type(value) is not type(operand) or isinstance(value, bool | dict | list):
        return False
    return {"$gt": value > operand, "$gte": value >= operand, "$lt": value < operand,
            "$lte": value <= operand}[op]


def matches(doc: dict[str, Any], selector: dict[str, Any]) -> bool:
    for key, cond in selector.items():
        if key == "$and":
            ok = all(matches(doc, s) for s in cond)
        elif key == "$or":
            ok = any(matches(doc, s) for s in cond)
        else:
            value = lookup(doc, key)
            if isinstance(cond, dict) and all(k.startswith("$") for k in cond):
                ok = all(_op(value, op, operand) for op, operand in cond.items())
            else:
                ok = _cmp(value, "$eq", cond)
        if not ok:
            return False
    return True


def _op(value: Any, op: str, operand: Any) -> bool:
    if op == "$exists":
        return (value is not MISSING) == operand
    if op == "$in":
        return value is not MISSING and any(_cmp(value, "$eq", x) for x in operand)
    if op == "$nin":
        return not (value is not MISSING and any(_cmp(value, "$eq", x) for x in operand))
    return _cmp(value, op, operand)


def run_js(selector: dict[str, Any], docs: list[dict[str, Any]]) -> list[bool]:
    assert NODE
    script = (f"var f = ({selector_to_js(selector)});"
              f"var docs = {json.dumps(docs)};"
              "process.stdout.write(JSON.stringify(docs.map(function(d){return f(d, {});})));")
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


FIELDS = st.sampled_from(["type", "n", "meta.tag"])
SCALARS = st.one_of(st.integers(-3, 3), st.sampled_from(["order", "user", "x"]))
CONDITION = st.one_of(
    SCALARS,
    st.dictionaries(st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), SCALARS,
                    min_size=1, max_size=2),
    st.builds(lambda v: {"$in": v}, st.lists(SCALARS, min_size=1, max_size=3)),
    st.builds(lambda v: {"$nin": v}, st.lists(SCALARS, min_size=1, max_size=3)),
    st.builds(lambda v: {"$exists": v}, st.booleans()),
)
LEAF = st.dictionaries(FIELDS, CONDITION, min_size=1, max_size=2)
SELECTOR = st.one_of(LEAF, st.builds(lambda a: {"$or": a}, st.lists(LEAF, min_size=1,
                                                                     max_size=3)),
                     st.builds(lambda a: {"$and": a}, st.lists(LEAF, min_size=1, max_size=3)))
DOC = st.fixed_dictionaries({"_id": st.just("d")}, optional={
    "type": SCALARS, "n": SCALARS, "meta": st.fixed_dictionaries({}, optional={"tag": SCALARS})})


@pytest.mark.skipif(NODE is None, reason="node is part of the dev toolchain (see .ci/run)")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SELECTOR, st.lists(DOC, min_size=1, max_size=8))
def test_js_filter_agrees_with_mango_semantics(selector: dict, docs: list[dict]) -> None:
    assert run_js(selector, docs) == [matches(d, selector) for d in docs]


@pytest.mark.skipif(NODE is None, reason="node is part of the dev toolchain (see .ci/run)")
def test_design_docs_are_never_replicated_by_a_selector_filter() -> None:
    assert run_js({"type": "order"}, [{"_id": "_design/x", "type": "order"}]) == [False]


@pytest.mark.parametrize("selector, needle", [
    ({"a": {"$regex": "^x"}}, "$regex"), ({"$text": "x"}, "$text"),
    ({"a": {"$elemMatch": {}}}, "$elemMatch")])
def test_unsupported_operators_are_refused_by_name(selector: dict, needle: str) -> None:
    with pytest.raises(SpecError, match=r"\$"):
        selector_to_js(selector)
    try:
        selector_to_js(selector)
    except SpecError as exc:
        assert needle in str(exc)


def test_values_cannot_break_out_of_the_generated_code() -> None:
    js = selector_to_js({"type": "x'); process.exit(1); ('"})
    assert "process.exit(1); ('\"" in js  # stays inside a JSON string literal
