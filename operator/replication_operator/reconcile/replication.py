"""Decide what to do about one Replication, and what its status says.

Pure functions only: the same for every backend, testable without a cluster.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from replication_operator.backends.base import (
    COMPLETED,
    ERROR,
    FAILED,
    PENDING,
    RUNNING,
    SUSPENDED,
    Observation,
)
from replication_operator.errors import BackendError
from replication_operator.status import (
    READY,
    RECONCILING,
    STALLED,
    SYNCED,
    Condition,
    error_conditions,
    merge_conditions,
)


class Observed(Protocol):
    """What `plan` needs to know of a thing on a server (a job, a policy)."""

    @property
    def exists(self) -> bool: ...

    @property
    def owner(self) -> str | None: ...

    @property
    def provisioned(self) -> bool: ...

    @property
    def up_to_date(self) -> bool: ...

    @property
    def differences(self) -> list[str]: ...


class Verb(enum.Enum):
    NOTHING = "nothing"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class Plan:
    verb: Verb
    reason: str = ""  # Event reason: Created, Updated, Adopted, DriftCorrected, ...
    message: str = ""


class OwnershipConflict(BackendError):
    """The object on the server belongs to another resource."""

    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__(message, code="OwnedByAnother")


def job_was_seen(previous_status: Mapping[str, Any]) -> bool:
    """Status says the job existed on the server (so finding it gone is drift).

    `externalName` is written only once the job was on the server; a job that had not
    started yet (Pending) counts too. Suspended is left out: suspending removes the job
    on servers that cannot pause one."""
    return bool(previous_status.get("externalName")) and \
        previous_status.get("phase") not in (None, SUSPENDED)


def plan(*, key: str, external_name: str, seen: Observed, suspend: bool,
         suspend_deletes: bool, adopted: bool, spec_changed: bool, created_before: bool,
         credentials_rotated: bool = False, failed_since_token_changed: bool = False,
         noun: str = "job", owner_kind: str = "Replication") -> Plan:
    """The one action that brings the server in line with the spec.

    `spec_changed`: the spec generation moved since the last reconcile, so a mismatch
    is the user's update, not drift. `created_before`: status says the job existed,
    so finding it gone means someone removed it. `credentials_rotated`: a Token the
    job uses has a new credential; servers that never return credentials (ReductStore's
    dst_token) cannot show that as a difference, so it is a reason to update of its own.
    `failed_since_token_changed`: the job ended failed and a Token it uses has changed
    since (say, now grants the database it was refused): the server will not try again
    by itself, so the job is written again, once per change of the Token.
    """
    if seen.exists and seen.owner not in (None, key) and not adopted:
        raise OwnershipConflict(
            f"{noun} {external_name!r} on the server belongs to {owner_kind} {seen.owner}; "
            f"set spec.externalName to adopt it deliberately")
    if seen.provisioned:
        return Plan(Verb.NOTHING)
    if suspend and suspend_deletes:
        if seen.exists:
            return Plan(Verb.DELETE, "Suspended", f"removed {noun} {external_name} (suspended)")
        return Plan(Verb.NOTHING)
    if not seen.exists:
        if created_before and not spec_changed:
            return Plan(Verb.CREATE, "DriftCorrected",
                        f"{noun} {external_name} was removed from the server; recreated it")
        return Plan(Verb.CREATE, "Created", f"created {noun} {external_name}")
    if adopted and seen.owner != key and spec_changed:
        # Adoption writes only what differs: a job that already matches the spec is
        # taken over as it is (bringing a fleet under GitOps must not rewrite it). The
        # server keeps no owner marker then, so this is decided again after every spec
        # change, never at a quiet resync.
        if seen.up_to_date and not credentials_rotated:
            return Plan(Verb.NOTHING, "Adopted", f"adopted existing {noun} {external_name} "
                                                 f"as it is (it matches the spec)")
        fields = ", ".join(seen.differences) or "settings"
        return Plan(Verb.UPDATE, "Adopted", f"adopted existing {noun} {external_name} "
                                            f"({fields})")
    fields = ", ".join(seen.differences) or "settings"
    if not seen.up_to_date and spec_changed:
        return Plan(Verb.UPDATE, "Updated", f"updated {noun} {external_name} ({fields})")
    if credentials_rotated:  # where the server shows credentials, they differ too
        return Plan(Verb.UPDATE, "CredentialsRotated",
                    f"{noun} {external_name} now uses the rotated credential")
    if failed_since_token_changed:
        return Plan(Verb.UPDATE, "TokenChanged",
                    f"{noun} {external_name} had failed and a Token it uses changed since: "
                    f"started it again")
    if not seen.up_to_date:
        return Plan(Verb.UPDATE, "DriftCorrected",
                    f"{noun} {external_name} was changed on the server ({fields}); put it back")
    return Plan(Verb.NOTHING)


def _progress_conditions(phase: str, reason: str, message: str) -> list[Condition]:
    ready = phase in (RUNNING, COMPLETED, SUSPENDED)
    stalled = phase == FAILED
    reconciling = not ready and not stalled
    return [
        Condition(READY, ready, reason, message),
        Condition(SYNCED, True, "ReconcileSuccess", ""),
        Condition(RECONCILING, reconciling, reason if reconciling else "Idle",
                  message if reconciling else ""),
        Condition(STALLED, stalled, reason if stalled else "Idle", message if stalled else ""),
    ]


def compute_status(*, previous: Mapping[str, Any] | None, generation: int | None,
                   seen: Observation | None, error: BackendError | None,
                   suspended: bool, external_name: str, server: str, now: str
                   ) -> dict[str, Any]:
    """The full `.status` for the outcome of one reconcile."""
    previous = previous or {}
    if error is not None:
        phase = ERROR
        conditions = error_conditions(error)
        last_error = {"code": error.code, "message": error.message}
    elif seen is None or (suspended and not seen.exists):
        phase = SUSPENDED if suspended else PENDING
        conditions = _progress_conditions(phase, "Suspended" if suspended else "Pending",
                                          "suspended: no job on the server" if suspended
                                          else "")
        last_error = None
    else:
        phase = SUSPENDED if suspended and seen.mode in ("paused", "disabled") else seen.phase
        message = seen.message
        if seen.provisioned:
            message = ("provisioned on the server (read-only): reported, never written"
                       + (f"; differs from spec in {', '.join(seen.differences)}"
                          if seen.differences else ""))
        conditions = _progress_conditions(phase, seen.reason or phase, message)
        last_error = ({"code": seen.reason, "message": seen.message}
                      if phase in (ERROR, FAILED) and seen.message else None)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "server": server,
        "conditions": merge_conditions(previous.get("conditions"), conditions, generation, now),
    }
    if (seen is not None and seen.exists) or previous.get("externalName"):
        # only once the job has been on the server: a first reconcile that failed
        # before creating it must not make its later creation look like drift
        status["externalName"] = external_name
    if last_error is not None:
        old = previous.get("lastError") or {}
        same = old.get("code") == last_error["code"] and old.get("message") == \
            last_error["message"]
        status["lastError"] = {**last_error, "time": old.get("time") if same else now}
    else:
        status["lastError"] = None
    if seen is not None and seen.exists:
        status["progress"] = seen.progress.as_status() or previous.get("progress")
        for key, value in (("startedAt", seen.started_at), ("completedAt", seen.completed_at),
                           ("lastSyncTime", seen.last_sync), ("mode", seen.mode)):
            if value is not None:
                status[key] = value
        if seen.diagnostics:
            status["diagnostics"] = seen.diagnostics
    return status
