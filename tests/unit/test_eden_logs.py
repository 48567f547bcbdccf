"""Pure: sync_log rows, tasks and jobs → a Replication's phase and details, and a policy's
executions (with the tasks Eden skipped after a failed one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from replication_operator.backends.base import COMPLETED, ERROR, FAILED, PENDING, RUNNING
from replication_operator.backends.eden import logs

ORG, OFFICE = "org_organisation", "org_office"
T0 = datetime(2025, 5, 1, 10, 0, 0, tzinfo=UTC)


def at(seconds: int) -> str:
    return datetime.fromtimestamp(T0.timestamp() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def row(i: int, seconds: int, resource: str | None, result: str, message: str,
        action: str = "import", mode: str = "pull/outgoing") -> dict[str, Any]:
    return {"id": i, "timestmp": at(seconds), "repository_id": 1, "resource_name": resource,
            "mode": mode, "action": action, "result": result, "remote": result != "success",
            "message": message}


def job(last_run: int | None, status: str = "QUEUED", times_run: int = 1,
        name: str = "dbops.repl:t/o:org_organisation", start: int = 0) -> dict[str, Any]:
    return {"id": 5, "task_name": name, "status": status, "times_run": times_run,
            "last_run_time": at(last_run) if last_run is not None else None,
            "start_time": at(start), "next_run_time": at(300), "enabled": True}


def observe(rows: list[dict[str, Any]], the_job: dict[str, Any], continuous: bool = True,
            jobs: list[dict[str, Any]] | None = None, resource: str = ORG) -> Any:
    return logs.observe_replication(
        resource=resource, rows=logs.parse_rows(rows), job=the_job,
        jobs=jobs if jobs is not None else [the_job],
        task={"last_pull": at(9)}, continuous=continuous, repository="dbops.t.peer")


def test_rows_are_parsed_newest_first_and_records_read_from_messages() -> None:
    parsed = logs.parse_rows([
        row(1, 0, ORG, "success", "Data imported successfully (3 records)"),
        row(2, 5, ORG, "success", "No data to import (already up-to-date)"),
        row(3, 6, ORG, "success", "data sent successfully (7 records)", "send",
            "push/outgoing"),
        {"id": 9, "timestmp": None}])
    assert [r.id for r in parsed] == [3, 2, 1]
    assert [r.records for r in parsed] == [7, 0, 3]


def test_a_continuous_sync_that_worked_is_running_with_records_and_last_pull() -> None:
    seen = observe([row(1, 1, ORG, "success", "Data imported successfully (3 records)")],
                   job(0))
    assert (seen.phase, seen.reason) == (RUNNING, "Synced")
    assert seen.progress.docs_written == 3 and seen.last_sync == "2025-05-01T10:00:01Z"
    assert seen.diagnostics == {"repository": "dbops.t.peer", "lastPull": "2025-05-01T10:00:09Z",
                                "lastResult": "success"}
    assert seen.mode == "enabled"


def test_before_the_first_run_a_continuous_sync_is_scheduled() -> None:
    seen = observe([], job(None, times_run=0))
    assert (seen.phase, seen.reason) == (RUNNING, "Scheduled") and "next run" in seen.message


def test_a_wrong_peer_password_is_an_error_with_edens_message_and_result() -> None:
    seen = observe([row(1, 1, ORG, "error", "b'Authentication Required'", "fetch")], job(0))
    assert (seen.phase, seen.reason) == (ERROR, "PeerUnauthorized")
    assert "b'Authentication Required'" in seen.message and "error" in seen.message
    assert seen.diagnostics["lastResult"] == "error"


def test_a_push_refused_by_the_peer_is_fatal() -> None:
    seen = observe([row(1, 1, ORG, "fatal", "Authentication Required", "send",
                        "push/outgoing")], job(0))
    assert seen.phase == ERROR and "send of org_organisation fatal" in seen.message


def test_a_task_after_a_failed_one_is_reported_as_not_run_naming_the_failed_task() -> None:
    rows = [row(1, 0, ORG, "success", "Data imported successfully (1 records)"),
            row(2, 0, OFFICE, "success", "Data imported successfully (1 records)"),
            row(3, 60, ORG, "error", "b'Authentication Required'", "fetch")]
    seen = observe(rows, job(60), resource=OFFICE)
    assert (seen.phase, seen.reason) == (ERROR, "NotRun")
    assert "org_office did not run" in seen.message and "org_organisation" in seen.message
    assert "skips the later tasks" in seen.message


def test_a_run_in_progress_shows_the_previous_outcome() -> None:
    rows = [row(1, 0, OFFICE, "success", "Data imported successfully (2 records)")]
    seen = observe(rows, job(60, status="RUNNING"), resource=OFFICE)
    assert (seen.phase, seen.reason) == (RUNNING, "Synced")


def test_a_failed_registration_explains_a_repository_before_any_run() -> None:
    rows = [row(1, 0, None, "fatal", "Authentication Required", "request registration",
                "push/outgoing")]
    seen = observe(rows, job(None, times_run=0))
    assert seen.phase == ERROR and "request registration" in seen.message
    later = [*rows, row(2, 5, ORG, "success", "Data imported successfully (1 records)")]
    assert observe(later, job(4)).phase == RUNNING


def test_one_shot_queued_then_completed_or_failed() -> None:
    queued = observe([], job(None, times_run=0), continuous=False)
    assert (queued.phase, queued.reason) == (PENDING, "Queued")
    done = observe([row(1, 2, ORG, "success", "Data imported successfully (4 records)")],
                   job(1, status="COMPLETED"), continuous=False)
    assert (done.phase, done.completed_at, done.progress.docs_written) == \
        (COMPLETED, "2025-05-01T10:00:02Z", 4)
    failed = observe([row(1, 2, ORG, "error", "b'Authentication Required'", "fetch")],
                     job(1, status="COMPLETED"), continuous=False)
    assert failed.phase == FAILED and "Authentication Required" in failed.message
    silent = observe([], job(1, status="COMPLETED"), continuous=False)
    assert (silent.phase, silent.reason) == (FAILED, "NotSynced")
    running = observe([], job(1, status="RUNNING", times_run=0), continuous=False)
    assert running.phase == PENDING


def test_a_one_shot_reads_only_its_own_run() -> None:
    older = row(1, 0, ORG, "error", "b'Authentication Required'", "fetch")
    mine = row(2, 31, ORG, "success", "Data imported successfully (1 records)")
    seen = observe([older, mine], job(30, status="COMPLETED"), continuous=False)
    assert seen.phase == COMPLETED


def test_a_disabled_job_is_paused() -> None:
    assert observe([], {**job(None, times_run=0), "enabled": False}).mode == "paused"


# --- executions ------------------------------------------------------------------------------

POLICY_JOB = "dbops.policy:t/p:org_organisation,org_office"
RUN_JOB = "dbops.run:t/p:org_organisation,org_office"


def test_a_scheduled_run_that_worked() -> None:
    rows = logs.parse_rows([row(1, 1, ORG, "success", "Data imported successfully (1 records)"),
                            row(2, 2, OFFICE, "success", "No data to import")])
    the_job = job(0, name=POLICY_JOB)
    results, gone = logs.job_executions(jobs=[the_job], all_jobs=[the_job],
                                        resources=[ORG, OFFICE], rows=rows)
    (result,) = results
    execution = result.execution
    assert execution.id == logs.execution_id(T0, manual=False) and gone == set()
    assert (execution.status, execution.trigger, execution.total, execution.succeeded,
            execution.failed, execution.stopped) == ("Succeed", "scheduled", 2, 2, 0, 0)
    assert (execution.start_time, execution.end_time) == ("2025-05-01T10:00:00Z",
                                                          "2025-05-01T10:00:02Z")


def test_a_failed_run_lists_the_failed_task_and_the_skipped_ones() -> None:
    rows = logs.parse_rows([row(1, 1, ORG, "error", "b'Authentication Required'", "fetch")])
    the_job = job(0, name=RUN_JOB, status="COMPLETED", start=0)
    (result,), _ = logs.job_executions(jobs=[the_job], all_jobs=[the_job],
                                       resources=[ORG, OFFICE], rows=rows)
    execution = result.execution
    assert execution.id == logs.execution_id(T0, manual=True) and execution.id % 10 == 1
    assert (execution.status, execution.trigger, execution.failed, execution.stopped) == \
        ("Failed", "manual", 1, 1)
    assert "org_office did not run" in execution.status_text
    assert [t.source for t in result.failed_tasks] == [ORG, OFFICE]
    assert "Authentication Required" in result.failed_tasks[0].message
    assert "did not run" in result.failed_tasks[1].message


def test_a_requested_run_is_in_progress_until_it_ran() -> None:
    queued = job(None, name=RUN_JOB, status="QUEUED", times_run=0, start=40)
    (result,), _ = logs.job_executions(jobs=[queued], all_jobs=[queued],
                                       resources=[ORG, OFFICE], rows=[])
    assert result.execution.status == "InProgress" and result.execution.in_progress == 2
    assert result.execution.id == logs.execution_id(
        datetime.fromtimestamp(T0.timestamp() + 40, UTC), manual=True)


def test_followed_runs_end_where_the_next_run_starts_and_unknown_ones_are_gone() -> None:
    rows = logs.parse_rows([row(1, 1, ORG, "success", "Data imported successfully (1 records)"),
                            row(2, 2, OFFICE, "success", "No data to import"),
                            row(3, 61, ORG, "error", "b'Authentication Required'", "fetch")])
    the_job = job(60, name=POLICY_JOB)
    old = logs.execution_id(T0, manual=False)
    lost = logs.execution_id(datetime(2024, 1, 1, tzinfo=UTC), manual=False)
    results, gone = logs.job_executions(jobs=[the_job], all_jobs=[the_job],
                                        resources=[ORG, OFFICE], rows=rows,
                                        follow=[old, lost])
    by_id = {r.execution.id: r.execution for r in results}
    assert by_id[old].status == "Succeed" and by_id[old].total == 2
    newest = results[0].execution
    assert newest.id > old and newest.status == "Failed"
    assert gone == {lost}


def test_the_last_run_is_next_run_time_minus_period_where_job_json_omits_it() -> None:
    """Eden's job.json has no last_run_time (seen on Eden built from master of 2024);
    web2py sets next_run_time to the run's start + period when it takes the job."""
    listed = {"id": 7, "task_name": "dbops.repl:t/o:org_organisation", "period": 600,
              "start_time": at(0), "next_run_time": at(604), "times_run": 1,
              "times_failed": 0, "status": "COMPLETED", "repeats": 1, "enabled": True}
    assert logs.last_run(listed) == T0 + timedelta(seconds=4)
    assert logs.last_run({**listed, "status": "QUEUED", "times_run": 0,
                          "next_run_time": at(0)}) is None, "not run yet"
    assert logs.last_run({**listed, "status": "FAILED", "times_run": 0,
                          "times_failed": 1}) == T0 + timedelta(seconds=4)
    assert logs.last_run({**listed, "status": "RUNNING", "times_run": 0,
                          "next_run_time": at(2)}) == T0 + timedelta(seconds=2)
    rows = [row(1, 5, ORG, "success", "Data imported successfully (2 records)")]
    seen = observe(rows, listed, continuous=False)
    assert (seen.phase, seen.progress.docs_written) == (COMPLETED, 2)


def test_a_one_shot_the_scheduler_timed_out_says_so() -> None:
    """A run web2py's scheduler ended (TIMEOUT after a hang: seen on Eden built from
    master of 2024) is not a resource Eden skipped."""
    hung = {"id": 7, "task_name": "dbops.repl:t/o:org_organisation", "period": 300,
            "start_time": at(0), "next_run_time": at(302), "times_run": 0,
            "times_failed": 1, "status": "TIMEOUT", "timeout": 600, "repeats": 1}
    seen = observe([], hung, continuous=False)
    assert (seen.phase, seen.reason) == (FAILED, "RunFailed")
    assert "TIMEOUT" in seen.message and "600" in seen.message
