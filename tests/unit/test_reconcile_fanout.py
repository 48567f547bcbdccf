"""ReplicationPolicy fan-out, pure: matching, child names, child specs, plans, runs,
status."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication_operator.errors import SpecError
from replication_operator.reconcile import fanout as f
from replication_operator.reconcile.fanout import Child, RunState

OWNER = {"metadata": {"name": "orders", "uid": "u-1", "namespace": "ns"}}
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def spec(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": {"server": "couch-eu", "databases": ["orders-*", "!orders-tmp-*"]},
        "target": {"server": "couch-us", "databasePrefix": "eu-", "create": True},
        "trigger": {"type": "continuous"}, "deletionPolicy": "Delete",
        # what the API server's defaults add
        "replicateDeletion": False, "override": True, "enabled": True, "speed": -1,
        "copyByChunk": False, "historyLimit": 10}
    base.update(extra)
    return base


def fs_of(**extra: Any) -> f.FanoutSpec:
    return f.parse("orders", spec(**extra), "couchdb")


# -- matching ------------------------------------------------------------------


def test_includes_excludes_and_system_databases() -> None:
    m = f.compile_patterns(["orders-*", "!orders-tmp-*", "_users"])
    names = ["orders-1", "orders-tmp-1", "other", "_users", "_replicator", "_global_changes"]
    assert f.matching(m, names) == ["_users", "orders-1"]
    star = f.compile_patterns(["*"])
    assert f.matching(star, ["_users", "$system", "a", "b/c"]) == ["a", "b/c"]
    assert f.matching(f.compile_patterns(["_*"]), ["_users"]) == []


def test_glob_forms() -> None:
    m = f.compile_patterns(["db-?", "log-[0-9]", "x-[!a]", "{eu,us}-orders", "a.b"])
    assert f.matching(m, ["db-1", "db-12", "log-7", "log-x", "x-a", "x-b", "eu-orders",
                          "us-orders", "ch-orders", "a.b", "axb"]) == \
        ["a.b", "db-1", "eu-orders", "log-7", "us-orders", "x-b"]


@pytest.mark.parametrize("patterns, field", [
    (["a]b"], "spec.source.databases[0]"), (["ok", "[ab"], "spec.source.databases[1]"),
    (["{a,b"], "spec.source.databases[0]"), (["{a,{b}}"], "spec.source.databases[0]"),
    (["x", "!"], "spec.source.databases[1]"), (["!a", "!b"], "only exclusions"),
    (["[]"], "empty"),
])
def test_invalid_globs_are_refused_naming_the_entry(patterns: list[str], field: str) -> None:
    with pytest.raises(SpecError, match=re.escape(field)):
        f.compile_patterns(patterns)


@given(st.text(alphabet="abcdefghij-_0123456789*?", min_size=1, max_size=12),
       st.lists(st.text(alphabet="abc-_0123456789", min_size=1, max_size=10), max_size=20))
def test_a_literal_pattern_matches_only_itself_and_results_are_sorted_unique(
        pattern: str, names: list[str]) -> None:
    m = f.compile_patterns([pattern])
    found = f.matching(m, names + names)
    assert found == sorted(set(found))
    if not any(c in pattern for c in "*?"):
        assert found == ([pattern] if pattern in names and not f.is_system(pattern) else []) \
            or (f.is_system(pattern) and found == [pattern])


# -- names ---------------------------------------------------------------------

couch_names = st.from_regex(r"[a-z][a-z0-9_$()+/-]{0,80}", fullmatch=True)
reduct_names = st.from_regex(r"[A-Za-z0-9_-]{1,80}", fullmatch=True)
policy_names = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?", fullmatch=True)
LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def test_plain_names_are_readable() -> None:
    assert f.child_name("orders", "orders-2024") == "orders-orders-2024"
    hashed = f.child_name("orders", "orders_eu")
    assert hashed.startswith("orders-orders-eu--") and len(hashed) == len("orders-orders-eu--") + 8
    assert f.child_name("orders", "orders_eu") == hashed, "stable"
    long = f.child_name("p", "x" * 200)
    assert len(long) == 63 and LABEL.fullmatch(long)


@given(policy_names, st.one_of(couch_names, reduct_names))
def test_child_names_are_valid_labels_of_at_most_63(policy: str, database: str) -> None:
    name = f.child_name(policy, database)
    assert len(name) <= 63 and LABEL.fullmatch(name), name
    assert f.child_name(policy, database) == name


@given(policy_names, st.lists(st.one_of(couch_names, reduct_names), min_size=2, max_size=40,
                              unique=True))
def test_child_names_differ_for_different_databases(policy: str, databases: list[str]) -> None:
    names = [f.child_name(policy, db) for db in databases]
    assert len(set(names)) == len(names)


def test_plain_and_hashed_names_cannot_collide() -> None:
    hashed = f.child_name("p", "a_b")  # p-a-b--<hash>
    suffix = hashed.removeprefix("p-")
    assert f.child_name("p", suffix) != hashed  # "a-b--<hash>" has "--": hashed as well


# -- declaration ----------------------------------------------------------------


def test_parse_applies_defaults_and_refuses_harbor_fields() -> None:
    fs = fs_of()
    assert (fs.prefix, fs.create, fs.trigger, fs.deletion_policy) == ("eu-", True,
                                                                      "continuous", "Delete")
    for field, value, name in [("filters", [{"type": "tag", "value": "v"}], "spec.filters"),
                               ("enabled", False, "spec.enabled"),
                               ("replicateDeletion", True, "spec.replicateDeletion"),
                               ("speed", 100, "spec.speed"), ("externalName", "7",
                                                              "spec.externalName")]:
        with pytest.raises(SpecError, match=re.escape(name)):
            f.parse("orders", spec(**{field: value}), "couchdb")
    with pytest.raises(SpecError, match=r"spec\.target\.namespace"):
        f.parse("orders", spec(target={"server": "b", "namespace": "x"}), "couchdb")
    with pytest.raises(SpecError, match="eventBased"):
        f.parse("orders", spec(trigger={"type": "eventBased"}), "reductstore")


def test_check_refuses_mixed_families_bad_prefixes_and_long_names() -> None:
    with pytest.raises(SpecError, match=r"spec\.target\.server"):
        f.check(fs_of(), "couchdb", "reductstore")
    f.check(fs_of(), "couchdb", "cloudant")
    with pytest.raises(SpecError, match=r"spec\.target\.databasePrefix"):
        f.check(fs_of(target={"server": "b", "databasePrefix": "EU-"}), "couchdb", "couchdb")
    with pytest.raises(SpecError, match=r"spec\.target\.databasePrefix"):
        f.check(f.parse("orders", spec(target={"server": "b", "databasePrefix": "a/"}),
                        "reductstore"), "reductstore", "reductstore")
    f.check(f.parse("orders", spec(target={"server": "b", "databasePrefix": "Bk_"}),
                    "reductstore"), "reductstore", "reductstore")
    with pytest.raises(SpecError, match=r"metadata\.name"):
        f.check(f.parse("p" * 64, spec(), "couchdb"), "couchdb", "couchdb")


def test_harbor_and_eden_refuse_fan_out_fields() -> None:
    f.refuse_fanout_fields({"source": {"databases": ["library/*"]}, "target": {"create": True}},
                           "harbor")
    for extra, name in [({"filter": {"selector": {}}}, "spec.filter"),
                        ({"suspend": True}, "spec.suspend"),
                        ({"target": {"databasePrefix": "x"}}, "spec.target.databasePrefix"),
                        ({"source": {"databases": ["!x"]}}, "spec.source.databases[0]")]:
        with pytest.raises(SpecError, match=re.escape(name)):
            f.refuse_fanout_fields(extra, "harbor")


# -- children ------------------------------------------------------------------


def test_child_spec_continuous_writes_defaults_out() -> None:
    fs = fs_of(filter={"selector": {"type": "order"}}, options={"worker_processes": 2},
               source={"server": "couch-eu", "databases": ["orders-*"],
                       "tokenRef": {"name": "eu-reader"}},
               target={"server": "couch-us", "databasePrefix": "eu-",
                       "tokenRef": {"name": "us-writer"}})
    assert f.child_spec(fs, "orders-1", "couchdb") == {
        "source": {"server": "couch-eu", "database": "orders-1", "create": False,
                   "tokenRef": {"name": "eu-reader"}},
        "target": {"server": "couch-us", "database": "eu-orders-1", "create": True,
                   "tokenRef": {"name": "us-writer"}},
        "continuous": True, "suspend": False, "deletionPolicy": "Delete",
        "filter": {"selector": {"type": "order"}}, "options": {"worker_processes": 2}}


def test_child_spec_for_runs() -> None:
    fs = fs_of(trigger={"type": "scheduled", "schedule": "@daily"})
    waiting = f.child_spec(fs, "orders-1", "couchdb")
    assert (waiting["continuous"], waiting["suspend"], "runId" in waiting) == (False, True,
                                                                                False)
    ran = f.child_spec(fs, "orders-1", "couchdb", run="170")
    assert (ran["continuous"], ran["suspend"], ran["runId"]) == (False, False, "170")
    rs = f.parse("orders", spec(trigger={"type": "manual"}), "reductstore")
    assert f.child_spec(rs, "b", "reductstore")["suspend"] is True
    sending = f.child_spec(rs, "b", "reductstore", run="170", sending=True)
    assert (sending["continuous"], sending["suspend"]) == (True, False)
    assert f.child_spec(fs_of(suspend=True), "orders-1", "couchdb")["suspend"] is True


def child(db: str, fs: f.FanoutSpec, family: str = "couchdb", **kw: Any) -> Child:
    defaults: dict[str, Any] = {
        "name": f.child_name("orders", db), "database": db,
        "spec": f.child_spec(fs, db, family, run=kw.get("run", ""),
                             sending=kw.pop("sending", False)),
        "owner_uid": "u-1", "generation": 1, "observed_generation": 1, "phase": "Running",
        "ready": True}
    defaults.update(kw)
    return Child(**defaults)


def test_plan_creates_keeps_changes_deletes_and_reports_foreign() -> None:
    fs = fs_of()
    keep = child("orders-1", fs)
    drifted = child("orders-2", fs, spec={**child("orders-2", fs).spec, "suspend": True})
    stale = child("orders-9", fs)
    foreign = child("orders-3", fs, owner_uid="someone-else")
    dying = child("orders-4", fs, deleting=True)
    not_mine = child("orders-8", fs, owner_uid="other")
    plan = f.plan_children(fs, "couchdb", ["orders-1", "orders-2", "orders-3", "orders-4",
                                           "orders-5"],
                           [keep, drifted, stale, foreign, dying, not_mine], OWNER, RunState())
    assert [b["metadata"]["name"] for b in plan.create] == [f.child_name("orders", "orders-5")]
    created = plan.create[0]
    assert created["metadata"]["labels"] == {f.POLICY_LABEL: "orders"}
    assert created["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert [(c.name, c.differences) for c in plan.change] == [(drifted.name, ["spec.suspend"])]
    assert plan.delete == [stale.name]
    assert plan.foreign == [foreign] and plan.waiting == [dying.name]


def test_children_belong_to_their_policys_shard_and_carry_no_other_label() -> None:
    """`inherit` are the keys of the operator's --selector: a child without them would
    be another shard's (or nobody's); an Argo CD tracking label must not be copied."""
    fs = fs_of()
    owner = {"metadata": {**OWNER["metadata"], "labels": {
        "shard": "a", "app.kubernetes.io/instance": "orders-app"}}}
    plan = f.plan_children(fs, "couchdb", ["orders-1"], [], owner, RunState(),
                           inherit=("shard", "tier"))
    assert plan.create[0]["metadata"]["labels"] == {"shard": "a", f.POLICY_LABEL: "orders"}


@given(st.sets(st.sampled_from([f"orders-{i}" for i in range(12)])),
       st.sets(st.sampled_from([f"orders-{i}" for i in range(12)])))
def test_plan_is_the_set_difference(observed: set[str], wanted: set[str]) -> None:
    fs = fs_of()
    plan = f.plan_children(fs, "couchdb", sorted(wanted), [child(db, fs) for db in observed],
                           OWNER, RunState())
    name = {db: f.child_name("orders", db) for db in observed | wanted}
    assert {b["spec"]["source"]["database"] for b in plan.create} == wanted - observed
    assert set(plan.delete) == {name[db] for db in observed - wanted}
    assert plan.change == []


# -- runs ----------------------------------------------------------------------


def scheduled(family: str = "couchdb", **extra: Any) -> f.FanoutSpec:
    return f.parse("orders", spec(trigger={"type": "scheduled", "schedule": "0 * * * *"},
                                  **extra), family)


def test_a_due_schedule_starts_one_run_over_every_match() -> None:
    fs = scheduled()
    first = f.run_step(fs, "couchdb", {}, [], {"a": "orders-1"}, now=NOW, requested=None,
                       spec_changed=True)
    assert first.fields["nextRunTime"] == "2026-12-01T13:00:00Z" and not first.events
    due = f.run_step(fs, "couchdb", {"nextRunTime": "2026-12-01T12:00:00Z"},
                     [child("orders-1", fs)], {"x": "orders-1", "y": "orders-2"}, now=NOW,
                     requested=None, spec_changed=False)
    assert due.state.starting and due.state.active == f.run_id(NOW, requested=False)
    item = due.fields["lastExecution"]
    assert (item["status"], item["total"], item["trigger"]) == ("InProgress", 2, "scheduled")
    assert due.fields["nextRunTime"] == "2026-12-01T13:00:00Z"
    assert [e[1] for e in due.events] == ["RunStarted"]
    plan = f.plan_children(fs, "couchdb", ["orders-1", "orders-2"], [child("orders-1", fs)],
                           OWNER, due.state)
    run = due.state.active
    assert plan.change[0].spec is not None and plan.change[0].spec["runId"] == run
    assert plan.change[0].annotations == {f.RUN_ANNOTATION: run}
    assert plan.create[0]["spec"]["runId"] == run
    assert plan.create[0]["metadata"]["annotations"] == {f.RUN_ANNOTATION: run}


def test_a_run_finishes_from_its_children_and_lists_failures() -> None:
    fs = scheduled()
    run = "17648000000"
    status = {"lastExecution": {"id": int(run), "status": "InProgress", "trigger": "scheduled",
                                "startTime": "2026-12-01T11:00:00Z", "total": 3},
              "nextRunTime": "2026-12-01T13:00:00Z"}
    done = child("orders-1", fs, run=run, phase="Completed")
    running = child("orders-2", fs, run=run, phase="Running")
    broken = child("orders-3", fs, run=run, phase="Failed", stalled=True, ready=False,
                   reason="DatabaseNotFound", message="db_not_found")
    step = f.run_step(fs, "couchdb", status, [done, running, broken], {}, now=NOW,
                      requested=None, spec_changed=False)
    item = step.fields["lastExecution"]
    assert (item["status"], item["succeeded"], item["failed"], item["inProgress"]) == \
        ("InProgress", 1, 1, 1)
    assert item["failedTasks"] == [{"source": "orders-3", "destination": "eu-orders-3",
                                    "message": "DatabaseNotFound: db_not_found"}]
    assert step.state.outcomes == {done.name: "Succeeded", broken.name: "Failed"}
    # next look: the outcomes are annotations now, the last child completes
    later = [child("orders-1", fs, run=run, outcome="Succeeded", phase="Completed"),
             child("orders-2", fs, run=run, phase="Completed"),
             child("orders-3", fs, run=run, outcome="Failed", phase="Failed")]
    over = f.run_step(fs, "couchdb", {**status, "lastExecution": item}, later, {}, now=NOW,
                      requested=None, spec_changed=False)
    final = over.fields["lastExecution"]
    assert (final["status"], final["succeeded"], final["failed"]) == ("Failed", 2, 1)
    assert final["endTime"] == "2026-12-01T12:00:00Z"
    assert final["failedTasks"][0]["source"] == "orders-3"
    assert [e[1] for e in over.events] == ["ExecutionFailed"]
    assert not over.state.active


def test_a_run_still_going_is_not_started_twice() -> None:
    fs = scheduled()
    run = "17648000000"
    status = {"lastExecution": {"id": int(run), "status": "InProgress", "total": 1,
                                "startTime": "x"},
              "nextRunTime": "2026-12-01T12:00:00Z"}
    step = f.run_step(fs, "couchdb", status, [child("orders-1", fs, run=run, phase="Running")],
                      {"a": "orders-1"}, now=NOW, requested=None, spec_changed=False)
    assert [e[1] for e in step.events] == ["RunSkipped"]
    assert "still in progress" in step.events[0][2]
    assert step.state.active == run and not step.state.starting
    assert step.fields["nextRunTime"] == "2026-12-01T13:00:00Z"


def test_reductstore_children_are_enabled_during_their_run_then_paused() -> None:
    fs = scheduled("reductstore")
    run = "17648000000"
    status = {"lastExecution": {"id": int(run), "status": "InProgress", "total": 2,
                                "startTime": "x"}, "nextRunTime": "2026-12-01T13:00:00Z"}
    sent = child("b1", fs, "reductstore", run=run, sending=True, pending_records=0)
    busy = child("b2", fs, "reductstore", run=run, sending=True, pending_records=5)
    step = f.run_step(fs, "reductstore", status, [sent, busy], {}, now=NOW, requested=None,
                      spec_changed=False)
    assert step.state.outcomes == {sent.name: "Succeeded"}
    plan = f.plan_children(fs, "reductstore", ["b1", "b2"], [sent, busy], OWNER, step.state)
    (change,) = plan.change
    assert change.name == sent.name and change.spec is not None and change.spec["suspend"]
    assert change.annotations == {f.OUTCOME_ANNOTATION: "Succeeded"}


def test_manual_runs_once_per_annotation_value_and_not_while_suspended() -> None:
    fs = f.parse("orders", spec(trigger={"type": "manual"}), "couchdb")
    step = f.run_step(fs, "couchdb", {}, [], {"a": "orders-1"}, now=NOW, requested="1",
                      spec_changed=False)
    assert step.state.starting and step.fields["lastRunRequest"] == "1"
    assert step.fields["lastExecution"]["trigger"] == "manual"
    assert int(step.state.active) % 10 == 1
    again = f.run_step(fs, "couchdb", {"lastRunRequest": "1"}, [], {}, now=NOW,
                       requested="1", spec_changed=False)
    assert not again.state.starting and "lastExecution" not in again.fields
    paused = f.parse("orders", spec(trigger={"type": "manual"}, suspend=True), "couchdb")
    skipped = f.run_step(paused, "couchdb", {}, [], {}, now=NOW, requested="2",
                         spec_changed=False)
    assert [e[1] for e in skipped.events] == ["RunSkipped"] and not skipped.state.active


def test_a_run_over_nothing_is_over_at_once_and_history_is_bounded() -> None:
    fs = f.parse("orders", spec(trigger={"type": "manual"}, historyLimit=2), "couchdb")
    previous = [{"id": 30, "status": "Succeed"}, {"id": 20, "status": "Succeed"}]
    step = f.run_step(fs, "couchdb", {"executions": previous}, [], {}, now=NOW,
                      requested="x", spec_changed=False)
    assert step.fields["lastExecution"]["status"] == "Succeed"
    assert [e["id"] for e in step.fields["executions"]] == [
        int(f.run_id(NOW, requested=True)), 30]
    assert [e[1] for e in step.events] == ["RunStarted", "ExecutionSucceeded"]


def test_missed_schedule_runs_once_on_return() -> None:
    fs = scheduled()
    status = {"nextRunTime": (NOW - timedelta(hours=5)).isoformat().replace("+00:00", "Z")}
    step = f.run_step(fs, "couchdb", status, [], {"a": "orders-1"}, now=NOW, requested=None,
                      spec_changed=False)
    assert step.state.starting
    assert step.fields["nextRunTime"] == "2026-12-01T13:00:00Z"


# -- status --------------------------------------------------------------------


def test_status_aggregates_children() -> None:
    fs = fs_of()
    wanted = {f.child_name("orders", db): db for db in ("orders-1", "orders-2")}
    ok = [child("orders-1", fs), child("orders-2", fs)]
    summary = f.summarize(fs, wanted, ok, [], "couch-eu")
    assert (summary.matched, summary.ready, summary.failed) == (2, 2, 0)
    assert summary.conditions[0].status and summary.conditions[0].reason == "AllReady"
    stale = [ok[0], child("orders-2", fs, observed_generation=0)]
    waiting = f.summarize(fs, wanted, stale, [], "couch-eu")
    assert not waiting.conditions[0].status and waiting.conditions[0].reason == "Progressing"
    stuck = [ok[0], child("orders-2", fs, stalled=True, ready=False, reason="Unauthorized",
                          message="bad password for us-writer")]
    bad = f.summarize(fs, wanted, stuck, [], "couch-eu")
    stalled = {c.type: c for c in bad.conditions}["Stalled"]
    assert stalled.status and ok[1].name in stalled.message and "Unauthorized" in \
        stalled.message
    nothing = f.summarize(fs, {}, [], [], "couch-eu")
    assert nothing.conditions[0].status and "0 matched" in nothing.conditions[0].message
    taken = f.summarize(fs, wanted, ok[:1], [child("orders-2", fs, owner_uid="x")],
                        "couch-eu")
    assert {c.type: c for c in taken.conditions}["Stalled"].reason == "OwnedByAnother"


def test_status_is_unchanged_when_recomputed() -> None:
    fs = fs_of()
    summary = f.summarize(fs, {}, [], [], "couch-eu")
    first = f.policy_status(previous=None, generation=1, summary=summary, error=None,
                            fields={}, now="2026-12-01T12:00:00Z")
    again = f.policy_status(previous=first, generation=1, summary=summary, error=None,
                            fields={}, now="2026-12-01T12:05:00Z")
    assert again == first


# -- CouchDB answers -------------------------------------------------------------


def test_db_updates_and_all_dbs_answers() -> None:
    from replication_operator.backends.couchdb import dbupdates

    payload = {"results": [{"db_name": "orders-5", "type": "created", "seq": "1-a"},
                           {"db_name": "orders-1", "type": "updated", "seq": "2-b"},
                           {"db_name": "orders-2", "type": "deleted", "seq": "3-c"}],
               "last_seq": "3-c"}
    assert dbupdates.parse_updates(payload, "now") == (
        [("orders-5", "created"), ("orders-2", "deleted")], "3-c")
    assert dbupdates.parse_updates({"results": []}, "7-x") == ([], "7-x")
    assert dbupdates.parse_updates("not json we know", "7-x") == ([], "7-x")
    assert dbupdates.database_names(["_users", "a"]) == ["_users", "a"]
    with pytest.raises(ValueError):
        dbupdates.database_names({"error": "unauthorized"})
