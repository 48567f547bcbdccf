"""Lease-based leader election, against an in-memory coordination API with the API
server's optimistic concurrency (resourceVersion) and a fake clock."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import urllib3
from kubernetes.client import V1Lease, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from replication_operator.leader import ElectionSettings, LeaderElection


class LeaseStore:
    """One Lease, kept as the API server keeps it: a replace with a stale
    resourceVersion is a 409."""

    def __init__(self) -> None:
        self.lease: V1Lease | None = None
        self.version = 0
        self.down = False
        self.timeouts: list[Any] = []

    def _check(self, kwargs: dict[str, Any]) -> None:
        self.timeouts.append(kwargs.get("_request_timeout"))
        if self.down:
            raise urllib3.exceptions.MaxRetryError(None, "/leases", "connection refused")

    def read_namespaced_lease(self, name: str, namespace: str, **kw: Any) -> V1Lease:
        self._check(kw)
        if self.lease is None:
            raise ApiException(status=404)
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: V1Lease, **kw: Any) -> V1Lease:
        self._check(kw)
        if self.lease is not None:
            raise ApiException(status=409)
        return self._store(body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: V1Lease,
                                 **kw: Any) -> V1Lease:
        self._check(kw)
        assert self.lease is not None
        if body.metadata.resource_version != self.lease.metadata.resource_version:
            raise ApiException(status=409)
        return self._store(body)

    def _store(self, body: V1Lease) -> V1Lease:
        self.version += 1
        body = copy.deepcopy(body)
        body.metadata = body.metadata or V1ObjectMeta()
        body.metadata.resource_version = str(self.version)
        self.lease = body
        return copy.deepcopy(body)

    @property
    def holder(self) -> str:
        return (self.lease.spec.holder_identity or "") if self.lease else ""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replica(store: LeaseStore, clock: Clock, identity: str) -> LeaderElection:
    settings = ElectionSettings(identity=identity, lease_duration=15, renew_deadline=10,
                                retry_period=2)
    return LeaderElection(settings, api=store, clock=clock)  # type: ignore[arg-type]


def test_one_holder_the_other_waits_a_full_lease_after_the_last_renewal() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = replica(store, clock, "a"), replica(store, clock, "b")
    assert a.try_acquire_or_renew() and store.holder == "a"
    assert not b.try_acquire_or_renew()
    clock.now += 10
    assert a.try_acquire_or_renew()  # renewed: b's wait starts again
    clock.now += 14
    assert not b.try_acquire_or_renew()
    clock.now += 16  # a stopped renewing 30 s ago; b has seen no change for 16 s
    assert b.try_acquire_or_renew() and store.holder == "b"
    assert store.lease is not None and store.lease.spec.lease_transitions == 1
    assert not a.try_acquire_or_renew(), "the old holder does not take it back"


def test_a_released_lease_is_taken_at_once() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = replica(store, clock, "a"), replica(store, clock, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    clock.now += 1.5
    assert b.try_acquire_or_renew() and store.holder == "b"
    a.release()  # not the holder: nothing changes
    assert store.holder == "b"


def test_an_unreachable_api_server_is_a_failed_attempt_not_a_crash() -> None:
    """A transport error must not end the renewal loop (the leader would go on working
    with a Lease that expires: two leaders)."""
    store, clock = LeaseStore(), Clock()
    a = replica(store, clock, "a")
    assert a.try_acquire_or_renew()
    store.down = True
    assert not a.try_acquire_or_renew()
    a.release()  # logs, does not raise
    store.down = False
    assert a.try_acquire_or_renew()


def test_every_request_is_bounded_in_time() -> None:
    store, clock = LeaseStore(), Clock()
    a = replica(store, clock, "a")
    a.try_acquire_or_renew()
    a.try_acquire_or_renew()
    a.release()
    assert store.timeouts and all(t is not None and t <= 10 for t in store.timeouts)


def test_the_timings_must_leave_room_for_each_other() -> None:
    with pytest.raises(ValueError):
        ElectionSettings(lease_duration=10, renew_deadline=10, retry_period=2)
