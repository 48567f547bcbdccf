"""plan and export talk to servers through connections that cannot write: a write is
refused before it leaves the process; reads and logins go through."""

from __future__ import annotations

import httpx
import pytest

from replication_operator.backends.factory import make_backend
from replication_operator.credentials import Credentials
from replication_operator.gitops.readonly import ReadOnlyConnection, ReadOnlyServers, WriteRefused
from replication_operator.http import ServerSettings

SETTINGS = ServerSettings(key="ns/couch", type="couchdb", url="http://couch:5984",
                          auth_type="session",
                          credentials=Credentials(username="admin", password="pw-123"))


async def test_writes_are_refused_before_they_are_sent_reads_and_logins_go_through() -> None:
    sent: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        if request.url.path == "/_session":
            return httpx.Response(200, json={"ok": True},
                                  headers={"set-cookie": "AuthSession=abc; Path=/"})
        return httpx.Response(200, json={})

    conn = ReadOnlyConnection(SETTINGS, transport=httpx.MockTransport(server))
    try:
        assert (await conn.request("GET", "/_replicator")).status_code == 200
        for method in ("PUT", "POST", "DELETE", "PATCH"):
            with pytest.raises(WriteRefused) as refused:
                await conn.request(method, "/_replicator/job?rev=1-a", json={"x": 1})
            assert refused.value.permanent and "pw-123" not in str(refused.value)
            assert "?rev" not in str(refused.value)
    finally:
        await conn.aclose()
    assert sent == ["POST /_session", "GET /_replicator"]


async def test_the_registry_hands_out_read_only_connections_only() -> None:
    async def nothing(namespace: str, name: str) -> None:
        return None

    servers = ReadOnlyServers(read_secret=nothing, read_server=nothing,
                              backend_factory=make_backend)
    try:
        entry = await servers.refresh("ns", "couch", {"type": "couchdb",
                                                      "url": "http://couch:5984"})
        assert isinstance(entry.backend.conn, ReadOnlyConnection)
        assert isinstance(servers.connection_for(SETTINGS), ReadOnlyConnection)
    finally:
        await servers.aclose()
