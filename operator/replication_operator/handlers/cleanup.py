"""What deletion handlers share: a server that stays down must not wedge deletion
silently. After the grace period the resource says so, and names the annotation that
lets it go without cleanup."""

from __future__ import annotations

from typing import Any

from replication_operator.config import SKIP_CLEANUP
from replication_operator.status import now_iso


def report_blocked(patch: Any, *, waited: float, grace: float, what: str, reason: str
                   ) -> None:
    """Set Ready=False CleanupBlocked once `waited` passes `grace` (kopf `patch`)."""
    if waited < grace:
        return
    patch.status["conditions"] = [{
        "type": "Ready", "status": "False", "reason": "CleanupBlocked",
        "message": f"cannot remove {what} for {int(waited)}s: {reason}; annotate "
                   f"{SKIP_CLEANUP}=true to delete without cleanup",
        "lastTransitionTime": now_iso()}]
