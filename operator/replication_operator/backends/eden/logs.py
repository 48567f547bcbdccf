"""Pure: what Eden's `sync_log`, the tasks and the scheduler jobs say about a sync.

`sync_log` is the only reliable record of a run (`BACKENDS.md` §4): one row per action
(`fetch`, `import`, `send`, `request registration`), result `success | warning |
error | fatal`, Eden's message. A run of a repository starts at its job's last run
time (see `last_run`); the rows from then until the next run belong to it. Within a run
Eden skips every task after a failed one, so a task without a row in a run that had a
failure "did not run", and the status says which task failed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from replication_operator.backends.base import (
    COMPLETED,
    ERROR,
    FAILED,
    PENDING,
    RUNNING,
    Observation,
    Progress,
)
from replication_operator.backends.policies import (
    FAILED as EXECUTION_FAILED,
)
from replication_operator.backends.policies import (
    IN_PROGRESS,
    SUCCEED,
    Execution,
    FailedTask,
)

FAILURES = ("error", "fatal")
_RECORDS = re.compile(r"\((\d+) records?\b")
_IDLE = ("QUEUED", "COMPLETED", "FAILED", "TIMEOUT", "STOPPED", "EXPIRED")
_ENDED = ("COMPLETED", "FAILED", "TIMEOUT", "STOPPED", "EXPIRED")


def parse_time(value: Any) -> datetime | None:
    """Eden's datetimes (UTC; `T` or space; with or without a zone)."""
    if not value:
        return None
    text = str(value).strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class LogRow:
    id: int
    time: datetime
    repository_id: int
    resource: str | None
    mode: str
    action: str
    result: str
    message: str

    @property
    def failed(self) -> bool:
        return self.result in FAILURES

    @property
    def records(self) -> int | None:
        """Records imported or sent, where the message says so."""
        match = _RECORDS.search(self.message)
        if match and self.result in ("success", "warning"):
            return int(match[1])
        if self.message.startswith("No data to"):
            return 0
        return None

    def describe(self) -> str:
        what = self.action or self.mode or "sync"
        where = f" of {self.resource}" if self.resource else ""
        return f"{what}{where} {self.result} at {iso(self.time)}: {self.message}"


def parse_rows(raw: Iterable[Mapping[str, Any]]) -> list[LogRow]:
    """sync_log rows, newest first; rows without a time are dropped."""
    rows = []
    for item in raw:
        when = parse_time(item.get("timestmp"))
        if when is None:
            continue
        rows.append(LogRow(id=int(item.get("id") or 0), time=when,
                           repository_id=int(item.get("repository_id") or 0),
                           resource=str(item["resource_name"]) if item.get("resource_name")
                           else None, mode=str(item.get("mode") or ""),
                           action=str(item.get("action") or ""),
                           result=str(item.get("result") or ""),
                           message=str(item.get("message") or "")))
    return sorted(rows, key=lambda r: (r.time, r.id), reverse=True)


def reason_of(row: LogRow) -> str:
    """A condition reason from Eden's message."""
    text = row.message.lower()
    if "authentication required" in text or "not authorized" in text:
        return "PeerUnauthorized"
    if "insufficient privileges" in text:
        return "PeerForbidden"
    if "unavailable" in text:
        return "PeerUnavailable"
    return "SyncFailed"


@dataclass
class Outcome:
    """What a run (or the log as a whole) says about one task."""

    state: str  # ok | failed | not_run | none
    row: LogRow | None = None  # the task's newest row (ok, failed)
    failure: LogRow | None = None  # not_run: the row of the task that failed first

    def message(self, resource: str) -> str:
        if self.state == "failed" and self.row is not None:
            return self.row.describe()
        if self.state == "not_run" and self.failure is not None:
            return (f"{resource} did not run in the sync at {iso(self.failure.time)}: Eden "
                    f"skips the later tasks of a run after a failed one "
                    f"({self.failure.describe()})")
        return ""


def window(rows: Sequence[LogRow], start: datetime | None, end: datetime | None = None
           ) -> list[LogRow]:
    return [r for r in rows if (start is None or r.time >= start)
            and (end is None or r.time < end)]


def outcome(rows: Sequence[LogRow], resource: str, *, one_run: bool = True) -> Outcome:
    """The task's state from the rows of one run (`one_run`), or from the whole log
    (newest first); only within one run can a task be known not to have run."""
    mine = [r for r in rows if r.resource == resource]
    newest = mine[0] if mine else None
    # a failed registration (no resource) newer than the task's rows explains them
    registration = next((r for r in rows if r.resource is None), None)
    if registration is not None and registration.failed and \
            (newest is None or registration.time > newest.time):
        return Outcome("failed", registration)
    if newest is not None:
        # pull and push of one task can share a second: a failure among them counts
        failing = next((r for r in mine if r.failed and r.time >= newest.time), None)
        return Outcome("failed", failing) if failing is not None else Outcome("ok", newest)
    if one_run:
        failure = next((r for r in reversed(rows) if r.failed and r.resource), None)
        if failure is not None:
            return Outcome("not_run", failure=failure)
    return Outcome("none")


