"""ReductStore: replications (push from the source instance).

State comes from one `GET /api/v1/replications` per server per resync. The detail
(`GET /api/v1/replications/{name}`: settings and hourly diagnostics) is read when a
resource is created or changed, when the list shows something wrong, and otherwise
every `DETAIL_EVERY` resyncs for drift; that keeps list calls per server constant
while a hand edit is still found within a bounded time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from replication_operator.backends.base import Observation, ReplicationRequest, ServerInfo
from replication_operator.backends.reductstore import settings as rs
from replication_operator.backends.reductstore.tokens import ReductStoreTokens
from replication_operator.backends.snapshot import Snapshot
from replication_operator.errors import PermanentBackendError, ReadOnlyError, TransientBackendError
from replication_operator.http import ServerConnection, ServerSettings

log = logging.getLogger(__name__)

API = "/api/v1"
DETAIL_EVERY = 10
WATCH_AFTER_CHANGE = 5  # resyncs that read the detail after a create or update


class ReductStoreBackend:
    suspend_deletes = False  # mode "paused" keeps the queue without sending
    writes_through = False  # a write drops the stored state: the next look lists

    def __init__(self, conn: ServerConnection,
                 connection_for: Callable[[ServerSettings], ServerConnection]) -> None:
        self.conn = conn
        self._connection_for = connection_for
        self._list = Snapshot(self._list_replications)
        self._tokens = ReductStoreTokens(conn)
        self._observations: dict[str, int] = {}
        self._watch: dict[str, int] = {}  # replication → resyncs left reading its detail
        self._errored: dict[str, dict[str, int]] = {}  # replication → errors by code
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

    @staticmethod
    def default_name(namespace: str, name: str) -> str:
        """`<namespace>__<name>` with the name's dots as `_`: ReductStore cannot record
        the diagnostics of a replication whose name has a dot (BACKENDS.md §3: entry
        names take letters, digits, `-`, `_`, `/`), and without diagnostics a refused
        token goes unseen. Kubernetes names have no `_`, so the mapping is one to one.
        Replications made earlier as `<namespace>.<name>` keep their name (a rename
        would lose their queue)."""
        return f"{namespace}__{name.replace('.', '_')}"

    def tokens(self) -> ReductStoreTokens:
        return self._tokens

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
        name = request.external_name
        items = await self._list.get(max_age)
        item = items.get(name)
        desired = rs.desired_settings(request, self._dst_token(request))
        count = self._observations.get(name, 0)
        self._observations[name] = count + 1
        detail = None
        looks_wrong = item is not None and (not item.get("is_active") or
                                            item.get("mode") != desired["mode"])
        # after a change, the detail is read on the next resyncs too: a new task starts
        # active with empty diagnostics whatever its token, and a refused token shows
        # only in the diagnostics, seconds later (the list still says active)
        watching = self._watch.get(name, 0)
        if item is not None and (max_age < 2 or looks_wrong or watching or
                                 count % DETAIL_EVERY == 0):
            response = await self.conn.request("GET", self._path(name), allow=(404,))
            detail = response.json() if response.status_code == 200 else None
            if watching:
                self._watch[name] = watching - 1
        seen = rs.observe(request, item, detail, desired,
                          errors_before=self._errored.get(name))
        if detail is not None:
            self._errored[name] = rs.error_counts(detail)
        if request.retiring:
            seen.retired = await self._retire(request, item)
        elif not request.adopted and item is not None:
            # the other name exists, and the status does not say it retires: an operator
            # killed between making a replacement and writing the status left it; it
            # goes like a replaced one (once it has sent what it holds)
            leftover = self.replacement_name(request)
            if leftover in items and await self._retire(
                    dataclasses.replace(request, retiring=leftover), item):
                log.info("removed replication %s, left behind by an interrupted swap; "
                         "%s replaces it", leftover, name)
        return seen

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
            self._watch[request.external_name] = WATCH_AFTER_CHANGE

    async def update(self, request: ReplicationRequest, seen: Observation) -> str | None:
        """A change of mode is a PATCH. Any other change replaces the replication by a
        new one under the other name (`<name>` / `<name>-b`): ReductStore 1.21 rebuilds
        a replication's task on PUT, and records written during those milliseconds go
        to no queue at all (seen here: one record in ~100 lost at every PUT under
        writes). The new replication queues every record from its creation on, the old
        one drains what it holds (with the old token, which therefore stays valid) and is
        deleted once it has sent everything; meanwhile records are sent twice, and the
        destination refuses the second copy (409), which is harmless. An adopted
        replication keeps its name: it is updated in place."""
        if seen.provisioned:
            raise ReadOnlyError(f"replication {request.external_name} is provisioned on the "
                                f"server (read-only)", code="Provisioned")
        body = rs.desired_settings(request, self._dst_token(request))
        path = self._path(request.external_name)
        in_place = [d for d in seen.differences if d != "mode"] == [] and not request.rotated
        try:
            if in_place or request.adopted:
                if not in_place:
                    await self.conn.request("PUT", path, json=body)
                if seen.mode != body["mode"]:
                    await self.conn.request("PATCH", f"{path}/mode",
                                            json={"mode": body["mode"]})
                self._watch[request.external_name] = WATCH_AFTER_CHANGE
                return None
            if request.retiring:
                raise TransientBackendError(
                    f"replication {request.external_name} is replacing "
                    f"{request.retiring}, which still sends what it holds; the change "
                    f"follows once it is done", code="Draining")
            new_name = self.replacement_name(request)
            created = await self.conn.request("POST", self._path(new_name), json=body,
                                              allow=(409,))
            if created.status_code == 409:  # left over from an interrupted swap
                await self.conn.request("PUT", self._path(new_name), json=body)
            self._watch[new_name] = WATCH_AFTER_CHANGE
            return new_name
        finally:
            self._list.invalidate()

    def replacement_name(self, request: ReplicationRequest) -> str:
        """The name a replacement takes: the default and `<default>-b` take turns (an
        older `<ns>.<name>` is replaced by the default, which has no dot). Deletion
        removes it too: a swap interrupted before its status was written leaves a
        replacement no status names."""
        namespace, _, name = request.key.partition("/")
        default = self.default_name(namespace, name)
        return f"{default}-b" if request.external_name == default else default

    async def _retire(self, request: ReplicationRequest, current: dict[str, Any] | None
                      ) -> bool:
        """Delete the replaced replication once it has sent everything and its
        replacement runs; whether it is gone."""
        old = (await self._list.get(0)).get(request.retiring)
        if old is None:
            return True
        if current is None or not current.get("is_active"):
            return False
        old_pending = int(old.get("pending_records", 0))
        new_pending = int(current.get("pending_records", 0))
        queues_alike = False
        if 0 < old_pending < new_pending:  # worth a look at what the old one queues
            response = await self.conn.request("GET", self._path(request.retiring),
                                               allow=(404,))
            stored = response.json().get("settings", {}) if response.status_code == 200 \
                else {}
            queues_alike = rs.same_queue(stored, rs.desired_settings(request, ""))
        if not rs.backlog_sent(old_pending, new_pending, queues_alike):
            return False
        await self.delete(request.retiring, None)
        return True

    async def delete(self, external_name: str, seen: Observation | None) -> None:
        try:
            await self.conn.request("DELETE", self._path(external_name), allow=(404,))
        finally:
            self._list.invalidate()
            for memory in (self._observations, self._watch, self._errored):
                memory.pop(external_name, None)

    # -- buckets (ReplicationPolicy fan-out) ----------------------------------

    async def _list_buckets(self) -> list[str]:
        response = await self.conn.request("GET", f"{API}/list")
        return [str(b["name"]) for b in response.json().get("buckets", []) if "name" in b]

    async def databases(self, *, max_age: float) -> list[str]:
        """Every bucket on the server: one `/api/v1/list` per `max_age`, shared by every
        policy reading this server."""
        return await self._buckets.get(max_age)
