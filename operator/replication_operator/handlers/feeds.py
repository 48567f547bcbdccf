"""Change feeds: status that follows the server instead of the next resync.

One follower per CouchDB-protocol DatabaseServer that runs Replications (not one per
Replication) reads the server's `_replicator` change feed; each batch of changed jobs
is applied to the server's stored state by the backend (`follow_jobs`), and the
Replications owning those jobs are woken: the Pacer looks at them from that state at
once, without a request, and write status only if it changed.

The feed reconnects with capped backoff, from the last seq it saw (nothing is missed
across a reconnect); while it is broken the resync works as without a feed. The
DatabaseServer's `status.changeFeed` says whether the feed is live, written only when
that changes. Servers without a feed (ReductStore, Harbor, Eden) have no follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from replication_operator import kube
from replication_operator.context import OperatorContext
from replication_operator.errors import BackendError

log = logging.getLogger(__name__)

SERVERS = "databaseservers"
BACKOFF_CAP = 60.0
STABLE = 60.0  # a feed open this long before it ended starts the backoff again
LIVE = "following _replicator/_changes"
IDLE = "not followed: no Replication runs on this server"

Key = tuple[str, str]  # (namespace, DatabaseServer name)


class JobBatch(Protocol):
    jobs: frozenset[str]
    seq: str


Follow = Callable[[str], AsyncGenerator[JobBatch, None]]


def backoff(failures: int) -> float:
    """Seconds before reconnect attempt `failures` (1, 2, 4, ... capped)."""
    return float(min(BACKOFF_CAP, 2.0 ** max(0, failures - 1)))


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class JobFeeds:
    """The followers, and which Replication (uid) owns which job on which server."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self._owners: dict[Key, dict[str, str]] = {}  # server → job id → uid
        self._jobs: dict[str, tuple[Key, frozenset[str]]] = {}  # uid → server, jobs
        self._followers: dict[Key, asyncio.Task[None]] = {}
        self._reported: dict[Key, tuple[bool, str]] = {}
        self._closing = False

    # -- who owns what ----------------------------------------------------------

    def track(self, uid: str, namespace: str, server: str, backend: Any,
              jobs: Iterable[str]) -> None:
        """Record the jobs of a Replication on its job server; follow that server's feed
        while any Replication is tracked on it (only where the backend has one)."""
        key, names = (namespace, server), frozenset(j for j in jobs if j)
        if getattr(backend, "follow_jobs", None) is None:
            self.untrack(uid)
            return
        if self._jobs.get(uid) == (key, names):
            return
        self.untrack(uid, stop=False)
        self._jobs[uid] = (key, names)
        owners = self._owners.setdefault(key, {})
        for job in names:
            owners[job] = uid
        if key not in self._followers and not self._closing:
            task = asyncio.ensure_future(self._follow(key))
            self._followers[key] = task

            def ended(done: asyncio.Task[None]) -> None:
                if self._followers.get(key) is done:
                    del self._followers[key]

            task.add_done_callback(ended)

    def untrack(self, uid: str, *, stop: bool = True) -> None:
        found = self._jobs.pop(uid, None)
        if found is None:
            return
        key, names = found
        owners = self._owners.get(key, {})
        for job in names:
            if owners.get(job) == uid:
                del owners[job]
        if not owners and stop:
            self._owners.pop(key, None)  # the follower ends at its next look

    def live(self, namespace: str, server: str) -> bool:
        return self._reported.get((namespace, server), (False, ""))[0]

    async def aclose(self) -> None:
        self._closing = True
        tasks = list(self._followers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- following ----------------------------------------------------------------

    def _wake(self, key: Key, jobs: Iterable[str]) -> int:
        owners = self._owners.get(key, {})
        return sum(self.ctx.pacer.wake(owners[job]) for job in jobs if job in owners)

    async def _follow(self, key: Key) -> None:
        """Follow one server's feed while Replications are tracked on it."""
        namespace, name = key
        since, url, failures = "now", "", 0
        while self._owners.get(key) and not self._closing:
            opened: float | None = None
            renewed = False
            try:
                entry = await self.ctx.servers.get(namespace, name)
                follow: Follow | None = getattr(entry.backend, "follow_jobs", None)
                if follow is None:
                    return
                if entry.settings.url != url:  # another server: its seqs mean nothing here
                    since, url = "now", entry.settings.url
                async with contextlib.aclosing(follow(since)) as batches:
                    async for batch in batches:
                        if opened is None:
                            opened = time.monotonic()
                            await self._report(key, True, LIVE)
                            if since == "now":
                                # what changed before the feed opened is in no batch
                                self._wake(key, list(self._owners.get(key, {})))
                            continue
                        since = batch.seq
                        self._wake(key, batch.jobs)
                        if not self._owners.get(key):
                            break
                        if (await self.ctx.servers.get(namespace, name)) is not entry:
                            renewed = True  # new settings (a changed Secret): reopen
                            break
                if renewed:
                    continue
                problem = "the server ended the feed"
            except BackendError as exc:
                problem = exc.message
            except Exception as exc:  # never die silently: say so and retry later
                log.exception("change feed of DatabaseServer %s/%s failed", namespace, name)
                problem = f"unexpected {type(exc).__name__}"
            if not self._owners.get(key) or self._closing:
                break
            if opened is not None and time.monotonic() - opened > STABLE:
                failures = 0
            failures += 1
            delay = backoff(failures)
            log.info("change feed of DatabaseServer %s/%s: %s; reconnecting in %.0fs",
                     namespace, name, problem, delay)
            await self._report(key, False, f"reconnecting with backoff after: {problem}; "
                                           f"status follows the resync meanwhile")
            await asyncio.sleep(delay)
        if not self._closing:
            await self._report(key, False, IDLE)

    async def _report(self, key: Key, live: bool, message: str) -> None:
        """Write `status.changeFeed` of the DatabaseServer when what it says changes."""
        if self._reported.get(key) == (live, message):
            return
        namespace, name = key
        try:
            if key in self._reported:
                was_live: Any = self._reported[key][0]
            else:  # first word since this process started: maybe said already
                body = await kube.get_custom(namespace, SERVERS, name) or {}
                feed = (body.get("status") or {}).get("changeFeed") or {}
                if (feed.get("live"), feed.get("message")) == (live, message):
                    self._reported[key] = (live, message)
                    return
                was_live = feed.get("live")
            status: dict[str, Any] = {"live": live, "message": message}
            if was_live != live:
                status["lastTransitionTime"] = _now()
            await kube.patch_status(namespace, SERVERS, name, {"changeFeed": status})
            self._reported[key] = (live, message)
        except ApiException as exc:  # the feed itself is fine; say it next time
            log.warning("could not write the change feed status of DatabaseServer %s/%s: "
                        "%s", namespace, name, exc.reason)