def last_run(job: Mapping[str, Any]) -> datetime | None:
    """When the job last started a run. Eden's `job.json` does not list web2py's
    `last_run_time` (not readable; seen on Eden built from master of 2024), but web2py
    sets `next_run_time` to the run's start + `period` when it takes the job, also for
    one that then completes: so after a run the start is `next_run_time - period`. While
    the worker runs it (RUNNING) the run started at or after `next_run_time`; before its
    first run (or ASSIGNED to a worker for it) it has no run to show."""
    listed = parse_time(job.get("last_run_time"))
    if listed is not None or "last_run_time" in job:
        return listed
    scheduled = parse_time(job.get("next_run_time"))
    if scheduled is None:
        return None
    status = _status(job)
    if status == "RUNNING":
        return scheduled
    ran = _times_run(job) + _count(job.get("times_failed"))
    if ran == 0 and status != "COMPLETED":
        return None
    period = _count(job.get("period"))
    return scheduled - timedelta(seconds=period)


def _count(value: Any) -> int:
    try:
        return int(str(value if value is not None else 0))
    except ValueError:
        return 0


def run_starts(jobs: Iterable[Mapping[str, Any]]) -> list[datetime]:
    """When the repository's jobs last started a run, oldest first."""
    starts = {last_run(j) for j in jobs}
    return sorted(s for s in starts if s is not None)


def current_outcome(rows: Sequence[LogRow], jobs: Sequence[Mapping[str, Any]], resource: str
                    ) -> Outcome:
    """The task as of the repository's latest run; before its turn in a run that is
    still going (or if the latest run has no row for it and no failure), as of the
    run before."""
    starts = run_starts(jobs)
    if starts:
        latest = outcome(window(rows, starts[-1]), resource)
        if latest.state != "none":
            return latest
    return outcome(rows, resource, one_run=False)


def _status(job: Mapping[str, Any]) -> str:
    return str(job.get("status") or "").upper()


def _times_run(job: Mapping[str, Any]) -> int:
    try:
        return int(str(job.get("times_run") or 0))
    except ValueError:
        return 0


def observe_replication(*, resource: str, rows: Sequence[LogRow], job: Mapping[str, Any],
                        jobs: Sequence[Mapping[str, Any]], task: Mapping[str, Any] | None,
                        continuous: bool, repository: str) -> Observation:
    """Phase and details of a Replication from its job, its task and the sync log of
    its repository (`rows`, `jobs`: all of the repository's)."""
    seen = Observation(exists=True, started_at=iso(parse_time(job.get("start_time"))))
    seen.mode = "enabled" if _as_bool(job.get("enabled", True)) else "paused"
    last_pull = parse_time((task or {}).get("last_pull"))
    seen.diagnostics = {"repository": repository}
    if last_pull is not None:
        seen.diagnostics["lastPull"] = iso(last_pull)
    if continuous:
        result = current_outcome(rows, jobs, resource)
    else:
        start = last_run(job)
        if start is None or (_times_run(job) == 0 and _status(job) not in _ENDED):
            seen.phase, seen.reason = PENDING, "Queued"
            seen.message = f"one-shot sync of {resource} waits for Eden's scheduler"
            return seen
        later = [s for s in run_starts(jobs) if s > start]
        result = outcome(window(rows, start, later[0] if later else None), resource)
        if result.state == "none" and _status(job) not in _IDLE:
            seen.phase, seen.reason = PENDING, "Running"
            seen.message = f"one-shot sync of {resource} is running"
            return seen
    if result.row is not None:
        seen.last_sync = iso(result.row.time)
        seen.diagnostics["lastResult"] = result.row.result
        records = result.row.records
        if records is not None and result.state == "ok":
            seen.progress = Progress(docs_written=records)
    if result.state == "ok":
        seen.phase = RUNNING if continuous else COMPLETED
        seen.reason = "Synced" if continuous else "Completed"
        assert result.row is not None
        seen.message = f"last sync {iso(result.row.time)}: {result.row.message}"
        if not continuous:
            seen.completed_at = seen.last_sync
    elif result.state in ("failed", "not_run"):
        seen.phase = ERROR if continuous else FAILED
        row = result.row or result.failure
        seen.reason = "NotRun" if result.state == "not_run" else \
            reason_of(row) if row is not None else "SyncFailed"
        seen.message = result.message(resource)
        if result.failure is not None:
            seen.diagnostics["lastResult"] = result.failure.result
    elif continuous:
        seen.phase, seen.reason = RUNNING, "Scheduled"
        next_run = iso(parse_time(job.get("next_run_time")))
        seen.message = f"waiting for the first sync of {resource}" + \
            (f" (next run {next_run})" if next_run else "")
    elif _status(job) in ("TIMEOUT", "FAILED", "STOPPED", "EXPIRED"):
        # the scheduler's own verdict: e.g. a run that hung until its timeout (seen on
        # Eden built here: web2py's forked task process stuck opening sqlite)
        seen.phase, seen.reason = FAILED, "RunFailed"
        seen.message = (f"Eden's scheduler ended the one-shot run with status "
                        f"{_status(job)} (timeout {job.get('timeout')} s) before any "
                        f"sync_log row for {resource}")
    else:
        seen.phase, seen.reason = FAILED, "NotSynced"
        seen.message = (f"the one-shot run finished without syncing {resource} (no sync_log "
                        f"row: Eden skips resources it does not know)")
    return seen


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "t", "1", "yes", "on")


