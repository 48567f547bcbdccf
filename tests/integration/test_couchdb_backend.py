"""The CouchDB backend against real pouchdb-servers, without Kubernetes: create,
observe, update (delete + recreate where the server refuses edits), delete, the
selector → JavaScript filter, session auth, and tokens as users."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from replication_operator.backends.base import Endpoint, ReplicationRequest
from replication_operator.backends.couchdb.backend import CouchDBBackend
from replication_operator.backends.tokens import TokenRequest
from replication_operator.credentials import Credentials
from replication_operator.errors import PermanentBackendError, TransientBackendError
from replication_operator.http import ServerConnection, ServerSettings

pytestmark = pytest.mark.integration


def settings(part: Any, auth: str = "basic", password: str | None = None) -> ServerSettings:
    return ServerSettings(key=f"test/{part.port}", type="couchdb", url=part.url,
                          auth_type=auth, credentials=Credentials(
                              username=part.username, password=password or part.password))


async def until(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def env(couch_a: Any, couch_b: Any, unique_name: Any
              ) -> AsyncIterator[tuple[CouchDBBackend, httpx.AsyncClient, ReplicationRequest]]:
    conns: dict[ServerSettings, ServerConnection] = {}

    def connection_for(s: ServerSettings) -> ServerConnection:
        return conns.setdefault(s, ServerConnection(s))

    a, b = settings(couch_a), settings(couch_b, auth="session")
    backend = CouchDBBackend(connection_for(b), connection_for)
    admin = httpx.AsyncClient(auth=(couch_a.username, couch_a.password), timeout=10)
    db = unique_name("src")
    await admin.put(f"{couch_a.url}/{db}")
    for i, kind in enumerate(["order", "user", "order"]):
        await admin.put(f"{couch_a.url}/{db}/d{i}", json={"type": kind})
    request = ReplicationRequest(key="test/r", external_name=unique_name("job"),
                                 source=Endpoint(a, db), target=Endpoint(b, db),
                                 create_target=True, filter={"selector": {"type": "order"}})
    yield backend, admin, request
    await admin.aclose()
    for conn in conns.values():
        await conn.aclose()


async def target_ids(admin: httpx.AsyncClient, request: ReplicationRequest) -> set[str]:
    url = f"{request.target.server.url}/{request.target.database}/_all_docs"
    response = await admin.get(url, auth=(request.target.server.credentials.username,
                                          request.target.server.credentials.password))
    return {r["id"] for r in response.json().get("rows", [])} if response.is_success else set()


async def test_lifecycle_with_selector_update_and_delete(env: Any) -> None:
    backend, admin, request = env
    info = await backend.probe()
    assert info.flavour == "PouchDB Server"
    assert not (await backend.observe(request, max_age=0)).exists
    await backend.create(request)

    async def orders_arrived() -> bool:
        return await target_ids(admin, request) == {"d0", "d2"}
    await until(orders_arrived, what="orders replicated through the JS filter")
    seen = await backend.observe(request, max_age=0)
    assert seen.exists and seen.up_to_date and seen.phase == "Running"
    assert seen.owner == "test/r"

    users = dataclasses.replace(request, filter={"selector": {"type": "user"}})
    seen = await backend.observe(users, max_age=0)
    assert seen.differences == ["filter"]
    await backend.update(users, seen)  # PouchDB refuses edits of a running job

    async def user_arrived() -> bool:
        return "d1" in await target_ids(admin, request)
    await until(user_arrived, what="users replicated after the update")
    assert (await backend.observe(users, max_age=0)).up_to_date

    await backend.delete(request.external_name, None)
    assert not (await backend.observe(users, max_age=0)).exists
    await backend.delete(request.external_name, None)  # idempotent


async def test_one_list_call_serves_many_observers(env: Any) -> None:
    backend, _, request = env
    await backend.probe()
    others = [dataclasses.replace(request, external_name=f"{request.external_name}-{i}")
              for i in range(30)]
    before = backend._state.fetches
    await asyncio.gather(*(backend.observe(r, max_age=60) for r in others))
    assert backend._state.fetches - before <= 1


async def test_bad_password_is_permanent_and_down_server_transient(couch_a: Any) -> None:
    bad = ServerConnection(settings(couch_a, password="wrong"))
    with pytest.raises(PermanentBackendError) as info:
        await CouchDBBackend(bad, lambda s: bad).probe()
    assert "wrong" not in str(info.value)
    down = ServerConnection(dataclasses.replace(settings(couch_a), url="http://127.0.0.1:9"))
    down.BACKOFF_BASE = 0.01
    with pytest.raises(TransientBackendError):
        await CouchDBBackend(down, lambda s: down).probe()


async def test_token_user_can_read_rotates_and_is_removed(couch_a: Any, unique_name: Any
                                                          ) -> None:
    conn = ServerConnection(settings(couch_a))
    tokens = CouchDBBackend(conn, lambda s: conn).tokens()
    db = unique_name("tok")
    async with httpx.AsyncClient(auth=(couch_a.username, couch_a.password)) as admin:
        await admin.put(f"{couch_a.url}/{db}")
        await admin.put(f"{couch_a.url}/{db}/doc", json={"v": 1})
    request = TokenRequest(key="test/t", external_name=unique_name("user"), read=(db,))
    issued = await tokens.create_token(request)
    user = issued.credentials
    doc_url = f"{couch_a.url}/{db}/doc"
    assert httpx.get(doc_url, auth=(user.username, user.password)).status_code == 200
    assert (await tokens.observe_token(request, max_age=0)).up_to_date
    # make-before-break: the other slot is a second user; both work until one goes
    slot_b = dataclasses.replace(request, external_name=f"{request.external_name}-b")
    second = (await tokens.create_token(slot_b)).credentials
    assert httpx.get(doc_url, auth=(second.username, second.password)).status_code == 200
    assert httpx.get(doc_url, auth=(user.username, user.password)).status_code == 200
    await tokens.delete_token(request.external_name)
    assert httpx.get(doc_url, auth=(user.username, user.password)).status_code == 401
    assert httpx.get(doc_url, auth=(second.username, second.password)).status_code == 200
    assert not (await tokens.observe_token(request, max_age=0)).exists
    assert (await tokens.observe_token(slot_b, max_age=0)).up_to_date
    await tokens.delete_token(slot_b.external_name)
    assert not (await tokens.observe_token(slot_b, max_age=0)).exists
    await conn.aclose()
