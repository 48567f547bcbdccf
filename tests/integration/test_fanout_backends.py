"""What ReplicationPolicy fan-out needs from the backends, against real servers
(pouchdb-server, ReductStore), without Kubernetes: database lists shared by every
asker, no `_db_updates` on PouchDB Server, a one-shot CouchDB job run again by a new
runId, a ReductStore run (enable until nothing is pending, pause) and target buckets
made on request."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from replication_operator.backends.base import Endpoint, ReplicationRequest
from replication_operator.backends.couchdb.backend import CouchDBBackend
from replication_operator.backends.reductstore.backend import ReductStoreBackend
from replication_operator.credentials import Credentials
from replication_operator.http import ServerConnection, ServerSettings

pytestmark = pytest.mark.integration


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float = 30,
                what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Connections:
    def __init__(self) -> None:
        self.conns: dict[ServerSettings, ServerConnection] = {}
        self.requests: list[tuple[str, str, str]] = []

    def observe(self, server: str, method: str, outcome: str, seconds: float) -> None:
        self.requests.append((server, method, outcome))

    def __call__(self, settings: ServerSettings) -> ServerConnection:
        return self.conns.setdefault(settings, ServerConnection(settings,
                                                                observer=self.observe))

    async def aclose(self) -> None:
        for conn in self.conns.values():
            await conn.aclose()


@pytest.fixture
async def connections() -> AsyncIterator[Connections]:
    conns = Connections()
    yield conns
    await conns.aclose()


def couch(part: Any) -> ServerSettings:
    return ServerSettings(key=f"test/couch-{part.port}", type="couchdb", url=part.url,
                          auth_type="basic", credentials=Credentials(
                              username=part.username, password=part.password))


def reduct(part: Any) -> ServerSettings:
    return ServerSettings(key=f"test/reduct-{part.port}", type="reductstore", url=part.url,
                          auth_type="bearer", credentials=Credentials(token=part.token))


async def test_couchdb_database_list_is_one_call_for_every_asker(
        couch_a: Any, connections: Connections, unique_name: Any) -> None:
    settings = couch(couch_a)
    backend = CouchDBBackend(connections(settings), connections)
    db = unique_name("listed")
    await connections(settings).request("PUT", f"/{db}")
    names = await asyncio.gather(*(backend.databases(max_age=60) for _ in range(50)))
    assert all(n == names[0] for n in names)
    assert db in names[0] and "_replicator" in names[0]
    assert [r for r in connections.requests if r[1] == "GET"] == [
        (settings.key, "GET", "200")], "one _all_dbs for fifty askers"
    # PouchDB Server 4.2 has no _db_updates (400): the caller falls back to the list
    await backend.probe()
    assert await backend.database_updates("now", 1.0) is None


async def test_couchdb_one_shot_job_runs_again_with_a_new_run_id(
        couch_a: Any, couch_b: Any, connections: Connections, unique_name: Any) -> None:
    a, b = couch(couch_a), couch(couch_b)
    backend = CouchDBBackend(connections(b), connections)
    await backend.probe()
    db = unique_name("runs")
    source = connections(a)
    await source.request("PUT", f"/{db}")
    await source.request("PUT", f"/{db}/first", json={"n": 1})
    request = ReplicationRequest(key="test/runs", external_name=unique_name("job"),
                                 source=Endpoint(a, db), target=Endpoint(b, db),
                                 continuous=False, create_target=True, run_id="10")
    backend.validate(request)
    await backend.create(request)

    current = request

    async def completed() -> Any:
        seen = await backend.observe(current, max_age=0)
        return seen if seen.phase == "Completed" else None

    first = await until(completed, what="first run completed")
    target = connections(b)

    async def ids() -> set[str]:
        response = await target.request("GET", f"/{db}/_all_docs", allow=(404,))
        return {r["id"] for r in response.json().get("rows", [])} \
            if response.status_code == 200 else set()

    assert await ids() == {"first"}
    await source.request("PUT", f"/{db}/second", json={"n": 2})
    again = dataclasses.replace(request, run_id="20")
    seen = await backend.observe(again, max_age=0)
    assert seen.differences == ["dbops_run"] and seen.phase == "Completed"
    await backend.update(again, seen)  # an edited completed doc runs again
    current = again

    async def second_copied() -> bool:
        return "second" in await ids()

    await until(second_copied, what="second run copied the new document")
    done = await until(completed, what="second run completed")
    assert done.up_to_date and first.up_to_date


async def test_reductstore_bucket_list_and_a_run_by_enabling_and_pausing(
        reduct_a: Any, reduct_b: Any, connections: Connections, unique_name: Any) -> None:
    a, b = reduct(reduct_a), reduct(reduct_b)
    backend = ReductStoreBackend(connections(a), connections)
    src, dst = unique_name("src"), unique_name("dst")
    source, target = connections(a), connections(b)
    await source.request("POST", f"/api/v1/b/{src}", json={})
    names = await asyncio.gather(*(backend.databases(max_age=60) for _ in range(20)))
    assert src in names[0]  # ($system, where ReductStore logs, is listed once it exists)
    assert sum(1 for r in connections.requests if r[0] == a.key) == 2  # POST + one list
    request = ReplicationRequest(key="test/backup", external_name=unique_name("rep"),
                                 source=Endpoint(a, src), target=Endpoint(b, dst),
                                 create_target=True, suspend=True)
    await backend.create(request)  # made the destination bucket, created paused
    assert (await target.request("GET", f"/api/v1/b/{dst}")).status_code == 200
    ts = int(time.time() * 1_000_000)
    await source.request("POST", f"/api/v1/b/{src}/temp", params={"ts": ts},
                         content=b"21.5")

    async def observed(**want: Any) -> Any:
        seen = await backend.observe(run, max_age=0)
        return seen if all(getattr(seen, k) == v for k, v in want.items()) else None

    run = request
    paused = await until(lambda: observed(mode="paused"), what="paused")
    assert paused.progress.pending_records == 1, "paused queues what is written"
    run = dataclasses.replace(request, suspend=False)
    await backend.update(run, paused)
    sent = await until(lambda: observed(mode="enabled", phase="Running"), what="enabled")

    async def drained() -> Any:
        seen = await backend.observe(run, max_age=0)
        return seen if seen.progress.pending_records == 0 else None

    sent = await until(drained, what="nothing pending")
    record = await target.request("GET", f"/api/v1/b/{dst}/temp", params={"ts": ts})
    assert record.content == b"21.5"
    run = request
    await backend.update(run, sent)
    await until(lambda: observed(mode="paused"), what="paused again")
    await backend.delete(request.external_name, None)
