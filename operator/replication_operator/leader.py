"""Leader election with a coordination.k8s.io/v1 Lease, as client-go does it.

Several replicas may run; the one holding the Lease runs the operator, the others wait.
Why a Lease and not kopf's peering: peering is not mutual exclusion (a replica works
until it notices a peer of higher priority, and equal priorities all work), while a
Lease is taken and renewed with optimistic concurrency (resourceVersion), so at most one
replica holds it, and `kubectl get lease` shows who.

The holder renews every `retry_period`; if it cannot renew for `renew_deadline` it
stops working (and exits, so Kubernetes restarts it as a standby) before the Lease can
expire for the others (`lease_duration` > `renew_deadline`). A standby takes the Lease
once it has seen no renewal for `lease_duration`, measured on its own clock from the
moment it last saw the Lease change (never from the holder's timestamps, so clock skew
between nodes does not matter). A holder that stops cleanly releases the Lease, so the
standby takes over at once.

The Kubernetes client is synchronous: everything here runs in its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ElectionSettings:
    name: str = "replication-operator"
    namespace: str = "default"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease "
                             "duration")


def _micro_time() -> datetime:
    return datetime.now(UTC)


class LeaderElection:
    def __init__(self, settings: ElectionSettings,
                 api: kubernetes.client.CoordinationV1Api | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.api = api or kubernetes.client.CoordinationV1Api()
        self.clock = clock
        self._seen: tuple[Any, ...] | None = None  # (holder, renewTime, resourceVersion)
        self._seen_at = 0.0
        self._last_renewal = 0.0

    # -- one attempt ------------------------------------------------------------------

    @property
    def _timeout(self) -> float:
        """Each Lease request is bounded: a hung call must not outlive the renew deadline."""
        return max(1.0, self.settings.renew_deadline / 2)

    def try_acquire_or_renew(self) -> bool:
        """One step of client-go's loop: True if this replica holds the Lease now. An API
        server that cannot be reached is a failed attempt, never the end of the loop."""
        try:
            return self._attempt()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("leader election: API server not reachable (%s)", type(exc).__name__)
            return False

    def _attempt(self) -> bool:
        s = self.settings
        try:
            lease = self.api.read_namespaced_lease(s.name, s.namespace,
                                                   _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("leader election: reading Lease %s/%s failed: HTTP %s",
                            s.namespace, s.name, exc.status)
                return False
            return self._create()
        spec = lease.spec or kubernetes.client.V1LeaseSpec()
        lease.spec = spec
        version = lease.metadata.resource_version if lease.metadata else None
        record = (spec.holder_identity, spec.renew_time, version)
        now = self.clock()
        if record != self._seen:
            self._seen, self._seen_at = record, now
        held_by_other = bool(spec.holder_identity) and spec.holder_identity != s.identity
        if held_by_other and now - self._seen_at < (spec.lease_duration_seconds
                                                    or s.lease_duration):
            return False
        transitions = (spec.lease_transitions or 0) + (1 if held_by_other else 0)
        if spec.holder_identity != s.identity:
            spec.acquire_time = _micro_time()
        spec.holder_identity = s.identity
        spec.renew_time = _micro_time()
        spec.lease_duration_seconds = int(s.lease_duration)
        spec.lease_transitions = transitions
        try:  # resourceVersion in the body: a concurrent change makes this a 409
            self.api.replace_namespaced_lease(s.name, s.namespace, lease,
                                              _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status != 409:
                log.warning("leader election: updating Lease failed: HTTP %s", exc.status)
            return False
        self._last_renewal = now
        return True

    def _create(self) -> bool:
        s = self.settings
        body = kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(name=s.name, namespace=s.namespace),
            spec=kubernetes.client.V1LeaseSpec(
                holder_identity=s.identity, acquire_time=_micro_time(),
                renew_time=_micro_time(), lease_duration_seconds=int(s.lease_duration),
                lease_transitions=0))
        try:
            self.api.create_namespaced_lease(s.namespace, body,
                                             _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status != 409:  # 409: someone else created it first
                log.warning("leader election: creating Lease failed: HTTP %s", exc.status)
            return False
        self._last_renewal = self.clock()
        return True

    def release(self) -> None:
        """Give the Lease up (clean shutdown): the standby takes over without waiting."""
        s = self.settings
        try:
            lease = self.api.read_namespaced_lease(s.name, s.namespace,
                                                   _request_timeout=self._timeout)
            if lease.spec is None or lease.spec.holder_identity != s.identity:
                return
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            self.api.replace_namespaced_lease(s.name, s.namespace, lease,
                                              _request_timeout=self._timeout)
        except ApiException as exc:
            log.warning("leader election: releasing Lease failed: HTTP %s", exc.status)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("leader election: releasing Lease failed (%s): the standby takes "
                        "over when it expires", type(exc).__name__)

    # -- loops ------------------------------------------------------------------------

    def wait_for_leadership(self, stop: threading.Event) -> bool:
        """Block until this replica holds the Lease (True) or `stop` is set (False)."""
        logged = False
        while not stop.is_set():
            if self.try_acquire_or_renew():
                log.info("leader election: %s holds Lease %s/%s", self.settings.identity,
                         self.settings.namespace, self.settings.name)
                return True
            if not logged:
                log.info("leader election: standing by (Lease %s/%s held by %s)",
                         self.settings.namespace, self.settings.name,
                         self._seen[0] if self._seen else "nobody yet")
                logged = True
            stop.wait(self.settings.retry_period)  # the retry period, not synchronisation
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in a thread until `stop`; call `on_lost` if renewing fails for
        `renew_deadline`."""
        def run() -> None:
            while not stop.wait(self.settings.retry_period):
                if self.try_acquire_or_renew():
                    continue
                if self.clock() - self._last_renewal >= self.settings.renew_deadline:
                    log.error("leader election: could not renew Lease %s/%s for %.0f s: "
                              "stopping", self.settings.namespace, self.settings.name,
                              self.settings.renew_deadline)
                    on_lost()
                    return

        thread = threading.Thread(target=run, name="lease-renewal", daemon=True)
        thread.start()
        return thread
