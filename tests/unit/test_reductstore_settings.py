"""Spec → ReductStore replication settings, and list/detail answers → observations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication_operator.backends.base import (
    ERROR,
    RUNNING,
    SUSPENDED,
    Endpoint,
    ReplicationRequest,
)
from replication_operator.backends.reductstore import settings as rs
from replication_operator.credentials import Credentials
from replication_operator.errors import SpecError
from replication_operator.http import ServerSettings

TOKEN = "dst-token-value"


def request(**overrides: object) -> ReplicationRequest:
    src = ServerSettings(key="ns/a", type="reductstore", url="http://a:8383", auth_type="bearer",
                         credentials=Credentials(token="src"))
    dst = ServerSettings(key="ns/b", type="reductstore", url="http://b:8383/", auth_type="bearer",
                         credentials=Credentials(token=TOKEN))
    base: dict[str, object] = dict(key="ns/r", external_name="ns.r",
                                   source=Endpoint(src, "in"), target=Endpoint(dst, "out"))
    base.update(overrides)
    return ReplicationRequest(**base)  # type: ignore[arg-type]


def test_settings_always_carry_the_destination_token() -> None:
    body = rs.desired_settings(request(), TOKEN)
    assert body == {"src_bucket": "in", "dst_bucket": "out", "dst_host": "http://b:8383",
                    "dst_token": TOKEN, "entries": [], "when": None, "mode": "enabled"}


def test_deprecated_filters_are_expressed_in_when_so_nothing_is_dropped() -> None:
    flt = {"include": {"a": "1"}, "exclude": {"b": "2"}, "eachN": 3, "eachS": 1.5,
           "when": {"&c": {"$gt": 0}}, "entries": ["e-*"]}
    body = rs.desired_settings(request(filter=flt), TOKEN)
    assert body["entries"] == ["e-*"]
    assert body["when"] == {"$and": [{"&a": {"$eq": "1"}}, {"&b": {"$ne": "2"}},
                                     {"$each_n": 3}, {"$each_t": 1.5}, {"&c": {"$gt": 0}}]}
    assert rs.when_condition({"eachN": 2}) == {"$each_n": 2}


def test_suspend_pauses() -> None:
    assert rs.desired_settings(request(suspend=True), TOKEN)["mode"] == "paused"


@pytest.mark.parametrize("flt, field", [({"selector": {}}, "selector"), ({"docIds": ["a"]},
                                                                         "docIds")])
def test_couchdb_filters_are_refused(flt: dict, field: str) -> None:
    with pytest.raises(SpecError, match=field):
        rs.validate(request(filter=flt))


def test_one_shot_is_refused() -> None:
    with pytest.raises(SpecError, match=r"spec\.continuous"):
        rs.validate(request(continuous=False))


def test_list_item_states() -> None:
    desired = rs.desired_settings(request(), TOKEN)
    item = {"name": "ns.r", "mode": "enabled", "is_active": True, "is_provisioned": False,
            "pending_records": 7}
    seen = rs.observe(request(), item, None, desired)
    assert seen.phase == RUNNING and seen.up_to_date
    assert seen.progress.as_status() == {"pendingRecords": 7}
    paused = rs.observe(request(), {**item, "mode": "paused"}, None, desired)
    assert paused.phase == SUSPENDED and paused.differences == ["mode"]
    down = rs.observe(request(), {**item, "is_active": False}, None, desired)
    assert down.phase == ERROR


def test_detail_drift_and_diagnostics() -> None:
    desired = rs.desired_settings(request(), TOKEN)
    item = {"name": "ns.r", "mode": "enabled", "is_active": False, "pending_records": 0}
    detail = {"settings": {**desired, "dst_token": None, "dst_bucket": "other",
                           "dst_prefix": "", "compression": "none"},
              "diagnostics": {"hourly": {"ok": 3, "errored": 2, "errors": {
                  "404": {"count": 2, "last_message": "bucket 'out' not found"}}}}}
    seen = rs.observe(request(), item, detail, desired)
    assert seen.differences == ["dst_bucket"]
    assert seen.diagnostics == {"ok": 3, "errored": 2,
                                "lastErrorMessage": "HTTP 404: bucket 'out' not found"}
    assert "bucket 'out' not found" in seen.message


def test_provisioned_is_reported() -> None:
    desired = rs.desired_settings(request(), TOKEN)
    seen = rs.observe(request(), {"mode": "enabled", "is_active": True, "is_provisioned": True},
                      None, desired)
    assert seen.provisioned


def detail(errored: int, errors: dict[str, dict[str, object]] | None = None
           ) -> dict[str, object]:
    return {"settings": rs.desired_settings(request(), TOKEN),
            "diagnostics": {"hourly": {"ok": 3, "errored": errored, "errors": errors or {}}}}


def test_a_refused_token_is_a_failure_although_the_list_says_active() -> None:
    """ReductStore 1.21 keeps `is_active: true` while the destination answers 401, and
    drops the records it could not send: errors that rose since the last look are the
    only sign."""
    item = {"name": "ns.r", "mode": "enabled", "is_active": True, "pending_records": 0}
    desired = rs.desired_settings(request(), TOKEN)
    refused = {"401": {"count": 2, "last_message": "Invalid token"}}
    seen = rs.observe(request(), item, detail(2, refused), desired, errors_before={})
    assert (seen.phase, seen.reason) == ("Failed", "DestinationRefusedToken")
    assert "HTTP 401" in seen.message and TOKEN not in seen.message
    old_news = rs.observe(request(), item, detail(2, refused), desired,
                          errors_before={"401": 2})
    assert old_news.phase == RUNNING, "errors counted before are history, not state"
    first_look = rs.observe(request(), item, detail(2, refused), desired)
    assert first_look.phase == RUNNING, "no baseline yet: nothing to compare"
    both = {**refused, "500": {"count": 3, "last_message": "x"}}
    other = rs.observe(request(), item, detail(5, both), desired, errors_before={"401": 2})
    assert (other.phase, other.reason) == (ERROR, "DestinationErrors")
    assert "HTTP 500" in other.message, "the 401s are old news"
    copies = {"409": {"count": 40, "last_message": "A record already exists"}}
    swap = rs.observe(request(), item, detail(40, copies), desired, errors_before={})
    assert swap.phase == RUNNING, "a record the destination has already is no error"
    assert rs.error_counts(detail(7, both)) == {"401": 2, "500": 3}


def test_replication_names_have_no_dots_on_reductstore() -> None:
    from replication_operator.backends.reductstore.backend import ReductStoreBackend

    assert ReductStoreBackend.default_name("team", "orders.eu") == "team__orders_eu"
    assert "." not in ReductStoreBackend.default_name("a-b", "c.d.e")


def test_a_replaced_replication_has_sent_its_backlog_when_its_queue_is_shorter() -> None:
    assert rs.backlog_sent(0, 0, queues_alike=False)
    assert rs.backlog_sent(0, 7, queues_alike=False)
    assert rs.backlog_sent(3, 9, queues_alike=True)
    assert not rs.backlog_sent(3, 9, queues_alike=False), "other records: only 0 says so"
    assert not rs.backlog_sent(9, 9, queues_alike=True), "equal may be one write apart"
    desired = rs.desired_settings(request(), TOKEN)
    stored = {k: v for k, v in desired.items() if k != "dst_token"}
    assert rs.same_queue({**stored, "dst_host": "http://elsewhere"}, desired)
    assert not rs.same_queue({**stored, "entries": ["other-*"]}, desired)


@settings(max_examples=500)
@given(backlog=st.integers(0, 30), steps=st.lists(st.tuples(
    st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.booleans()), max_size=40))
def test_backlog_rule_never_drops_an_unsent_old_record(
        backlog: int, steps: list[tuple[int, int, int, bool]]) -> None:
    """Model: two first-in-first-out queues fed the same writes; the old one starts with
    `backlog` records the new one never had. A list answer counts the old queue, then
    the new one, and a write may land in between. Whenever the rule says the old one
    may go, none of those records is still waiting in it."""
    old = list(range(-backlog, 0))  # negative: written before the replacement
    new: list[int] = []
    written = 0

    def write() -> None:
        nonlocal written
        old.append(written)
        new.append(written)
        written += 1

    for writes, old_sent, new_sent, write_between_counts in steps:
        for _ in range(writes):
            write()
        del old[:old_sent]
        del new[:new_sent]
        old_count = len(old)
        if write_between_counts:
            write()
        if rs.backlog_sent(old_count, len(new), queues_alike=True):
            assert not any(record < 0 for record in old)
