"""Conditions and status documents, following the kstatus conventions.

- `Ready` (normal-true): the resource does what it declares.
- `Reconciling` and `Stalled` (abnormal-true): work in progress / gave up until the
  spec or the server changes. They are kept present with status False otherwise.
- `Synced` (Crossplane): the last attempt to apply the spec to the server worked.
- `observedGeneration` says which spec generation the status describes.

Timestamps change only on a real transition, so recomputing an unchanged status gives
an identical document and no API write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

READY, SYNCED, RECONCILING, STALLED = "Ready", "Synced", "Reconciling", "Stalled"


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


def merge_conditions(previous: Iterable[Mapping[str, Any]] | None, updates: Iterable[Condition],
                     generation: int | None, now: str) -> list[dict[str, Any]]:
    """New condition list; lastTransitionTime kept where the status did not flip."""
    old = {c.get("type"): c for c in previous or []}
    merged: list[dict[str, Any]] = []
    for cond in updates:
        status = "True" if cond.status else "False"
        before = old.get(cond.type)
        keep_time = before is not None and before.get("status") == status
        item: dict[str, Any] = {
            "type": cond.type,
            "status": status,
            "reason": cond.reason or ("Ok" if cond.status else "NotReady"),
            "message": cond.message[:1024],
            "lastTransitionTime": before.get("lastTransitionTime") if keep_time and before
            else now,
        }
        if generation is not None:
            item["observedGeneration"] = generation
        merged.append(item)
    known = {c.type for c in updates}
    merged.extend(dict(c) for t, c in old.items() if t not in known)
    return merged


def changed_fields(current: Mapping[str, Any] | None, desired: Mapping[str, Any]
                   ) -> dict[str, Any]:
    """Top-level status fields whose value differs (None = remove the field)."""
    current = current or {}
    return {k: v for k, v in desired.items() if current.get(k) != v}


class StatusMemory:
    """The `.status` this process last wrote for each object (by uid).

    A change handler and a resync timer both reconcile an object, one after the other;
    the second may hold a body read before the first one's status write (the watch event
    that refreshes it comes later). Deciding on that stale body repeats what was just
    done: a second rotation of a Token, a second run of a policy. The operator is the
    only writer of `.status`, so the status it wrote itself is the newest there is:
    decisions read it. Writes still compare with the body, so a write that failed (or
    has not shown yet) is simply sent again. Once a body shows what was written, the
    copy is dropped: the body is as new, and a settled object keeps one status, not two.
    """

    def __init__(self) -> None:
        self._last: dict[str, dict[str, Any]] = {}

    def current(self, uid: str, body_status: Mapping[str, Any] | None) -> dict[str, Any]:
        """The status to decide on: what this process last wrote, else the body's."""
        last = self._last.get(uid)
        if last is None:
            return dict(body_status or {})
        if body_status is not None and last == dict(body_status):
            del self._last[uid]
        return dict(last)

    def __len__(self) -> int:
        return len(self._last)

    def write(self, uid: str, body_status: Mapping[str, Any] | None,
              status: Mapping[str, Any]) -> dict[str, Any]:
        """Remember `status` and return the top-level fields to patch (those that
        differ from the body's; None removes a field)."""
        merged = {**(body_status or {}), **status}
        self._last[uid] = {k: v for k, v in merged.items() if v is not None}
        return changed_fields(body_status, status)

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)


def condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def error_conditions(error: Any, *, synced: bool = True) -> list[Condition]:
    """Conditions for a failed reconcile: permanent → Stalled; transient → Reconciling
    with reason BackendUnavailable (kstatus: still trying)."""
    permanent = bool(error.permanent)
    reason = error.code if permanent else "BackendUnavailable"
    conditions = [
        Condition(READY, False, reason, error.message),
        Condition(RECONCILING, not permanent, "Idle" if permanent else reason,
                  "" if permanent else error.message),
        Condition(STALLED, permanent, reason if permanent else "Idle",
                  error.message if permanent else ""),
    ]
    if synced:
        conditions.insert(1, Condition(SYNCED, False, "ReconcileError", error.message))
    return conditions


def healthy_conditions(reason: str, message: str = "", *, synced: bool = True
                       ) -> list[Condition]:
    conditions = [Condition(READY, True, reason, message),
                  Condition(RECONCILING, False, "Idle"), Condition(STALLED, False, "Idle")]
    if synced:
        conditions.insert(1, Condition(SYNCED, True, "ReconcileSuccess"))
    return conditions
