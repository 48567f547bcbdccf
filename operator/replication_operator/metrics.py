"""Prometheus metrics (kopf has none of its own: served from a startup handler)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

BACKEND_REQUESTS = Counter(
    "replication_operator_backend_requests_total",
    "Requests sent to data servers, by server, method and HTTP status (or 'error').",
    ["server", "method", "code"], registry=REGISTRY)
BACKEND_LATENCY = Histogram(
    "replication_operator_backend_request_seconds", "Latency of requests to data servers.",
    ["server"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RECONCILES = Counter(
    "replication_operator_reconciles_total", "Reconciles, by kind and result.",
    ["kind", "result"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram(
    "replication_operator_reconcile_seconds", "Duration of one reconcile.", ["kind"],
    registry=REGISTRY)
RESOURCES = Gauge(
    "replication_operator_resources", "Resources by kind, phase and readiness.",
    ["kind", "phase", "ready"], registry=REGISTRY)
TOKEN_EXPIRY = Gauge(
    "replication_operator_token_expiry_timestamp_seconds",
    "When a Token's credential expires (Unix time; absent for tokens that never expire).",
    ["namespace", "name"], registry=REGISTRY)


def observe_request(server: str, method: str, code: str, seconds: float) -> None:
    BACKEND_REQUESTS.labels(server, method, code).inc()
    BACKEND_LATENCY.labels(server).observe(seconds)


class ResourceTally:
    """Current phase/readiness per object, exported as counts per (kind, phase, ready).

    Counts move by one per change: recounting every object at each reconcile made a
    resync of N objects cost N² steps (5,000 Replications: 25 million per resync)."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], tuple[str, str]] = {}
        self._counts: dict[tuple[str, str, str], int] = {}

    def set(self, kind: str, key: str, phase: str, ready: bool) -> None:
        state = (phase, "true" if ready else "false")
        before = self._states.get((kind, key))
        if before == state:
            return
        self._states[(kind, key)] = state
        if before is not None:
            self._move(kind, before, -1)
        self._move(kind, state, 1)

    def drop(self, kind: str, key: str) -> None:
        before = self._states.pop((kind, key), None)
        if before is not None:
            self._move(kind, before, -1)

    def _move(self, kind: str, state: tuple[str, str], step: int) -> None:
        labels = (kind, *state)
        count = self._counts.get(labels, 0) + step
        if count > 0:
            self._counts[labels] = count
            RESOURCES.labels(*labels).set(count)
        else:
            self._counts.pop(labels, None)
            RESOURCES.remove(*labels)


class ReplicationProgress(Collector):
    """Each Replication's progress figures, turned into samples when scraped.

    A Gauge child per (namespace, name, field) kept a lock and a value object each,
    ~1.5 KiB per Replication, and stayed after the Replication was deleted; here a
    Replication costs one small dict, and `drop` removes its series."""

    NAME = "replication_operator_replication_progress"
    HELP = "Replication progress as reported by the server (docsWritten, changesPending, ...)."

    def __init__(self) -> None:
        self._figures: dict[tuple[str, str], dict[str, float]] = {}

    def set(self, namespace: str, name: str, progress: Mapping[str, Any] | None) -> None:
        figures = {field: float(value) for field, value in (progress or {}).items()
                   if isinstance(value, int | float) and not isinstance(value, bool)}
        if figures:
            self._figures[(namespace, name)] = figures
        else:
            self._figures.pop((namespace, name), None)

    def drop(self, namespace: str, name: str) -> None:
        self._figures.pop((namespace, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["namespace", "name", "field"])
        for (namespace, name), figures in list(self._figures.items()):
            for field, value in figures.items():
                family.add_metric([namespace, name, field], value)
        yield family


PROGRESS = ReplicationProgress()
REGISTRY.register(PROGRESS)


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0", registry=REGISTRY)
