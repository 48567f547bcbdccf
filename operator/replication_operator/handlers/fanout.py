"""ReplicationPolicy on CouchDB, Cloudant and ReductStore: keep one child Replication
per matching source database (bucket), run them on a schedule or on request, and
report the children in the policy's status.

The children are found through a kopf index of Replications by their policy label
(kopf fills it before any handler runs, and keeps it current from the watch), so a
reconcile reads no list from the API server. Any event of a child asks for a
reconcile of its policy, coalesced (at most one waiting per policy), which is how a
child deleted or edited by hand is put back, how a run follows its children, and
how the policy's counts stay current without waiting for the resync. The database
list comes from the source server's backend through its `Snapshot`: one list call
per server per resync, however many policies read that server. On CouchDB servers
with `_db_updates`, one long poll per server tells the policies at once that a
database appeared or went.

The decisions are pure (reconcile/fanout.py); this module only does the I/O.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from replication_operator import GROUP, VERSION, events, kube
from replication_operator.backends.base import Endpoint, ReplicationRequest
from replication_operator.config import RUN_REQUESTED, SKIP_CLEANUP
from replication_operator.context import OperatorContext
from replication_operator.errors import (
    PERMANENT_STATUS_CODES,
    BackendError,
    PermanentBackendError,
    SpecError,
    TransientBackendError,
)
from replication_operator.handlers.cleanup import report_blocked
from replication_operator.metrics import RECONCILE_SECONDS, RECONCILES
from replication_operator.reconcile import fanout as pure
from replication_operator.reconcile.fanout import POLICY_LABEL, Child, ChildPlan, FanoutSpec
from replication_operator.servers import ServerEntry
from replication_operator.status import changed_fields, now_iso

log = logging.getLogger(__name__)

PLURAL = "replicationpolicies"
CHILDREN = "replications"
KIND = "ReplicationPolicy"
INDEX = "fanout_children"  # the kopf index (and the kwarg handlers receive it as)
WRITE_CONCURRENCY = 8  # API writes in flight per reconcile
REFRESH_DELAY = 0.5  # child events within this window make one reconcile
NAMES_SHOWN = 10

Key = tuple[str, str]  # (namespace, policy name)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN
                    else "")


def api_error(exc: ApiException, what: str) -> BackendError:
    """A Kubernetes API refusal as the error classes reconcile acts on (the API
    server's message names the field or the missing permission; no secrets in it)."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        message = str(exc.reason)
    text = f"{what}: {message}"
    status = int(exc.status or 0)
    if status in PERMANENT_STATUS_CODES:
        return PermanentBackendError(text, code=PERMANENT_STATUS_CODES[status], status=status)
    return TransientBackendError(text, status=status or None)


def merge_replace(old: Any, new: Any) -> Any:
    """A JSON merge patch turning `old` into `new` exactly (null removes a key)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        if key not in old or old[key] != value:
            patch[key] = merge_replace(old.get(key), value)
    return patch


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


class Fanout:
    """Expansion of ReplicationPolicies on CouchDB, Cloudant and ReductStore."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self.children: Any = None  # the kopf index, bound from the first handler call
        self._waiting: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._followers: dict[Key, asyncio.Task[None]] = {}  # (ns, server) → _db_updates
        self._readers: dict[Key, set[str]] = {}  # (ns, server) → policies reading it
        self._no_feed: weakref.WeakSet[Any] = weakref.WeakSet()  # backends without it

    # -- plumbing -----------------------------------------------------------

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        if self.children is None and INDEX in kwargs:
            self.children = kwargs[INDEX]

    def children_of(self, namespace: str, name: str) -> list[Child]:
        if self.children is None:
            return []
        store = self.children.get((namespace, name))
        return list(store) if store is not None else []

    async def handles(self, body: Mapping[str, Any]) -> bool:
        """Is this a policy to expand (its server is CouchDB, Cloudant or ReductStore)?
        Decided by the server type; if the server cannot be read, by the status."""
        spec = body.get("spec") or {}
        server = spec.get("server") or (spec.get("source") or {}).get("server") or \
            (spec.get("target") or {}).get("server")
        if server:
            try:
                entry = await self.ctx.servers.get(body["metadata"]["namespace"], str(server))
                return entry.settings.type in pure.FANOUT_TYPES
            except BackendError:
                pass
        return "matched" in (body.get("status") or {})

    def request(self, namespace: str, name: str, delay: float = REFRESH_DELAY) -> None:
        """Reconcile the policy soon; requests while one waits are the same request."""
        key = (namespace, name)
        if key in self._waiting:
            return
        self._waiting.add(key)

        async def later() -> None:
            await asyncio.sleep(delay)
            self._waiting.discard(key)
            try:
                await self.reconcile(namespace, name, max_age=self.ctx.config.resync_interval)
            except Exception:  # a background refresh must not die silently
                log.exception("reconcile of ReplicationPolicy %s/%s failed", namespace, name)

        self._spawn(later())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake_at(self, key: Key, when: str | None) -> None:
        """Reconcile when the next scheduled run is due (not a resync later)."""
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        if not when:
            return
        delay = (pure.parse_time(when) - datetime.now(UTC)).total_seconds()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(max(0.0, delay) + 0.05, self.request, *key, 0.0)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._wake_at(key, None)
        self._read_from(namespace, name, None)
        self.ctx.release(f"fanout/{namespace}/{name}")

    async def aclose(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        for task in [*self._followers.values(), *self._tasks]:
            task.cancel()
        self._timers.clear()
        self._followers.clear()

    # -- _db_updates ----------------------------------------------------------

    def _read_from(self, namespace: str, policy: str, server: str | None) -> None:
        """Record which server the policy reads; follow `_db_updates` while any does."""
        for key, readers in list(self._readers.items()):
            if key[0] == namespace and key[1] != server:
                readers.discard(policy)
                if not readers:
                    del self._readers[key]
                    task = self._followers.pop(key, None)
                    if task is not None:
                        task.cancel()
        if server is None:
            return
        key = (namespace, server)
        self._readers.setdefault(key, set()).add(policy)
        if key not in self._followers:
            task = asyncio.ensure_future(self._follow(namespace, server))
            self._followers[key] = task
            task.add_done_callback(lambda _t: self._followers.pop(key, None)
                                   if self._followers.get(key) is _t else None)

    async def _follow(self, namespace: str, server: str) -> None:
        """Long-poll `_db_updates`; a created or deleted database reconciles the
        policies reading the server within a second. Ends where the server has no
        such feed (PouchDB Server): the resync's list covers it there."""
        since, failures = "now", 0
        while self._readers.get((namespace, server)):
            try:
                entry = await self.ctx.servers.get(namespace, server)
                poll: Callable[[str, float], Awaitable[tuple[list[tuple[str, str]], str]
                                                       | None]] | None = \
                    getattr(entry.backend, "database_updates", None)
                if poll is None or entry.backend in self._no_feed:
                    return
                timeout = max(1.0, min(25.0, entry.settings.timeout - 5.0))
                answer = await poll(since, timeout)
            except BackendError as exc:
                failures += 1
                log.debug("_db_updates of %s/%s: %s", namespace, server, exc.message)
                await asyncio.sleep(min(60.0, 2.0 ** failures))
                continue
            if answer is None:
                self._no_feed.add(entry.backend)
                log.info("%s/%s has no _db_updates feed: new databases are found by the "
                         "list at each resync", namespace, server)
                return
            failures = 0
            changes, since = answer
            if changes:
                for policy in list(self._readers.get((namespace, server), ())):
                    self.request(namespace, policy, delay=0.2)

    # -- reconcile ------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str, *, max_age: float
                        ) -> BackendError | None:
        """Bring the children of one policy in line and write its status (read fresh
        under the policy's lock, so handler and background reconciles never race)."""
        started = time.monotonic()
        async with self.ctx.lock(f"fanout/{namespace}/{name}"):
            try:
                body = await kube.get_custom(namespace, PLURAL, name)
            except ApiException as exc:
                return api_error(exc, f"reading ReplicationPolicy {name}")
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            previous = dict(body.get("status") or {})
            generation = body["metadata"].get("generation")
            summary: pure.Summary | None = None
            fields: dict[str, Any] = {}
            error: BackendError | None = None
            try:
                summary, fields = await self._reconcile(body, previous, max_age=max_age)
            except BackendError as exc:
                error = exc
            except ApiException as exc:
                error = api_error(exc, "writing the policy's Replications")
            status = pure.policy_status(previous=previous, generation=generation,
                                        summary=summary, error=error, fields=fields,
                                        now=now_iso())
            changed = changed_fields(previous, status)
            if changed:
                try:
                    await kube.patch_status(namespace, PLURAL, name, changed)
                except ApiException as exc:
                    error = error or api_error(exc, "writing the policy's status")
            if error is not None and (previous.get("lastError") or {}).get("message") \
                    != error.message:
                self._event(body, "Warning", error.code, error.message)
            self._wake_at((namespace, name), status.get("nextRunTime"))
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", []))
        RECONCILES.labels(KIND, "error" if error else "ok").inc()
        RECONCILE_SECONDS.labels(KIND).observe(time.monotonic() - started)
        self.ctx.tally.set(KIND, f"{namespace}/{name}", "Error" if error else
                           "Ready" if ready else "Progressing", ready)
        return error

    async def _resolve(self, namespace: str, name: str, spec: Mapping[str, Any]
                       ) -> tuple[FanoutSpec, pure.Matcher, str, ServerEntry]:
        # parse before looking servers up by name: a side may be a registry (Harbor's),
        # which parse refuses naming the field; the server `handles` went by is known
        named = spec.get("server") or (spec.get("source") or {}).get("server") or \
            (spec.get("target") or {}).get("server")
        if not named:
            raise SpecError("spec.source.server: a CouchDB/Cloudant/ReductStore policy "
                            "replicates between two DatabaseServers")
        first = await self.ctx.servers.get(namespace, str(named))
        fs = pure.parse(name, spec, first.settings.type)
        source = await self.ctx.servers.get(namespace, fs.source_server)
        target = await self.ctx.servers.get(namespace, fs.target_server)
        matcher = pure.check(fs, source.settings.type, target.settings.type)
        server_family = pure.family(source.settings.type)
        job_server = fs.job_server or (fs.source_server if server_family == "reductstore"
                                       else fs.target_server)
        job = await self.ctx.servers.get(namespace, job_server)
        # the children's filter and options, checked by the backend that runs them
        job.backend.replications().validate(ReplicationRequest(
            key=f"{namespace}/{name}", external_name=name,
            source=Endpoint(source.settings, "db"), target=Endpoint(target.settings, "db"),
            continuous=server_family == "reductstore" or not fs.runs,
            filter=fs.filter, options=fs.options))
        return fs, matcher, server_family, source

    async def _reconcile(self, body: dict[str, Any], previous: Mapping[str, Any], *,
                         max_age: float) -> tuple[pure.Summary, dict[str, Any]]:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        fs, matcher, server_family, source = await self._resolve(namespace, name, body["spec"])
        self._read_from(namespace, name, fs.source_server if server_family == "couchdb"
                        else None)
        reader = getattr(source.backend, "databases", None)
        if reader is None:
            raise SpecError(f"spec.source.server: {source.settings.type} servers cannot list "
                            f"their databases")
        matched = pure.matching(matcher, await reader(max_age=max_age))
        wanted = {pure.child_name(name, db): db for db in matched}
        children = self.children_of(namespace, name)
        spec_changed = previous.get("observedGeneration") != body["metadata"].get("generation")
        step = pure.run_step(fs, server_family, previous, children, wanted,
                             now=datetime.now(UTC),
                             requested=(body["metadata"].get("annotations") or {}).get(
                                 RUN_REQUESTED),
                             spec_changed=spec_changed)
        plan = pure.plan_children(fs, server_family, matched, children, body, step.state,
                                  inherit=tuple(self.ctx.config.labels))
        foreign = await self._apply(body, plan, children, spec_changed)
        for type_, reason, message in step.events:
            self._event(body, type_, reason, message)
        summary = pure.summarize(fs, wanted, self.children_of(namespace, name),
                                 [*plan.foreign, *foreign], f"{fs.source_server}")
        return summary, step.fields

    async def _apply(self, body: dict[str, Any], plan: ChildPlan, children: Iterable[Child],
                     spec_changed: bool) -> list[Child]:
        """Write the plan; children found under a name the policy does not own (a create
        that met an existing object) are returned."""
        namespace, uid = body["metadata"]["namespace"], body["metadata"]["uid"]
        by_name = {c.name: c for c in children}
        slots = asyncio.Semaphore(WRITE_CONCURRENCY)
        foreign: list[Child] = []
        created: list[str] = []

        async def create(child: dict[str, Any]) -> None:
            name = child["metadata"]["name"]
            async with slots:
                try:
                    await kube.create_custom(namespace, CHILDREN, child)
                    created.append(name)
                    return
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                existing = await kube.get_custom(namespace, CHILDREN, name)
            if existing is not None:
                seen = Child.from_body(existing)
                if seen.owner_uid != uid:
                    foreign.append(seen)
                # ours, not in the index yet (or label removed): its event reconciles again
                elif POLICY_LABEL not in (existing["metadata"].get("labels") or {}):
                    await kube.patch_custom(namespace, CHILDREN, name, {"metadata": {
                        "labels": {POLICY_LABEL: body["metadata"]["name"]}}})

        async def change(item: pure.ChildChange) -> None:
            async with slots:
                if item.annotations:
                    await kube.patch_custom(namespace, CHILDREN, item.name,
                                            {"metadata": {"annotations": item.annotations}})
                if item.spec is not None:
                    old = by_name[item.name].spec
                    if _has_null(item.spec):
                        await kube.patch_custom(namespace, CHILDREN, item.name, [
                            {"op": "replace", "path": "/spec", "value": item.spec}])
                    else:
                        await kube.patch_custom(namespace, CHILDREN, item.name,
                                                {"spec": merge_replace(old, item.spec)})

        async def delete(name: str) -> None:
            async with slots:
                await kube.delete_custom(namespace, CHILDREN, name)

        await asyncio.gather(*[create(c) for c in plan.create],
                             *[change(c) for c in plan.change],
                             *[delete(n) for n in plan.delete])
        if created:
            self._event(body, "Normal", "Created",
                        f"created {len(created)} Replications: {_names(sorted(created))}")
        respecced = [c for c in plan.change if c.spec is not None]
        for item in respecced[:NAMES_SHOWN]:
            fields_ = ", ".join(item.differences)
            if spec_changed:
                self._event(body, "Normal", "Updated",
                            f"updated Replication {item.name} ({fields_})")
            elif not any(d == "spec.runId" or d == "spec.suspend" for d in item.differences):
                self._event(body, "Warning", "DriftCorrected",
                            f"Replication {item.name} was changed by hand ({fields_}); "
                            f"put it back")
        if plan.delete:
            self._event(body, "Normal", "Removed",
                        f"removed {len(plan.delete)} Replications whose database no longer "
                        f"matches or exists: {_names(plan.delete)}")
        return foreign

    def _event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        emit = events.warning if type_ == "Warning" else events.normal
        try:
            emit(body, reason, message)
        except LookupError:  # outside kopf's context: nothing to post with
            log.info("%s %s: %s", type_, reason, message)

    # -- deletion -------------------------------------------------------------

    async def delete(self, body: kopf.Body, patch: kopf.Patch, *, retry: int, runtime: Any
                     ) -> None:
        """Delete the children (their finalizers remove or leave the jobs, as the
        policy's deletionPolicy says), and let the policy go once they are gone."""
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        uid = body.metadata.uid
        deletion = str(body.spec.get("deletionPolicy") or "Delete")
        skip = body.metadata.annotations.get(SKIP_CLEANUP) == "true"
        mine = [c for c in self.children_of(namespace, name) if c.owner_uid == uid]
        try:
            for child in mine:
                wanted_meta: dict[str, Any] = {}
                if skip:
                    wanted_meta = {"metadata": {"annotations": {SKIP_CLEANUP: "true"}}}
                if child.spec.get("deletionPolicy") != deletion:
                    await kube.patch_custom(namespace, CHILDREN, child.name, {
                        **wanted_meta, "spec": {"deletionPolicy": deletion}})
                elif wanted_meta:
                    await kube.patch_custom(namespace, CHILDREN, child.name, wanted_meta)
                if not child.deleting:
                    await kube.delete_custom(namespace, CHILDREN, child.name)
        except ApiException as exc:
            raise kopf.TemporaryError(api_error(exc, "deleting Replications").message,
                                      delay=self.ctx.config.backoff(retry)) from None
        if mine:
            first = mine[0]
            report_blocked(patch, waited=runtime.total_seconds(),
                           grace=self.ctx.config.cleanup_grace,
                           what=f"{len(mine)} Replications ({first.name}, ...)",
                           why=f"Replication {first.name}: {first.message or 'deleting'}")
            raise kopf.TemporaryError(f"waiting for {len(mine)} Replications to go",
                                      delay=min(5.0, 1.0 + retry))
        self.forget(namespace, name)
        self.ctx.tally.drop(KIND, f"{namespace}/{name}")
        jobs = "leaving their jobs on the servers" if deletion == "Orphan" else \
            "and their jobs"
        events.normal(body, "Deleted", f"removed the policy's Replications {jobs}")


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> Fanout:
    fanout = Fanout(ctx)

    # this shard's children only: kopf takes the finalizer off any object it watches and
    # has no handler for, so watching another shard's objects would undo its finalizers
    @kopf.index(GROUP, VERSION, CHILDREN, registry=registry, id=INDEX,
                labels={**ctx.config.labels, POLICY_LABEL: kopf.PRESENT})
    async def fanout_children(body: kopf.Body, namespace: str | None, labels: kopf.Labels,
                        **_: Any) -> dict[Key, Child]:
        return {(namespace or "", str(labels[POLICY_LABEL])): Child.from_body(body)}

    @kopf.on.event(GROUP, VERSION, CHILDREN, registry=registry,
                   labels={POLICY_LABEL: kopf.PRESENT})
    async def child_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
        fanout.bind(kwargs)
        fanout.request(namespace or "", str(labels[POLICY_LABEL]))

    @kopf.on.cleanup(registry=registry)
    async def stop_fanout(**_: Any) -> None:
        await fanout.aclose()

    return fanout
