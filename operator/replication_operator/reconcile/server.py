"""Status of a DatabaseServer from the outcome of a probe (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replication_operator.backends.base import ServerInfo
from replication_operator.errors import BackendError
from replication_operator.status import READY, RECONCILING, STALLED, Condition, merge_conditions


def server_status(*, previous: Mapping[str, Any] | None, generation: int | None, url: str,
                  info: ServerInfo | None, error: BackendError | None, now: str
                  ) -> dict[str, Any]:
    previous = previous or {}
    if error is None and info is not None:
        label = f"{info.flavour} {info.version}".strip()
        conditions = [Condition(READY, True, "Connected", label),
                      Condition(RECONCILING, False, "Idle"), Condition(STALLED, False, "Idle")]
        extra: dict[str, Any] = {"version": info.version, "flavour": info.flavour}
    else:
        assert error is not None
        reason = error.code if error.permanent else "BackendUnavailable"
        conditions = [Condition(READY, False, reason, error.message),
                      Condition(RECONCILING, not error.permanent, reason if not error.permanent
                                else "Idle", "" if error.permanent else error.message),
                      Condition(STALLED, error.permanent, reason if error.permanent else "Idle",
                                error.message if error.permanent else "")]
        extra = {}
    return {"observedGeneration": generation, "url": url,
            "conditions": merge_conditions(previous.get("conditions"), conditions, generation,
                                           now),
            **extra}
