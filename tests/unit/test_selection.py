"""--selector: label requirements for sharding one namespace between operators."""

from __future__ import annotations

import kopf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication_operator.selection import matches, parse_selector


def test_each_form_of_requirement() -> None:
    filters = parse_selector("shard=a, tier!=test,team, !legacy")
    assert filters["shard"] == "a" and filters["team"] is kopf.PRESENT
    assert filters["legacy"] is kopf.ABSENT and callable(filters["tier"])
    assert matches(filters, {"shard": "a", "team": "x", "tier": "prod"})
    assert not matches(filters, {"shard": "b", "team": "x"})
    assert not matches(filters, {"shard": "a", "team": "x", "tier": "test"})
    assert not matches(filters, {"shard": "a"}), "team must be present"
    assert not matches(filters, {"shard": "a", "team": "x", "legacy": ""})
    assert parse_selector("") == {} and parse_selector("a==b") == {"a": "b"}


@pytest.mark.parametrize("bad", ["=a", "a=b c", "a=b,a=c", "!", "a/b/c=d", "-a=b"])
def test_bad_requirements_are_refused_naming_them(bad: str) -> None:
    with pytest.raises(ValueError, match="--selector"):
        parse_selector(bad)


labels = st.dictionaries(st.sampled_from(["shard", "team", "tier"]),
                         st.sampled_from(["a", "b", "c"]), max_size=3)


@given(labels, st.sampled_from(["a", "b"]))
def test_shards_split_every_resource_exactly_once(resource: dict[str, str], shard: str
                                                  ) -> None:
    """shard=a and shard!=a together cover every resource, each exactly once."""
    mine, rest = parse_selector("shard=a"), parse_selector("shard!=a")
    assert matches(mine, resource) != matches(rest, resource)


def test_every_shard_has_its_own_finalizer() -> None:
    """kopf takes its finalizer off any watched object it has no handler for: shards
    sharing one name would strip each other's objects of it."""
    from replication_operator import FINALIZER
    from replication_operator.config import OperatorConfig

    assert OperatorConfig().finalizer == FINALIZER
    a = OperatorConfig(selector="shard=a").finalizer
    b = OperatorConfig(selector="shard!=a").finalizer
    assert len({FINALIZER, a, b}) == 3
    assert a.startswith(f"{FINALIZER}-") and len(a.split("/")[1]) <= 63
    assert OperatorConfig(selector="shard=a").finalizer == a, "stable across restarts"
