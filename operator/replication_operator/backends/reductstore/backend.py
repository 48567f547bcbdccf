"""ReductStore: replications (push from the source instance).

State comes from one `GET /api/v1/replications` per server per resync. The detail
(`GET /api/v1/replications/{name}`: settings and hourly diagnostics) is read when a
resource is created or changed, when the list shows something wrong, and otherwise
every `DETAIL_EVERY` resyncs for drift; that keeps list calls per server constant
while a hand edit is still found within a bounded time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from replication_operator.backends.base import Observation, ReplicationRequest, ServerInfo
from replication_operator.backends.reductstore import settings as rs
from replication_operator.backends.reductstore.tokens import ReductStoreTokens
from replication_operator.backends.snapshot import Snapshot
from replication_operator.errors import PermanentBackendError, ReadOnlyError
from replication_operator.http import ServerConnection, ServerSettings

API = "/api/v1"
DETAIL_EVERY = 10


class ReductStoreBackend:
    suspend_deletes = False  # mode "paused" keeps the queue without sending

    def __init__(self, conn: ServerConnection,
                 connection_for: Callable[[ServerSettings], ServerConnection]) -> None:
        self.conn = conn
        self._connection_for = connection_for
        self._list = Snapshot(self._list_replications)
        self._observations: dict[str, int] = {}
        self._buckets = Snapshot(self._list_buckets)

    async def probe(self) -> ServerInfo:
        response = await self.conn.request("GET", f"{API}/info")
        info = response.json()
        if "bucket_count" not in info:
            raise PermanentBackendError("the server at this URL does not answer like "
                                        "ReductStore (no bucket_count in /api/v1/info)",
                                        code="WrongServerType")
        return ServerInfo("ReductStore", str(info.get("version", "")))

    def replications(self) -> ReductStoreBackend:
        return self

    def tokens(self) -> ReductStoreTokens:
        return ReductStoreTokens(self.conn)

    def validate(self, request: ReplicationRequest) -> None:
        rs.validate(request)

    async def _list_replications(self) -> dict[str, dict[str, Any]]:
        response = await self.conn.request("GET", f"{API}/replications")
        return {r["name"]: r for r in response.json().get("replications", [])}

    def _path(self, name: str) -> str:
        return f"{API}/replications/{quote(name, safe='')}"

    def _dst_token(self, request: ReplicationRequest) -> str:
        creds = request.target.server.credentials
        return creds.token or creds.password

    async def observe(self, request: ReplicationRequest, *, max_age: float) -> Observation:
        items = await self._list.get(max_age)
        item = items.get(request.external_name)
        desired = rs.desired_settings(request, self._dst_token(request))
        count = self._observations.get(request.external_name, 0)
        self._observations[request.external_name] = count + 1
        detail = None
        looks_wrong = item is not None and (not item.get("is_active") or
                                            item.get("mode") != desired["mode"])
        if item is not None and (max_age < 2 or looks_wrong or count % DETAIL_EVERY == 0):
            response = await self.conn.request("GET", self._path(request.external_name),
                                               allow=(404,))
            detail = response.json() if response.status_code == 200 else None
        return rs.observe(request, item, detail, desired)

    async def _ensure_target_bucket(self, request: ReplicationRequest) -> None:
        """`target.create`: make the destination bucket (409: it exists) with the
        target's credentials, as CouchDB's create_target does for a database."""
        if request.create_target:
            target = self._connection_for(request.target.server)
            await target.request("POST", f"{API}/b/{quote(request.target.database, safe='')}",
                                 json={}, allow=(409,))

    async def create(self, request: ReplicationRequest) -> None:
        await self._ensure_target_bucket(request)
        body = rs.desired_settings(request, self._dst_token(request))
        try:
            await self.conn.request("POST", self._path(request.external_name), json=body)
        finally:
            self._list.invalidate()

    async def update(self, request: ReplicationRequest, seen: Observation) -> None:
        if seen.provisioned:
            raise ReadOnlyError(f"replication {request.external_name} is provisioned on the "
                                f"server (read-only)", code="Provisioned")
        body = rs.desired_settings(request, self._dst_token(request))
        try:
            await self.conn.request("PUT", self._path(request.external_name), json=body)
            if seen.mode != body["mode"]:
                await self.conn.request("PATCH", f"{self._path(request.external_name)}/mode",
                                        json={"mode": body["mode"]})
        finally:
            self._list.invalidate()

    async def delete(self, external_name: str, seen: Observation | None) -> None:
        try:
            await self.conn.request("DELETE", self._path(external_name), allow=(404,))
        finally:
            self._list.invalidate()
            self._observations.pop(external_name, None)

    # -- buckets (ReplicationPolicy fan-out) ----------------------------------

    async def _list_buckets(self) -> list[str]:
        response = await self.conn.request("GET", f"{API}/list")
        return [str(b["name"]) for b in response.json().get("buckets", []) if "name" in b]

    async def databases(self, *, max_age: float) -> list[str]:
        """Every bucket on the server: one `/api/v1/list` per `max_age`, shared by every
        policy reading this server."""
        return await self._buckets.get(max_age)
