"""Spec → `_replicator` doc, and server answers → observations (CouchDB, PouchDB)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication_operator.backends.base import (
    COMPLETED,
    ERROR,
    FAILED,
    PENDING,
    RUNNING,
    Endpoint,
    ReplicationRequest,
)
from replication_operator.backends.couchdb import docs
from replication_operator.backends.couchdb.backend import detect_flavour, has_scheduler
from replication_operator.credentials import Credentials
from replication_operator.errors import PermanentBackendError, SpecError
from replication_operator.http import ServerSettings

SECRET = "s3cr3t-value"


def settings(url: str = "http://a:5984", auth: str = "basic") -> ServerSettings:
    creds = Credentials(username="admin", password=SECRET) if auth != "none" else Credentials()
    return ServerSettings(key="ns/a", type="couchdb", url=url, auth_type=auth,
                          credentials=creds)


def request(**overrides: object) -> ReplicationRequest:
    base: dict[str, object] = dict(
        key="ns/rep", external_name="ns.rep",
        source=Endpoint(settings("http://a:5984/"), "orders"),
        target=Endpoint(settings("http://b:5984", "none"), "orders/eu"))
    base.update(overrides)
    return ReplicationRequest(**base)  # type: ignore[arg-type]


def test_endpoints_carry_credentials_in_the_authorization_header() -> None:
    doc = docs.desired_doc(request(), mango=True)
    assert doc["source"]["url"] == "http://a:5984/orders"
    assert doc["source"]["headers"]["Authorization"].startswith("Basic ")
    assert doc["target"] == "http://b:5984/orders%2Feu"  # no credentials: plain URL
    assert doc["continuous"] is True and doc["create_target"] is False


def test_selector_is_kept_where_mango_works_and_becomes_a_js_filter_elsewhere() -> None:
    req = request(filter={"selector": {"type": "order"}})
    assert docs.desired_doc(req, mango=True)["selector"] == {"type": "order"}
    pouch = docs.desired_doc(req, mango=False)
    assert "selector" not in pouch
    assert pouch["filter"].startswith(docs.SELECTOR_DDOC_PREFIX)
    assert pouch["filter"].endswith("/selector")


def test_filters_and_options_map_to_doc_fields() -> None:
    req = request(filter={"docIds": ["a", "b"], "queryParams": {"k": "v"}},
                  options={"worker_processes": 2}, create_target=True, continuous=False)
    doc = docs.desired_doc(req, mango=True)
    assert doc["doc_ids"] == ["a", "b"]
    assert doc["query_params"] == {"k": "v"}
    assert doc["worker_processes"] == 2
    assert doc["create_target"] is True and doc["continuous"] is False


@pytest.mark.parametrize("flt, field", [({"entries": ["x"]}, "entries"),
                                        ({"eachN": 2}, "eachN"), ({"when": {}}, "when")])
def test_reductstore_filters_are_refused_naming_the_field(flt: dict, field: str) -> None:
    with pytest.raises(SpecError, match=f"spec.filter.{field}"):
        docs.validate(request(filter=flt))


def test_unknown_option_is_refused_naming_it() -> None:
    with pytest.raises(SpecError, match=r"spec\.options\.bogus"):
        docs.validate(request(options={"bogus": 1}))


def test_new_doc_has_owner_and_a_nonce_that_differs_between_creations() -> None:
    first, second = docs.new_doc(request(), mango=True), docs.new_doc(request(), mango=True)
    assert first[docs.OWNER_FIELD] == "ns/rep"
    assert first[docs.NONCE_FIELD] != second[docs.NONCE_FIELD] or first is not second


def test_stored_doc_matching_spec_is_up_to_date_and_hand_edits_are_drift() -> None:
    req = request()
    stored = {**docs.new_doc(req, mango=True), "_id": "ns.rep", "_rev": "1-a", "owner": "admin",
              "_replication_state": "triggered"}
    seen = docs.observe(req, stored, None, mango=True)
    assert seen.up_to_date and seen.owner == "ns/rep" and seen.handle == {"rev": "1-a"}
    edited = {**stored, "continuous": False, "selector": {"x": 1}}
    drift = docs.observe(req, edited, None, mango=True)
    assert not drift.up_to_date
    assert drift.differences == ["continuous", "selector"]


def test_differences_never_contain_values() -> None:
    req = request()
    stored = {**docs.new_doc(req, mango=True)}
    stored["source"] = {"url": "http://a:5984/orders", "headers": {"Authorization": "Basic x"}}
    diff = docs.differences(stored, docs.desired_doc(req, mango=True))
    assert diff == ["source"]
    assert SECRET not in repr(diff)


@pytest.mark.parametrize("state, phase", [
    ("running", RUNNING), ("pending", RUNNING), ("initializing", PENDING),
    ("completed", COMPLETED), ("failed", FAILED), ("crashing", ERROR), ("error", ERROR)])
def test_scheduler_states_map_to_phases(state: str, phase: str) -> None:
    entry = {"state": state, "info": {"docs_written": 3, "changes_pending": None},
             "start_time": "2026-01-01T00:00:00Z", "last_updated": "2026-01-01T00:01:00Z"}
    seen = docs.observe_scheduler(entry)
    assert seen.phase == phase
    if state not in ("failed", "crashing", "error"):
        assert seen.progress.as_status() == {"docsWritten": 3}


def test_scheduler_error_reason_comes_from_the_server() -> None:
    entry = {"state": "crashing", "info": {"error": "replication_auth_error: "
                                                    "session_request_unauthorized"}}
    seen = docs.observe_scheduler(entry)
    assert seen.reason == "Unauthorized" and "session_request_unauthorized" in seen.message
    dup = docs.observe_scheduler({"state": "failed", "info": {"error": "duplicate of x"}})
    assert dup.reason == "DuplicateReplication"


@pytest.mark.parametrize("state, phase", [("triggered", RUNNING), ("completed", COMPLETED),
                                          ("error", ERROR), (None, PENDING)])
def test_doc_states_map_to_phases(state: str | None, phase: str) -> None:
    doc = {"_replication_state": state, "_replication_state_time": 1767225600,
           "_replication_stats": {"docs_read": 5, "docs_written": 5, "doc_write_failures": 0}}
    seen = docs.observe_doc_state(doc)
    assert seen.phase == phase
    assert seen.progress.docs_written == 5
    if state:
        assert seen.last_sync == "2026-01-01T00:00:00Z"


def test_flavour_detection() -> None:
    pouch = detect_flavour({"express-pouchdb": "Welcome!", "version": "4.2.0"})
    assert pouch.flavour == "PouchDB Server" and not has_scheduler(pouch)
    couch = detect_flavour({"couchdb": "Welcome", "version": "3.5.0", "features": ["scheduler"]})
    assert couch.flavour == "CouchDB" and has_scheduler(couch)
    cloudant = detect_flavour({"couchdb": "Welcome", "version": "2.1.0",
                               "vendor": {"name": "IBM Cloudant"}})
    assert cloudant.flavour == "Cloudant"
    with pytest.raises(PermanentBackendError):
        detect_flavour({"hello": "world"})


@given(st.dictionaries(st.sampled_from(["continuous", "create_target", "doc_ids", "filter"]),
                       st.one_of(st.booleans(), st.text(max_size=5)), max_size=4))
def test_up_to_date_exactly_when_no_managed_field_differs(edits: dict) -> None:
    req = request()
    stored = {**docs.new_doc(req, mango=True), **edits}
    seen = docs.observe(req, stored, None, mango=True)
    desired = docs.desired_doc(req, mango=True)
    changed = {k for k, v in edits.items() if desired.get(k) != v}
    assert seen.up_to_date == (not changed)
    assert set(seen.differences) == changed


def test_a_left_out_boolean_means_what_the_replicator_assumes_not_drift() -> None:
    """A hand-made job rarely says `create_target: false`; the replicator's default is
    the same, so adopting it must not rewrite the job."""
    req = request(continuous=False)
    stored = {k: v for k, v in docs.desired_doc(req, mango=True).items()
              if k not in ("continuous", "create_target")}
    assert docs.differences(stored, docs.desired_doc(req, mango=True)) == []
    wants_target = request(continuous=False, create_target=True)
    assert docs.differences(stored, docs.desired_doc(wants_target, mango=True)) == \
        ["create_target"]


def test_a_continuous_job_on_a_1x_style_server_says_why_it_has_no_counters() -> None:
    """PouchDB Server writes `_replication_stats` only when a one-shot job completes."""
    running = docs.observe_doc_state({"continuous": True, "_replication_state": "triggered"})
    assert running.progress.as_status() == {}
    assert "only when a one-shot job completes" in running.diagnostics["progress"]
    one_shot = docs.observe_doc_state({"continuous": False, "_replication_state": "completed",
                                       "_replication_stats": {"docs_written": 3}})
    assert one_shot.diagnostics == {}
    assert one_shot.progress.as_status()["docsWritten"] == 3


def server_doc(req: ReplicationRequest, **extra: object) -> dict:
    """A doc as a server returns it: ours plus what the server adds."""
    return {**docs.new_doc(req, mango=False), "_id": req.external_name, "_rev": "2-b",
            "_replication_id": "0123456789abcdef", "_replication_state": "completed",
            "_replication_state_time": 1767225600,
            "_replication_stats": {"docs_read": 5, "docs_written": 5, "doc_write_failures": 0,
                                   "start_time": "x", "end_time": "y", "last_seq": 5},
            **extra}


def test_a_kept_doc_observes_like_the_server_doc_and_holds_no_credentials() -> None:
    req = request()
    full = server_doc(req)
    kept = docs.kept_doc(full)
    assert docs.observe(req, kept, None, mango=False) == docs.observe(req, full, None,
                                                                      mango=False)
    assert SECRET not in repr(kept) and "Basic " not in repr(kept)
    assert "_id" not in kept and docs.NONCE_FIELD not in kept
    assert "_replication_id" not in kept and "last_seq" not in kept["_replication_stats"]


@given(st.sampled_from(["source", "target", "continuous", "selector", "doc_ids"]),
       st.one_of(st.booleans(), st.text(max_size=5),
                 st.fixed_dictionaries({"url": st.text(max_size=8)})))
def test_a_kept_doc_shows_the_same_drift_as_the_server_doc(field: str, value: object) -> None:
    req = request()
    edited = server_doc(req, **{field: value})
    kept = docs.kept_doc(edited)
    desired = docs.desired_doc(req, mango=False)
    assert docs.differences(kept, desired) == docs.differences(edited, desired)


def test_a_rotated_password_is_drift_in_a_kept_doc() -> None:
    old = request()
    rotated = request(source=Endpoint(
        ServerSettings(key="ns/a", type="couchdb", url="http://a:5984/", auth_type="basic",
                       credentials=Credentials(username="admin", password="new-one")),
        "orders"))
    kept = docs.kept_doc(server_doc(old))
    assert docs.differences(kept, docs.desired_doc(rotated, mango=False)) == ["source"]
    assert docs.differences(kept, docs.desired_doc(old, mango=False)) == []


def test_a_kept_scheduler_entry_observes_like_the_full_entry() -> None:
    entry = {"database": "_replicator", "doc_id": "ns.rep", "id": "abc+continuous",
             "node": "couchdb@127.0.0.1", "source": "http://a:5984/orders/",
             "target": "http://b:5984/orders/", "state": "crashing", "error_count": 3,
             "start_time": "2026-01-01T00:00:00Z", "last_updated": "2026-01-01T00:01:00Z",
             "info": {"error": "db_not_found: could not open", "docs_written": 4,
                      "revisions_checked": 9, "through_seq": "9-g1AAAA"}}
    kept = docs.kept_scheduler_entry(entry)
    assert docs.observe_scheduler(kept) == docs.observe_scheduler(entry)
    assert set(kept) == {"state", "start_time", "last_updated", "info"}
    assert "through_seq" not in kept["info"]
