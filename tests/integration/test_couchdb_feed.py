"""The `_replicator` change feed of a real pouchdb-server, followed by the CouchDB
backend: changes reach the stored state without a list, the feed breaks when the
server goes away, and a reconnect from the last seq misses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from replication_operator.backends.base import Endpoint, ReplicationRequest
from replication_operator.backends.couchdb.backend import CouchDBBackend, JobChanges
from replication_operator.credentials import Credentials
from replication_operator.errors import TransientBackendError
from replication_operator.http import ServerConnection, ServerSettings

pytestmark = pytest.mark.integration
T = TypeVar("T")
SOURCE_DOCS = 3000


def settings(part: Any) -> ServerSettings:
    # a short timeout makes a short heartbeat (timeout / 3), so a dead feed shows fast
    return ServerSettings(key=f"test/{part.port}", type="couchdb", url=part.url,
                          auth_type="basic", timeout=3.0, credentials=Credentials(
                              username=part.username, password=part.password))


async def until(predicate: Callable[[], Awaitable[T | None]], timeout: float = 30,
                what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def now(check: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A plain check as `until` takes it."""
    async def checked() -> T:
        return check()
    return checked


class Follower:
    """Runs `follow_jobs` in the background and keeps what it yielded."""

    def __init__(self, backend: CouchDBBackend, since: str = "now") -> None:
        self.batches: list[JobChanges] = []
        self.error: BaseException | None = None
        self.task = asyncio.ensure_future(self._run(backend, since))

    async def _run(self, backend: CouchDBBackend, since: str) -> None:
        try:
            async for batch in backend.follow_jobs(since):
                self.batches.append(batch)
        except Exception as exc:
            self.error = exc

    def seen(self, job: str) -> bool:
        return any(job in b.jobs for b in self.batches)

    @property
    def seq(self) -> str:
        return self.batches[-1].seq

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def env(couch_a: Any, unique_name: Any
              ) -> AsyncIterator[tuple[CouchDBBackend, list[str], ReplicationRequest]]:
    requests: list[str] = []
    server = settings(couch_a)
    conn = ServerConnection(server, observer=lambda _s, method, _c, _t: requests.append(method))
    backend = CouchDBBackend(conn, lambda s: conn)
    async with httpx.AsyncClient(auth=(couch_a.username, couch_a.password),
                                 timeout=60) as admin:
        db = unique_name("feedsrc")
        await admin.put(f"{couch_a.url}/{db}")
        # enough documents that the job runs for a while: it is seen running first
        docs = [{"_id": f"d{i:05d}", "n": i} for i in range(SOURCE_DOCS)]
        (await admin.post(f"{couch_a.url}/{db}/_bulk_docs", json={"docs": docs})
         ).raise_for_status()
    request = ReplicationRequest(key="test/feed", external_name=unique_name("feedjob"),
                                 source=Endpoint(server, db),
                                 target=Endpoint(server, f"{db}-copy"),
                                 continuous=False, create_target=True)
    yield backend, requests, request
    with contextlib.suppress(Exception):
        await backend.delete(request.external_name, None)
    await conn.aclose()


async def test_a_completed_job_reaches_the_stored_state_through_the_feed(env: Any) -> None:
    backend, requests, request = env
    follower = Follower(backend)
    await backend.create(request)  # on PouchDB the feed answers with the first change
    await until(now(lambda: follower.batches), what="the feed to open")
    seen = await backend.observe(request, max_age=0)  # one list, the job running
    assert seen.phase == "Running", "the job ended before it was listed: make it longer"
    lists = len(requests)

    async def completed() -> bool:
        return (await backend.observe(request, max_age=3600)).phase == "Completed"

    await until(completed, what="Completed in the stored state")
    assert len(requests) == lists  # no list: the completion came with the feed
    assert follower.seen(request.external_name)
    seen = await backend.observe(request, max_age=3600)
    assert seen.progress.docs_written == SOURCE_DOCS and seen.completed_at
    await follower.stop()
    assert follower.error is None


async def test_the_feed_breaks_with_the_server_and_a_reconnect_misses_nothing(
        env: Any, couch_a: Any) -> None:
    backend, _, request = env
    follower = Follower(backend)
    await backend.create(request)
    await until(now(lambda: follower.seen(request.external_name)), what="the job in the feed")
    couch_a.stop()
    try:
        await until(now(follower.task.done), timeout=20, what="the feed to break")
        assert isinstance(follower.error, TransientBackendError)
    finally:
        couch_a.start()
    since = follower.seq
    # changed while nobody followed: a second job, and the first one deleted
    other = dataclasses.replace(request, external_name=f"{request.external_name}-2")
    await backend.create(other)
    await backend.delete(request.external_name, None)
    again = Follower(backend, since)
    try:
        await until(now(lambda: again.seen(other.external_name) and
                        again.seen(request.external_name)),
                    what="both changes replayed from the last seq")
        assert not (await backend.observe(request, max_age=3600)).exists
    finally:
        await again.stop()
        await backend.delete(other.external_name, None)


async def test_the_operators_own_writes_need_no_list_to_be_seen(env: Any) -> None:
    """Create, update (PouchDB: delete and re-create) and delete go into the stored state
    from the server's answers: observing after each lists nothing."""
    backend, _, request = env
    assert not (await backend.observe(request, max_age=0)).exists  # one list
    lists = backend._state.fetches
    await backend.create(request)
    seen = await backend.observe(request, max_age=3600)
    assert seen.exists and seen.owner == "test/feed" and seen.up_to_date
    changed = dataclasses.replace(request, run_id="run-2")
    seen = await backend.observe(changed, max_age=3600)
    assert seen.differences == ["dbops_run"]
    await backend.update(changed, seen)
    assert (await backend.observe(changed, max_age=3600)).up_to_date
    await backend.delete(request.external_name, await backend.observe(changed, max_age=3600))
    assert not (await backend.observe(changed, max_age=3600)).exists
    assert backend._state.fetches == lists
