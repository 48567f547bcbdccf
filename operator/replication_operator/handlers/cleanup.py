"""Deletion, the same for every kind: `deletionPolicy: Orphan` leaves the thing on the
server, the annotation `skip-cleanup` lets the resource go without cleanup, otherwise
the thing is removed. A server that stays down must not wedge deletion silently: after
`--cleanup-grace` the resource says so and names the annotation that lets it go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from replication_operator import FINALIZER, events
from replication_operator.config import SKIP_CLEANUP, OperatorConfig
from replication_operator.errors import BackendError
from replication_operator.status import now_iso


def timer_may_act(body: kopf.Body, finalizer: str = FINALIZER) -> bool:
    """Whether a resync timer may reconcile: not once deletion began, and not before
    kopf's finalizer is on the object. kopf starts timers as soon as it sees an object;
    a reconcile that creates a job before the finalizer is there leaves that job behind
    if the object is deleted meanwhile (nothing runs the deletion handler). The change
    handlers run only once the finalizer is in place and do the first reconcile."""
    meta = body.metadata
    return not meta.get("deletionTimestamp") and finalizer in (meta.get("finalizers") or [])


def report_blocked(patch: Any, *, waited: float, grace: float, what: str, why: str
                   ) -> None:
    """Set Ready=False CleanupBlocked once `waited` passes `grace` (kopf `patch`);
    `why` is the error that keeps the cleanup from finishing (a message)."""
    if waited < grace:
        return
    patch.status["conditions"] = [{
        "type": "Ready", "status": "False", "reason": "CleanupBlocked",
        "message": f"cannot remove {what} for {int(waited)}s: {why}; annotate "
                   f"{SKIP_CLEANUP}=true to delete without cleanup",
        "lastTransitionTime": now_iso()}]


async def clean_up(body: kopf.Body, patch: kopf.Patch, *, retry: int, runtime: Any,
                   config: OperatorConfig, what: str,
                   remove: Callable[[], Awaitable[str]]) -> None:
    """Orphan, skip, or `remove()` what the resource made (`what`, e.g. "job ns.x"),
    with an Event for each; `remove` returns extra words for the Deleted Event."""
    if body.spec.get("deletionPolicy") == "Orphan":
        events.normal(body, reason="Orphaned", message=f"left {what} on the server")
        return
    if body.metadata.annotations.get(SKIP_CLEANUP) == "true":
        events.warning(body, reason="CleanupSkipped",
                       message=f"{SKIP_CLEANUP}=true: {what} was not removed from the server")
        return
    try:
        detail = await remove()
    except BackendError as exc:
        report_blocked(patch, waited=runtime.total_seconds(), grace=config.cleanup_grace,
                       what=what, why=exc.message)
        raise kopf.TemporaryError(exc.message, delay=config.backoff(retry)) from None
    events.normal(body, reason="Deleted", message=f"removed {what} from the server{detail}")
