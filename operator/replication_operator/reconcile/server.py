"""Status of a DatabaseServer from the outcome of a probe (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replication_operator.backends.base import ServerInfo
from replication_operator.errors import BackendError
from replication_operator.status import error_conditions, healthy_conditions, merge_conditions


def server_status(*, previous: Mapping[str, Any] | None, generation: int | None, url: str,
                  info: ServerInfo | None, error: BackendError | None, now: str
                  ) -> dict[str, Any]:
    previous = previous or {}
    if error is None and info is not None:
        label = f"{info.flavour} {info.version}".strip()
        conditions = healthy_conditions("Connected", label, synced=False)
        extra: dict[str, Any] = {"version": info.version, "flavour": info.flavour}
    else:
        assert error is not None
        conditions = error_conditions(error, synced=False)
        extra = {}
    return {"observedGeneration": generation, "url": url,
            "conditions": merge_conditions(previous.get("conditions"), conditions, generation,
                                           now),
            **extra}
