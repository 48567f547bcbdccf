"""ReplicationPolicy decisions and status (pure), and Harbor robot bodies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication_operator.backends.harbor.tokens import (
    full_name,
    is_robot_for,
    robot_body,
    robot_differences,
)
from replication_operator.backends.policies import Execution, FailedTask, PolicyObservation
from replication_operator.backends.tokens import TokenRequest
from replication_operator.errors import SpecError, TransientBackendError
from replication_operator.reconcile.policy import (
    RunVerb,
    finished_message,
    merge_history,
    needs_failed_tasks,
    newly_finished,
    next_run_time,
    policy_status,
    previous_history,
    run_decision,
)

NOW = "2026-11-23T12:00:00Z"


def ex(id_: int, status: str = "Succeed", **kw: int) -> Execution:
    return Execution(id=id_, status=status, trigger="manual", **kw)  # type: ignore[arg-type]


def test_run_once_per_new_value() -> None:
    assert run_decision(requested=None, honoured=None, enabled=True).verb is RunVerb.NOTHING
    assert run_decision(requested="1", honoured=None, enabled=True).verb is RunVerb.START
    assert run_decision(requested="1", honoured="1", enabled=True).verb is RunVerb.NOTHING
    assert run_decision(requested="2", honoured="1", enabled=True).verb is RunVerb.START
    waiting = run_decision(requested="2", honoured="1", enabled=True, exists=False)
    assert waiting.verb is RunVerb.NOTHING, "not on the server yet: the request waits"
    skipped = run_decision(requested="2", honoured="1", enabled=False)
    assert skipped.verb is RunVerb.SKIP and "spec.enabled" in skipped.message


def test_history_keeps_finished_and_drops_gone() -> None:
    previous = [ex(5, "InProgress"), ex(4), ex(3, "Failed")]
    merged = merge_history(previous, [ex(6, "InProgress"), ex(5, "Succeed")], gone={3})
    assert [(e.id, e.status) for e in merged] == [(6, "InProgress"), (5, "Succeed"),
                                                 (4, "Succeed")]


executions = st.lists(st.builds(ex, st.integers(1, 60),
                                st.sampled_from(["InProgress", "Succeed", "Failed"])),
                      max_size=15, unique_by=lambda e: e.id)


@given(executions, executions, st.sets(st.integers(1, 60)))
def test_history_is_newest_first_unique_and_prefers_the_server(
        previous: list[Execution], observed: list[Execution], gone: set[int]) -> None:
    merged = merge_history(previous, observed, gone)
    ids = [e.id for e in merged]
    assert ids == sorted(set(ids), reverse=True)
    for execution in observed:
        assert execution in merged
    assert {e.id for e in previous} - gone - {e.id for e in observed} <= set(ids)


def test_newly_finished_is_news_only() -> None:
    assert newly_finished([], [ex(1), ex(2, "Failed")]) == []  # first look: history
    previous = [ex(3, "InProgress"), ex(2)]
    observed = [ex(5, "InProgress"), ex(4, "Failed"), ex(3, "Succeed"), ex(2)]
    assert [e.id for e in newly_finished(previous, observed)] == [3, 4]


def test_a_run_started_and_finished_within_one_reconcile_is_news() -> None:
    assert [e.id for e in newly_finished([], [ex(7), ex(1)], started=[7])] == [7]
    assert newly_finished([], [ex(7, "InProgress")], started=[7]) == []
    assert [e.id for e in newly_finished([ex(3)], [ex(7), ex(3)], started=[7])] == [7]


def test_next_run_only_for_enabled_schedules() -> None:
    now = datetime(2026, 11, 23, 10, 7, tzinfo=UTC)
    trigger = {"type": "scheduled", "schedule": "0 */6 * * *"}
    assert next_run_time(trigger=trigger, enabled=True, now=now) == "2026-11-23T12:00:00Z"
    assert next_run_time(trigger=trigger, enabled=False, now=now) is None
    assert next_run_time(trigger={"type": "manual"}, enabled=True, now=now) is None


def seen(**kw: object) -> PolicyObservation:
    return PolicyObservation(exists=True, external_id="7",
                             registries=[{"server": "dr", "id": 3}], **kw)  # type: ignore[arg-type]


def test_status_in_sync_with_history_limit_and_failed_tasks() -> None:
    history = [ex(9, "Failed", total=2, failed=1, succeeded=1), ex(8), ex(7)]
    tasks = [FailedTask("library/a:[1]", "mirror/a:[1]", "ERROR: denied")]
    status = policy_status(previous={}, generation=2, seen=seen(), history=history,
                           history_limit=2, error=None, next_run=None, failed_tasks=tasks,
                           fields={"lastRunRequest": "r1"}, now=NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "last execution 9 Failed" in ready["message"]
    assert status["externalName"] == "7" and status["lastRunRequest"] == "r1"
    assert [e["id"] for e in status["executions"]] == [9, 8]
    assert status["lastExecution"]["failedTasks"] == [
        {"source": "library/a:[1]", "destination": "mirror/a:[1]", "message": "ERROR: denied"}]
    # the next reconcile does not fetch the tasks again: they are kept from the status
    again = policy_status(previous=status, generation=2, seen=seen(), history=history,
                          history_limit=2, error=None, next_run=None, failed_tasks=None,
                          fields={}, now="2026-11-23T12:01:00Z")
    assert {k: v for k, v in again.items() if status.get(k) != v} == {}
    assert previous_history(status) == history[:2]
    assert not needs_failed_tasks(history, status), "read once per failed execution"
    assert needs_failed_tasks([ex(10, "Failed"), *history], status)
    assert not needs_failed_tasks([ex(10, "Succeed")], status)


def test_status_on_transient_error_keeps_history() -> None:
    before = policy_status(previous={}, generation=1, seen=seen(), history=[ex(4)],
                           history_limit=10, error=None, next_run=None, failed_tasks=None,
                           fields={}, now=NOW)
    error = TransientBackendError("GET https://h/api/v2.0/...: HTTP 503")
    status = policy_status(previous=before, generation=1, seen=None,
                           history=previous_history(before), history_limit=10, error=error,
                           next_run=None, failed_tasks=None, fields={}, now=NOW)
    reasons = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert reasons["Ready"] == ("False", "BackendUnavailable")
    assert reasons["Reconciling"][0] == "True" and reasons["Stalled"][0] == "False"
    assert status["executions"] == before["executions"]
    assert status["lastError"]["code"] == "BackendUnavailable"


def token(read: tuple[str, ...] = (), write: tuple[str, ...] = (), full: bool = False,
          days: int = 0) -> TokenRequest:
    return TokenRequest(key="ns/t", external_name="ns.t", full_access=full, read=read,
                        write=write, expires_in_days=days)


def test_robot_levels_and_names() -> None:
    one = robot_body(token(read=("library",), write=("library",), days=30))
    assert one["level"] == "project" and one["duration"] == 30
    assert full_name(one) == "robot$library+ns.t"
    assert {(a["resource"], a["action"]) for a in one["permissions"][0]["access"]} == {
        ("repository", "pull"), ("repository", "push"), ("repository", "list"),
        ("project", "read")}  # pull alone cannot read a private project (BACKENDS.md §2a)
    many = robot_body(token(read=("a",), write=("b",)))
    assert many["level"] == "system" and full_name(many) == "robot$ns.t"
    assert many["duration"] == -1
    grants = {p["namespace"]: sorted(a["action"] for a in p["access"])
              for p in many["permissions"]}
    assert grants == {"a": ["list", "pull", "read"], "b": ["list", "pull", "push", "read"]}
    everything = robot_body(token(full=True))
    assert everything["permissions"][0]["namespace"] == "*"
    with pytest.raises(SpecError, match=r"spec\.permissions"):
        robot_body(token())


def test_robot_matching_and_differences() -> None:
    assert is_robot_for("robot$library+ns.t", "ns.t") and is_robot_for("robot$ns.t", "ns.t")
    assert not is_robot_for("robot$ns.tt", "ns.t") and not is_robot_for("ns.t", "ns.t")
    desired = robot_body(token(read=("a",)))
    observed = {**desired, "name": full_name(desired), "id": 4,
                "permissions": [{"kind": "project", "namespace": "a",
                                 "access": [{"resource": r, "action": a} for r, a in (
                                     ("project", "read"), ("repository", "list"),
                                     ("repository", "pull"))]}]}
    assert robot_differences(desired, observed) == []
    pull_only = {**observed, "permissions": [{"kind": "project", "namespace": "a", "access": [
        {"resource": "repository", "action": "pull"}]}]}
    assert robot_differences(desired, pull_only) == ["permissions"]  # an older robot: widened
    widened = robot_body(token(read=("a",), write=("a",)))
    assert robot_differences(widened, observed) == ["permissions"]
    assert robot_differences(robot_body(token(read=("a", "b"))), observed) == [
        "permissions (robot level)"]
    assert robot_differences(desired, {**observed, "disable": True}) == [
        "disabled on the server"]


def test_an_execution_harbor_never_closes_is_reported_by_its_counts() -> None:
    """BACKENDS.md §2a: InProgress with succeed == total, in_progress == 0, no end time."""
    open_done = ex(7, "InProgress", total=3, succeeded=2, failed=1, in_progress=0)
    assert open_done.tasks_finished and open_done.settled and open_done.outcome == "Failed"
    assert open_done.as_status()["tasksFinished"] is True
    running = ex(8, "InProgress", total=3, succeeded=1, in_progress=2)
    assert not running.tasks_finished and running.outcome == "InProgress"
    assert not ex(9, "InProgress").tasks_finished, "no tasks yet is not finished"
    assert "tasksFinished" not in ex(10, "Succeed", total=1, succeeded=1).as_status()

    # the event comes once, when the tasks end, not again when Harbor closes it late
    before = [ex(7, "InProgress", total=3, succeeded=1, in_progress=2)]
    assert [e.id for e in newly_finished(before, [open_done])] == [7]
    assert newly_finished([open_done], [ex(7, "Failed", total=3, succeeded=2, failed=1)]) == []
    assert needs_failed_tasks([open_done], {})
    message = finished_message(open_done)
    assert "Failed" in message and "has not closed" in message

    seen = PolicyObservation(exists=True, external_id="12")
    status = policy_status(previous={}, generation=1, seen=seen, history=[open_done],
                           history_limit=5, error=None, next_run=None, failed_tasks=[],
                           fields={}, now=NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "has not closed" in ready["message"]
    assert status["lastExecution"]["tasksFinished"] is True
