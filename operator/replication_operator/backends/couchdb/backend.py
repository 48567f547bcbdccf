"""CouchDB, Cloudant and PouchDB Server: `_replicator` jobs.

State comes from `_scheduler/docs/_replicator` where the server has a scheduler
(CouchDB 2.1+, Cloudant), else from the `_replication_*` fields the server writes into
each doc (CouchDB 1.x style, PouchDB Server). Both are listed once per server and
shared by every Replication on it (see `Snapshot`); between two lists, `follow_jobs`
keeps that state current from the `_replicator` change feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from replication_operator.backends.base import (
    Observation,
    ReplicationRequest,
    ServerInfo,
    dotted_name,
)
from replication_operator.backends.couchdb import changes, dbupdates, docs
from replication_operator.backends.couchdb.selector import selector_to_js
from replication_operator.backends.couchdb.tokens import CouchDBTokens
from replication_operator.backends.snapshot import Snapshot
from replication_operator.errors import ConflictError, NotFoundError, PermanentBackendError
from replication_operator.http import ServerConnection, ServerSettings

log = logging.getLogger(__name__)

REPLICATOR = "_replicator"
PAGE = 1000
FEED_HEARTBEAT = 10.0  # seconds between the empty lines a quiet feed sends

ConnectionFor = Callable[[ServerSettings], ServerConnection]


def detect_flavour(root: dict[str, Any]) -> ServerInfo:
    """Tell CouchDB, Cloudant and PouchDB Server apart from `GET /`."""
    if "express-pouchdb" in root:
        return ServerInfo("PouchDB Server", str(root.get("version", "")), [])
    vendor = root.get("vendor") or {}
    features = [str(f) for f in root.get("features") or []]
    vendor_name = str(vendor.get("name", "")) if isinstance(vendor, dict) else ""
    if "cloudant" in vendor_name.lower() or "cloudant_build" in root:
        return ServerInfo("Cloudant", str(root.get("version", "")), features)
    if "couchdb" in root:
        return ServerInfo("CouchDB", str(root.get("version", "")), features)
    raise PermanentBackendError("the server at this URL does not answer like CouchDB "
                                "(no 'couchdb' or 'express-pouchdb' key in GET /)",
                                code="WrongServerType")


def has_scheduler(info: ServerInfo) -> bool:
    if info.flavour == "Cloudant":
        return True
    if info.flavour != "CouchDB":
        return False
    major = info.version.split(".")[0]
    return "scheduler" in info.features or (major.isdigit() and int(major) >= 2)


@dataclass
class ReplicatorState:
    """Everything in `_replicator`, by doc id, plus the scheduler's view if any."""

    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    scheduler: dict[str, dict[str, Any]] | None = None
    scheduler_at: float = float("-inf")  # when the scheduler read began (monotonic)

    def with_docs(self, batch: list[changes.Change]) -> ReplicatorState:
        """This state with changed docs applied (older ones skipped: see changes.apply),
        each kept as docs.kept_doc keeps it."""
        kept = [dataclasses.replace(c, doc=docs.kept_doc(c.doc)) if c.doc is not None else c
                for c in batch]
        return dataclasses.replace(self, docs=changes.apply(self.docs, kept))

    def with_scheduler(self, scheduler: dict[str, dict[str, Any]], at: float
                       ) -> ReplicatorState:
        """This state with a scheduler read, unless the one it has began later."""
        if at < self.scheduler_at:
            return self
        return dataclasses.replace(self, scheduler=scheduler, scheduler_at=at)

    def written(self, change: changes.Change, at: float) -> ReplicatorState:
        """This state with a doc the operator just wrote: the doc as written, and no
        scheduler entry for it until a scheduler read after the write (the entry read
        before may describe the job as it was, e.g. the previous run completed)."""
        state = self.with_docs([change])
        if state.scheduler is not None and change.id in state.scheduler and \
                self.scheduler_at < at:
            scheduler = {k: v for k, v in state.scheduler.items() if k != change.id}
            state = dataclasses.replace(state, scheduler=scheduler)
        return state


@dataclass(frozen=True)
class JobChanges:
    """A batch of the `_replicator` feed, already applied to the stored state."""

    jobs: frozenset[str]  # ids of the docs that changed
    seq: str  # where the feed goes on from


