"""Operator-wide settings, from the command line (and environment)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from replication_operator import FINALIZER


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: list[str] = field(default_factory=list)  # empty = all namespaces
    resync_interval: float = 30.0  # seconds between drift checks of every resource
    probe_interval: float = 60.0  # default for DatabaseServers without their own
    cleanup_grace: float = 300.0  # deletion blocked by a down server is reported after this
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    liveness_port: int = 8080
    metrics_port: int = 9090
    standalone: bool = True
    annotation_prefix: str = "replication.dbops.dev"
    labels: dict[str, Any] = field(default_factory=dict)  # kopf filters of --selector
    selector: str = ""  # --selector as given

    def selection(self) -> dict[str, Any]:
        """Keyword arguments for every kopf handler decorator: this shard's resources."""
        return {"labels": self.labels} if self.labels else {}

    @property
    def finalizer(self) -> str:
        """The finalizer this operator puts on its objects. Every shard (`--selector`)
        has its own: kopf takes its finalizer off any object of a kind it watches and
        has no handler for, so with one name the shards would remove each other's."""
        if not self.selector:
            return FINALIZER
        digest = hashlib.sha256(self.selector.encode()).hexdigest()[:8]
        return f"{FINALIZER}-{digest}"

    def backoff(self, retry: int) -> float:
        """Capped exponential backoff for the n-th retry of a transient failure."""
        return float(min(self.backoff_cap, self.backoff_base * 2 ** max(0, retry)))


RUN_REQUESTED = "replication.dbops.dev/run-requested"
ROTATE_REQUESTED = "replication.dbops.dev/rotate-requested"
SKIP_CLEANUP = "replication.dbops.dev/skip-cleanup"
# on a Token's Secret: which credential (slot) it holds, and its generation
CREDENTIAL = "replication.dbops.dev/credential"
CREDENTIAL_GENERATION = "replication.dbops.dev/credential-generation"
