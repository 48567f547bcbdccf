"""Injected faults and latency, and the log of every request a simulator answers.

The log keeps method, path, query, status, time and user only: never a body (bodies
carry passwords)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

FAULT_STATUSES = (500, 502, 503, 504, 429)


@dataclass
class Fault:
    """Answer the next `count` matching requests with `status` (in the server's error body)."""

    status: int
    count: int = 1
    retry_after: int | None = None
    path_prefix: str | None = None  # e.g. "/api/v2.0/replication", "/eden/sync/log"
    method: str | None = None

    def applies(self, method: str, path: str) -> bool:
        return (self.count > 0 and (self.method is None or self.method.upper() == method)
                and (self.path_prefix is None or path.startswith(self.path_prefix)))


@dataclass
class Latency:
    """Delay matching requests by `seconds`; `count` None means until cleared."""

    seconds: float
    count: int | None = None
    path_prefix: str | None = None
    method: str | None = None

    def applies(self, method: str, path: str) -> bool:
        return ((self.count is None or self.count > 0)
                and (self.method is None or self.method.upper() == method)
                and (self.path_prefix is None or path.startswith(self.path_prefix)))


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    time: str
    user: str
    session: bool = False  # the request carried the server's session cookie


class Faults:
    """Thread-safe plan of faults and latencies; each match consumes one count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._latencies: list[Latency] = []

    def add_fault(self, status: int, count: int = 1, retry_after: int | None = None,
                  path_prefix: str | None = None, method: str | None = None) -> Fault:
        if status not in FAULT_STATUSES:
            raise ValueError(f"fault status must be one of {FAULT_STATUSES}")
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(status, count, retry_after, path_prefix, method)
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_latency(self, seconds: float, count: int | None = None,
                    path_prefix: str | None = None, method: str | None = None) -> Latency:
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        latency = Latency(seconds, count, path_prefix, method)
        with self._lock:
            self._latencies.append(latency)
        return latency

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._latencies.clear()

    def take(self, method: str, path: str) -> tuple[float, Fault | None]:
        """The delay and the fault (if any) for this request, consuming their counts."""
        with self._lock:
            delay = 0.0
            for latency in self._latencies:
                if latency.applies(method, path):
                    delay += latency.seconds
                    if latency.count is not None:
                        latency.count -= 1
            self._latencies = [lat for lat in self._latencies
                               if lat.count is None or lat.count > 0]
            chosen = None
            for fault in self._faults:
                if fault.applies(method, path):
                    fault.count -= 1
                    chosen = Fault(fault.status, 1, fault.retry_after, fault.path_prefix,
                                   fault.method)
                    break
            self._faults = [f for f in self._faults if f.count > 0]
            return delay, chosen

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"faults": [asdict(f) for f in self._faults],
                    "latencies": [asdict(lat) for lat in self._latencies]}


class RequestLog:
    """Every request to the API: method, path (no query), query string, status, user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def list(self, method: str | None = None, path_prefix: str | None = None
             ) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._records
                    if (method is None or r.method == method.upper())
                    and (path_prefix is None or r.path.startswith(path_prefix))]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def count(self, method: str, path: str) -> int:
        """Requests with exactly this method and path (query ignored)."""
        return sum(1 for r in self.list(method) if r.path == path)