# --- executions (ReplicationPolicy history) ---------------------------------------------

def execution_id(start: datetime, manual: bool) -> int:
    """Run start in Unix seconds times 10, + 1 for a run on request: unique per policy and
    ordered by time, as the status history needs."""
    return int(start.timestamp()) * 10 + (1 if manual else 0)


def start_of(execution: int) -> datetime:
    return datetime.fromtimestamp(execution // 10, UTC)


@dataclass
class ExecutionResult:
    execution: Execution
    failed_tasks: list[FailedTask] = field(default_factory=list)


def execution(*, execution_id: int, resources: Sequence[str], rows: Sequence[LogRow],
              start: datetime, end: datetime | None, running: bool, trigger: str
              ) -> ExecutionResult:
    """One run of a policy's job over its resources, from the rows of its window."""
    mine = window(rows, start, end)
    outcomes = {r: outcome(mine, r) for r in resources}
    failed = [r for r, o in outcomes.items() if o.state == "failed"]
    not_run = [r for r, o in outcomes.items() if o.state == "not_run"]
    succeeded = [r for r, o in outcomes.items() if o.state == "ok"]
    waiting = [r for r, o in outcomes.items() if o.state == "none"]
    if running:
        status = IN_PROGRESS
    elif failed or not_run or waiting:
        status = EXECUTION_FAILED
    else:
        status = SUCCEED
    texts = []
    if not_run:
        first = next(o.failure for o in outcomes.values() if o.failure is not None)
        assert first is not None
        texts.append(f"{', '.join(not_run)} did not run: Eden skips the later tasks of a "
                     f"run after {first.resource or 'a task'} failed")
    if waiting and not running:
        texts.append(f"{', '.join(waiting)}: no sync_log row (not synced)")
    ended = max((r.time for r in mine), default=None) if not running else None
    result = ExecutionResult(Execution(
        id=execution_id, status=status, trigger=trigger, status_text="; ".join(texts),
        start_time=iso(start), end_time=iso(ended or (start if not running else None)),
        total=len(resources), succeeded=len(succeeded), failed=len(failed),
        in_progress=len(waiting) if running else 0,
        stopped=len(not_run) + (0 if running else len(waiting))))
    for resource in failed:
        row = outcomes[resource].row
        assert row is not None
        result.failed_tasks.append(FailedTask(resource, resource, row.describe()[:300]))
    for resource in not_run:
        result.failed_tasks.append(FailedTask(resource, resource,
                                              outcomes[resource].message(resource)[:300]))
    return result


def job_executions(*, jobs: Sequence[Mapping[str, Any]], all_jobs: Sequence[Mapping[str, Any]],
                   resources: Sequence[str], rows: Sequence[LogRow],
                   follow: Collection[int] = ()) -> tuple[list[ExecutionResult], set[int]]:
    """Executions of a policy: the latest run of each of its jobs (`jobs`: the policy's
    schedule and its runs on request), plus runs the caller saw going (`follow`), whose
    windows end where the repository's next run starts. Returns them and the followed
    ones that cannot be told any more (gone)."""
    follow = set(follow)
    starts = sorted({*run_starts(all_jobs), *(start_of(i) for i in follow)})
    results: dict[int, ExecutionResult] = {}
    for job in jobs:
        manual = str(job.get("task_name") or "").startswith("dbops.run:")
        started = last_run(job)
        status = _status(job)
        if manual and (started is None or _times_run(job) == 0) and \
                status in ("QUEUED", "ASSIGNED"):
            planned = parse_time(job.get("start_time"))
            if planned is None:
                continue
            ident = execution_id(planned, True)
            results[ident] = execution(execution_id=ident, resources=resources, rows=[],
                                       start=planned, end=None, running=True, trigger="manual")
            continue
        if started is None:
            continue
        planned = parse_time(job.get("start_time")) if manual else None
        ident = execution_id(planned or started, manual)
        later = [s for s in starts if s > started]
        running = status not in _IDLE
        results[ident] = execution(execution_id=ident, resources=resources, rows=rows,
                                   start=started, end=later[0] if later else None,
                                   running=running, trigger="manual" if manual else "scheduled")
    gone = set()
    for ident in follow - set(results):
        start = start_of(ident)
        later = [s for s in starts if s > start]
        if not later or not window(rows, start, later[0]):
            gone.add(ident)
            continue
        results[ident] = execution(execution_id=ident, resources=resources, rows=rows,
                                   start=start, end=later[0], running=False,
                                   trigger="manual" if ident % 10 else "scheduled")
    return sorted(results.values(), key=lambda r: r.execution.id, reverse=True), gone
