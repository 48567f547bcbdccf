"""The Argo CD health check (docs/argocd-health.lua), run in a real Lua interpreter
over statuses the operator's own status code produces."""

from __future__ import annotations

from typing import Any

import pytest

from argocd_lua import health
from replication_operator.backends.base import Observation
from replication_operator.errors import SpecError, TransientBackendError
from replication_operator.reconcile.replication import compute_status


def resource(status: dict[str, Any] | None, generation: int = 3) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, **({"status": status} if status else {})}


def status_of(seen: Observation | None = None, error: Exception | None = None,
              suspended: bool = False) -> dict[str, Any]:
    return compute_status(previous=None, generation=3, seen=seen, error=error,  # type: ignore[arg-type]
                          suspended=suspended, external_name="x", server="s", now="now")


@pytest.mark.parametrize("status, expected", [
    (None, "Progressing"),
    (status_of(Observation(exists=True, phase="Running", reason="Running")), "Healthy"),
    (status_of(Observation(exists=True, phase="Completed", reason="Completed")), "Healthy"),
    (status_of(Observation(exists=True, phase="Pending", reason="Initializing")),
     "Progressing"),
    (status_of(error=TransientBackendError("down")), "Progressing"),
    (status_of(error=SpecError("spec.filter.entries is a ReductStore filter")), "Degraded"),
    (status_of(Observation(exists=True, phase="Failed", reason="DuplicateReplication",
                           message="duplicate")), "Degraded"),
    (status_of(Observation.absent(), suspended=True), "Suspended"),
], ids=["no-status", "running", "completed", "pending", "transient", "permanent", "failed",
        "suspended"])
def test_health(status: dict[str, Any] | None, expected: str) -> None:
    assert health(resource(status)) == expected


def test_an_old_generation_is_progressing() -> None:
    running = status_of(Observation(exists=True, phase="Running", reason="Running"))
    assert health(resource(running, generation=4)) == "Progressing"
