"""Decide what to do about one ReplicationPolicy beyond the policy itself, and what its
status says: runs on request, execution history, next run (pure functions)."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from replication_operator import cron
from replication_operator.backends.policies import (
    FAILED,
    Execution,
    FailedTask,
    PolicyObservation,
    Remote,
)
from replication_operator.credentials import Credentials
from replication_operator.errors import BackendError, MissingReferenceError
from replication_operator.http import ServerSettings
from replication_operator.status import (
    READY,
    RECONCILING,
    STALLED,
    SYNCED,
    Condition,
    error_conditions,
    healthy_conditions,
    merge_conditions,
)


def declared_registry(namespace: str, field: str, block: Mapping[str, Any],
                      secret: Mapping[str, str] | None) -> Remote:
    """A plain registry declared in a policy (`field` is e.g. "spec.target.registry") as
    the remote of a Harbor policy. Its identity (and so its Harbor registry, shared by
    the namespace's policies that declare the same one) is the declaration itself:
    type, URL, TLS choice and the Secret reference, never the Secret's content."""
    identity = {k: block.get(k) for k in ("type", "url", "insecure", "credentialType",
                                          "secretRef")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    ref = block.get("secretRef") or {}
    credentials, auth_type = Credentials(), "none"
    if ref:
        name = str(ref["name"])
        if secret is None:
            raise MissingReferenceError(f"Secret {name!r} ({field}.secretRef) not found")

        def value(key_field: str, default: str, required: bool) -> str:
            key = str(ref.get(key_field) or default)
            found = secret.get(key, "")
            if required and not found:
                raise MissingReferenceError(f"Secret {name!r} ({field}.secretRef) has no key "
                                            f"{key!r}")
            return found

        oauth = block.get("credentialType") == "oauth"
        credentials = Credentials(username=value("usernameKey", "username", not oauth),
                                  password=value("passwordKey", "password", True))
        auth_type = "bearer" if oauth else "basic"
    settings = ServerSettings(
        key=f"{namespace}/{block['type']}-{digest}", type=str(block["type"]),
        url=str(block["url"]).rstrip("/"), auth_type=auth_type, credentials=credentials,
        insecure_skip_verify=bool(block.get("insecure", False)))
    return Remote(settings, registry_type=str(block["type"]), declared_at=field,
                  secret=str(ref.get("name") or ""))


class RunVerb(enum.Enum):
    NOTHING = "nothing"
    START = "start"
    SKIP = "skip"


@dataclass(frozen=True)
class RunDecision:
    verb: RunVerb
    message: str = ""


def run_decision(*, requested: str | None, honoured: str | None, enabled: bool,
                 exists: bool = True) -> RunDecision:
    """One execution per new value of the run-requested annotation; a policy not yet
    visible on the server keeps the request waiting."""
    if not requested or requested == honoured or not exists:
        return RunDecision(RunVerb.NOTHING)
    if not enabled:
        return RunDecision(RunVerb.SKIP, f"run request {requested!r} not started: the policy "
                                         f"is disabled (spec.enabled: false)")
    return RunDecision(RunVerb.START)


def previous_history(status: Mapping[str, Any]) -> list[Execution]:
    """Executions the status knows, newest first (lastExecution included)."""
    known = {e.id: e for e in (Execution.from_status(item)
                               for item in status.get("executions") or [])}
    last = status.get("lastExecution")
    if last and "id" in last:
        known.setdefault(int(last["id"]), Execution.from_status(last))
    return sorted(known.values(), key=lambda e: e.id, reverse=True)


def merge_history(previous: Sequence[Execution], observed: Sequence[Execution],
                  gone: Collection[int]) -> list[Execution]:
    """The server's view where it has one, the status's memory of older (finished,
    so immutable) executions otherwise; newest first."""
    merged = {e.id: e for e in previous if e.id not in gone}
    merged.update({e.id: e for e in observed})
    return sorted(merged.values(), key=lambda e: e.id, reverse=True)


def newly_finished(previous: Sequence[Execution], observed: Sequence[Execution],
                   started: Collection[int] = ()) -> list[Execution]:
    """Executions that settled (finished, or every task ended) since the last look,
    oldest first; each is news once, not again when the server closes it late. On the
    first look (nothing known yet) history is not news, except an execution this
    reconcile `started` that is over already (a server that runs it at once, as Eden's
    can)."""
    before = {e.id: e for e in previous}
    newest_known = max(before, default=None)
    return sorted((e for e in observed if e.settled and (
        (e.id in before and not before[e.id].settled) or
        (e.id not in before and e.id in started) or
        (e.id not in before and newest_known is not None and e.id > newest_known))),
        key=lambda e: e.id)


def needs_failed_tasks(history: Sequence[Execution], previous: Mapping[str, Any]) -> bool:
    """The newest execution failed and the status does not list its failed tasks yet
    (they are read once: a finished execution never changes)."""
    if not history or history[0].outcome != FAILED:
        return False
    before = previous.get("lastExecution") or {}
    return not (before.get("id") == history[0].id and before.get("failedTasks"))


def not_closed_note(execution: Execution) -> str:
    return (f"all {execution.total} tasks of execution {execution.id} have ended, but "
            f"Harbor has not closed the execution (it still says InProgress)")


def finished_message(execution: Execution) -> str:
    text = (f"execution {execution.id} ({execution.trigger or 'manual'}) {execution.outcome}: "
            f"{execution.succeeded} of {execution.total} tasks succeeded")
    if execution.failed:
        text += f", {execution.failed} failed"
    if execution.stopped:
        text += f", {execution.stopped} stopped"
    if execution.tasks_finished:
        text += f"; {not_closed_note(execution)}"
    return text + (f" ({execution.status_text})" if execution.status_text else "")


def next_run_time(*, trigger: Mapping[str, Any], enabled: bool, now: datetime) -> str | None:
    """When a scheduled, enabled policy runs next (UTC, as Harbor's scheduler)."""
    if trigger.get("type") != "scheduled" or not enabled or not trigger.get("schedule"):
        return None
    when = cron.next_run(cron.parse(str(trigger["schedule"])), now)
    return when.isoformat().replace("+00:00", "Z")


def _last_execution(last: Execution | None, failed_tasks: Sequence[FailedTask] | None,
                    previous: Mapping[str, Any]) -> dict[str, Any] | None:
    if last is None:
        return None
    item = last.as_status()
    if last.outcome == FAILED:
        before = previous.get("lastExecution") or {}
        if failed_tasks is not None:
            item["failedTasks"] = [t.as_status() for t in failed_tasks]
        elif before.get("id") == last.id and before.get("failedTasks"):
            item["failedTasks"] = before["failedTasks"]
    return item


def policy_status(*, previous: Mapping[str, Any] | None, generation: int | None,
                  seen: PolicyObservation | None, history: Sequence[Execution],
                  history_limit: int, error: BackendError | None, next_run: str | None,
                  failed_tasks: Sequence[FailedTask] | None, fields: Mapping[str, Any],
                  now: str) -> dict[str, Any]:
    """The full `.status` after one reconcile. `history` is newest first; `fields`
    carries what the handler decided (lastRunRequest)."""
    previous = previous or {}
    last = history[0] if history else None
    if error is not None:
        conditions = error_conditions(error)
    elif seen is None or not seen.exists:
        conditions = [Condition(READY, False, "Creating", "the policy is not on the server yet"),
                      Condition(SYNCED, True, "ReconcileSuccess"),
                      Condition(RECONCILING, True, "Creating"), Condition(STALLED, False, "Idle")]
    else:
        summary = f"policy {seen.external_id} in sync; " + (
            "no execution yet" if last is None else
            f"last execution {last.id} {last.outcome} ({not_closed_note(last)})"
            if last.tasks_finished else f"last execution {last.id} {last.status}")
        conditions = healthy_conditions("PolicyInSync", summary)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(previous.get("conditions"), conditions, generation, now),
        "lastError": ({"code": error.code, "message": error.message} if error else None),
        "nextRunTime": next_run,
        **fields,
    }
    if error is not None:
        before = previous.get("lastError") or {}
        if before.get("message") == error.message:
            status["lastError"]["time"] = before.get("time")
        else:
            status["lastError"]["time"] = now
    if seen is not None and seen.exists:
        status["externalName"] = seen.external_id
        status["registries"] = seen.registries
    if last is not None or previous.get("lastExecution"):
        status["lastExecution"] = _last_execution(last, failed_tasks, previous)
        status["executions"] = [e.as_status() for e in history[:history_limit]]
    return status