class CouchDBBackend:
    suspend_deletes = True  # a CouchDB job cannot be paused: suspend removes the doc
    writes_through = True  # its writes update the stored state (see _written)

    def __init__(self, conn: ServerConnection, connection_for: ConnectionFor) -> None:
        self.conn = conn
        self._connection_for = connection_for
        self.info: ServerInfo | None = None
        self._state = Snapshot(self._list_state)
        self._tokens = CouchDBTokens(conn)
        self._databases = Snapshot(self._list_databases)

    # -- server -------------------------------------------------------------

    async def probe(self) -> ServerInfo:
        response = await self.conn.request("GET", "/")
        info = detect_flavour(response.json())
        # an authenticated call too, so bad credentials show up at probe time
        await self.conn.request("GET", f"/{REPLICATOR}", allow=(404,))
        self.info = info
        return info

    async def _info(self) -> ServerInfo:
        return self.info if self.info is not None else await self.probe()

    def replications(self) -> CouchDBBackend:
        return self

    default_name = staticmethod(dotted_name)

    def tokens(self) -> CouchDBTokens:
        return self._tokens

    # -- observation --------------------------------------------------------

    async def _list_state(self) -> ReplicatorState:
        info = await self._info()
        state = ReplicatorState(docs=await self._all_docs())
        if has_scheduler(info):
            at = time.monotonic()
            state = state.with_scheduler(await self._scheduler_docs(), at)
        return state

    async def _all_docs(self) -> dict[str, dict[str, Any]]:
        response = await self.conn.request("GET", f"/{REPLICATOR}/_all_docs",
                                           params={"include_docs": "true"}, allow=(404,))
        if response.status_code == 404:
            return {}
        rows = response.json().get("rows", [])
        return {r["id"]: docs.kept_doc(r["doc"]) for r in rows
                if r.get("doc") and not r["id"].startswith("_design/")}

    async def _scheduler_docs(self) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        skip = 0
        while True:
            response = await self.conn.request(
                "GET", f"/_scheduler/docs/{REPLICATOR}", params={"limit": PAGE, "skip": skip})
            page = response.json().get("docs", [])
            entries.update({e["doc_id"]: docs.kept_scheduler_entry(e)
                            for e in page if "doc_id" in e})
            if len(page) < PAGE:
                return entries
            skip += PAGE

    def _mango(self) -> bool:
        return self.info is not None and has_scheduler(self.info)

    def validate(self, request: ReplicationRequest) -> None:
        docs.validate(request)

    async def observe(self, request: ReplicationRequest, *, max_age: float) -> Observation:
        state = await self._state.get(max_age)
        doc = state.docs.get(request.external_name)
        entry = state.scheduler.get(request.external_name) if state.scheduler else None
        return docs.observe(request, doc, entry, mango=self._mango())

    def invalidate(self) -> None:
        self._state.invalidate()

    # -- change feed ----------------------------------------------------------

    async def follow_jobs(self, since: str = "now") -> AsyncGenerator[JobChanges, None]:
        """Follow `_replicator/_changes` from `since` until the server ends the feed, or
        it breaks (TransientBackendError); the caller reconnects from the last seq.

        Each batch of changed docs (whatever arrived while the previous one was being
        applied) is applied to the stored state before it is yielded, so a Replication
        woken for it observes it without a request: the docs come with the feed, and
        a server with a scheduler gets one `_scheduler/docs` read per batch (job states
        live there). The first batch is empty and says the feed is open; from "now",
        the stored state is dropped then, so the next list holds everything before."""
        await self._info()
        heartbeat = max(1.0, min(FEED_HEARTBEAT, self.conn.settings.timeout / 3))
        params = {"feed": "continuous", "since": since, "include_docs": "true",
                  "heartbeat": int(heartbeat * 1000)}
        async with self.conn.stream_lines(f"/{REPLICATOR}/_changes", params=params,
                                          read_timeout=3 * heartbeat) as lines:
            if since == "now":
                self._state.invalidate()
            yield JobChanges(frozenset(), since)
            queue: asyncio.Queue[changes.Change | changes.FeedEnd | BaseException] = \
                asyncio.Queue()

            async def read() -> None:
                try:
                    async for line in lines:
                        item = changes.parse_line(line)
                        if item is not None:
                            queue.put_nowait(item)
                    queue.put_nowait(changes.FeedEnd(since))
                except Exception as exc:  # handed to the consumer, which raises it
                    queue.put_nowait(exc)

            reader = asyncio.ensure_future(read())
            try:
                ended = False
                while not ended:
                    batch: list[changes.Change] = []
                    item = await queue.get()
                    while True:
                        if isinstance(item, BaseException):
                            raise item
                        if isinstance(item, changes.FeedEnd):
                            ended = True
                            break
                        batch.append(item)
                        if queue.empty():
                            break
                        item = queue.get_nowait()
                    if batch:
                        await self._apply_changes(batch)
                        since = batch[-1].seq
                        yield JobChanges(frozenset(c.id for c in batch), since)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _apply_changes(self, batch: list[changes.Change]) -> None:
        if not changes.complete(batch):  # a server that sent no docs: list again
            self._state.invalidate()
            return
        at = time.monotonic()
        scheduler = await self._scheduler_docs() if self._mango() else None

        def applied(state: ReplicatorState) -> ReplicatorState:
            state = state.with_docs(batch)
            return state if scheduler is None else state.with_scheduler(scheduler, at)

        self._state.update(applied)

    def _written(self, doc_id: str, answer: Any, body: dict[str, Any] | None) -> None:
        """Apply the server's answer to a write of ours (`body` None: a deletion) to the
        stored state. Dropping the state instead would make the next observation list
        every job again: one list per write, N lists of N jobs for N new Replications."""
        rev = str((answer if isinstance(answer, dict) else {}).get("rev") or "")
        if not rev:
            self._state.invalidate()
            return
        change = changes.Change(doc_id, "", None if body is None else
                                {**body, "_id": doc_id, "_rev": rev}, body is None, rev)
        at = time.monotonic()
        self._state.update(lambda state: state.written(change, at))

    # -- changes ------------------------------------------------------------

    def _doc_path(self, doc_id: str) -> str:
        return f"/{REPLICATOR}/{quote(doc_id, safe='')}"

    async def _ensure_selector_filter(self, request: ReplicationRequest) -> None:
        """Install the selector as a JS filter on the source (servers without Mango)."""
        selector = request.filter.get("selector")
        if not selector or self._mango():
            return
        source = self._connection_for(request.source.server)
        ddoc_id = f"_design/{docs.selector_ddoc_name(selector)}"
        path = f"/{quote(request.source.database, safe='')}/{ddoc_id}"
        body = {"filters": {"selector": selector_to_js(selector)},
                "dbops_selector": selector}
        # 409: same name = same selector (content-addressed), already installed
        await source.request("PUT", path, json=body, allow=(409,))

    async def create(self, request: ReplicationRequest) -> None:
        await self._info()
        await self._ensure_selector_filter(request)
        body = docs.new_doc(request, mango=self._mango())
        try:
            response = await self.conn.request("PUT", self._doc_path(request.external_name),
                                               json=body)
        except BaseException:
            self.invalidate()  # written or not: the next observation lists
            raise
        self._written(request.external_name, response.json(), body)

    async def update(self, request: ReplicationRequest, seen: Observation) -> None:
        await self._ensure_selector_filter(request)
        body = {**docs.new_doc(request, mango=self._mango()), "_rev": seen.handle.get("rev")}
        try:
            response = await self.conn.request("PUT", self._doc_path(request.external_name),
                                               json=body, allow=(403,))
            if response.status_code == 403:
                # PouchDB Server refuses edits of a running job: replace it instead.
                await self.delete(request.external_name, seen)
                body = docs.new_doc(request, mango=self._mango())
                response = await self.conn.request(
                    "PUT", self._doc_path(request.external_name), json=body)
        except BaseException:
            self.invalidate()
            raise
        self._written(request.external_name, response.json(),
                      {k: v for k, v in body.items() if k != "_rev"})

    async def delete(self, external_name: str, seen: Observation | None) -> None:
        path = self._doc_path(external_name)
        rev = seen.handle.get("rev") if seen is not None else None
        try:
            for _ in range(3):
                if rev is None:
                    current = await self.conn.request("GET", path, allow=(404,))
                    if current.status_code == 404:
                        self.invalidate()
                        return
                    rev = current.json().get("_rev")
                try:
                    response = await self.conn.request("DELETE", path, params={"rev": rev})
                except NotFoundError:
                    self.invalidate()
                    return
                except ConflictError:
                    rev = None  # changed meanwhile (the replicator writes state): re-read
                    continue
                self._written(external_name, response.json(), None)
                return
            raise ConflictError(f"{external_name}: the doc kept changing during deletion")
        except BaseException:
            self.invalidate()
            raise

    # -- databases (ReplicationPolicy fan-out) --------------------------------

    async def _list_databases(self) -> list[str]:
        response = await self.conn.request("GET", "/_all_dbs")
        try:
            return dbupdates.database_names(response.json())
        except ValueError:
            raise PermanentBackendError("GET /_all_dbs did not answer a list of names",
                                        code="WrongServerType") from None

    async def databases(self, *, max_age: float) -> list[str]:
        """Every database on the server: one `_all_dbs` per `max_age`, shared by every
        policy reading this server."""
        return await self._databases.get(max_age)

    async def database_updates(self, since: str, timeout: float
                               ) -> tuple[list[tuple[str, str]], str] | None:
        """One long poll of `_db_updates`: (database, created|deleted) events and the seq
        to go on from; None where the server has no such feed (PouchDB Server)."""
        info = await self._info()
        if info.flavour == "PouchDB Server":
            return None
        response = await self.conn.request(
            "GET", "/_db_updates", params={"feed": "longpoll", "since": since,
                                           "timeout": int(timeout * 1000)},
            allow=(400, 404, 405, 501))
        if response.status_code != 200:
            return None
        events, last = dbupdates.parse_updates(response.json(), since)
        if events:
            self._databases.invalidate()
        return events, last
