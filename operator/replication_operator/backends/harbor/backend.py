"""Harbor (API v2.0): replication policies, their executions, the registries (remote
endpoints) they need, and robot accounts for tokens.

Observation is batched per server: one paged list of policies, one list of the most
recent executions (newest first) and one paged list of registries serve every
ReplicationPolicy on the server; an execution that was running and has dropped out of
the recent window is looked up by id. Finished executions never change, so the
status keeps them between resyncs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from replication_operator.backends.base import ServerInfo
from replication_operator.backends.harbor import docs
from replication_operator.backends.harbor.paging import API, PAGE_SIZE, id_from_location, list_all
from replication_operator.backends.harbor.registries import HarborRegistries
from replication_operator.backends.harbor.tokens import HarborRobots
from replication_operator.backends.policies import (
    Execution,
    FailedTask,
    PolicyObservation,
    PolicyRequest,
    Remote,
)
from replication_operator.backends.snapshot import Snapshot
from replication_operator.errors import (
    ConflictError,
    NotFoundError,
    PermanentBackendError,
    SpecError,
    TransientBackendError,
)
from replication_operator.http import ServerConnection, ServerSettings

STOP_WAIT = 20.0  # seconds a deletion waits for stopped executions before retrying later
STOP_POLL = 0.5


def _still_running(external_id: str, running: list[Execution]) -> str:
    """Why Harbor refused to delete the policy (412: executions not in a final state)."""
    unclosed = [e.id for e in running if e.tasks_finished]
    if running and len(unclosed) == len(running):
        return (f"Harbor refuses to delete replication policy {external_id} while it has "
                f"not closed execution(s) {', '.join(map(str, unclosed))}: all their tasks "
                f"have ended, but Harbor still says InProgress (it closes executions 20-30 "
                f"s late, sometimes never); deletion retries")
    return (f"replication policy {external_id} still has running executions; they were "
            f"asked to stop and deletion retries")


def registry_status(remote: Remote, registry_id: int, name: str | None = None
                    ) -> dict[str, Any]:
    """The `status.registries` entry: Harbor's name and id, and what it stands for."""
    entry: dict[str, Any] = {"name": name or docs.registry_name(remote), "id": registry_id}
    if remote.declared_at:
        entry["url"] = remote.settings.url
    else:
        entry["server"] = remote.name
    return entry


class HarborBackend:
    suspend_deletes = False
    writes_through = False  # a write drops the stored state: the next look lists

    def __init__(self, conn: ServerConnection,
                 connection_for: Callable[[ServerSettings], ServerConnection]) -> None:
        self.conn = conn
        self._policies = Snapshot(self._list_policies)
        self._recent = Snapshot(self._list_recent_executions)
        self.registries = HarborRegistries(conn)
        self._robots = HarborRobots(conn)

    async def probe(self) -> ServerInfo:
        response = await self.conn.request("GET", f"{API}/systeminfo")
        info = response.json()
        if not isinstance(info, dict) or "harbor_version" not in info:
            raise PermanentBackendError("the server at this URL does not answer like Harbor "
                                        "(no harbor_version in /api/v2.0/systeminfo)",
                                        code="WrongServerType")
        await self.conn.request("GET", f"{API}/users/current")  # are the credentials good?
        return ServerInfo("Harbor", str(info["harbor_version"]))

    def invalidate(self) -> None:
        """Forget every stored list: the next observation reads the server again."""
        for snapshot in (self._policies, self._recent, self.registries.snapshot):
            snapshot.invalidate()

    def replications(self) -> Any:
        raise SpecError("spec.server: Harbor replicates through ReplicationPolicy resources, "
                        "not Replication")

    def tokens(self) -> HarborRobots:
        return self._robots

    def policies(self) -> HarborBackend:
        return self

    # --- observation -------------------------------------------------------------

    async def _list_policies(self) -> dict[str, dict[str, Any]]:
        return {str(p["id"]): p for p in await list_all(self.conn, "/replication/policies")}

    async def _list_recent_executions(self) -> list[dict[str, Any]]:
        response = await self.conn.request(
            "GET", f"{API}/replication/executions",
            params={"page": 1, "page_size": PAGE_SIZE, "sort": "-id"})
        return list(response.json() or [])

    async def _find(self, request: PolicyRequest, *, max_age: float
                    ) -> dict[str, Any] | None:
        policies = await self._policies.get(max_age)
        if request.external_id and request.external_id in policies:
            return policies[request.external_id]
        if request.adopted:
            raise NotFoundError(f"spec.externalName: no replication policy with id "
                                f"{request.external_id} on the server", code="NotFound")
        return next((p for p in policies.values() if p.get("name") == request.name), None)

    def validate(self, request: PolicyRequest) -> None:
        side = "target" if request.push else "source"
        remote = request.remote
        if not remote.declared_at and remote.settings.type != "harbor":
            raise SpecError(f"spec.{side}.server: a Harbor policy replicates with another "
                            f"Harbor, or with a registry declared in spec.{side}.registry; "
                            f"DatabaseServer {remote.name!r} is of type "
                            f"{remote.settings.type}")
        if remote.registry_type not in docs.REGISTRY_TYPES:
            raise SpecError(f"{remote.declared_at or f'spec.{side}'}.type "
                            f"{remote.registry_type!r} is not a registry type Harbor knows "
                            f"(allowed: {', '.join(docs.REGISTRY_TYPES)})")
        own = self.conn.settings
        if remote.settings.key == own.key or \
                remote.settings.url.rstrip("/") == own.url.rstrip("/"):
            raise SpecError(f"spec.{side}: source and target are the same Harbor")
        docs.policy_body(request, name=request.name, registry_id=1)  # trigger, schedule
        docs.registry_credential(remote)

    async def observe_policy(self, request: PolicyRequest, *, max_age: float,
                             follow: Collection[int] = (),
                             executions_max_age: float | None = None) -> PolicyObservation:
        """`executions_max_age` bounds the recent-executions list alone (polled every
        few seconds while an execution runs; the policy and registry lists keep
        `max_age`)."""
        return await self._observe(request, max_age=max_age, follow=follow, write=True,
                                   executions_max_age=executions_max_age)

    async def preview_policy(self, request: PolicyRequest, *, max_age: float
                             ) -> PolicyObservation:
        """`observe_policy` without any write (for `plan`): the registry the operator
        would create or put back is named in `registry_actions` ("would ...") instead,
        and a registry still to be created counts as a difference of the policy."""
        return await self._observe(request, max_age=max_age, follow=(), write=False)

    async def _observe(self, request: PolicyRequest, *, max_age: float,
                       follow: Collection[int], write: bool,
                       executions_max_age: float | None = None) -> PolicyObservation:
        policy = await self._find(request, max_age=max_age)
        if policy is None:
            return PolicyObservation.absent()
        external_id = str(policy["id"])
        registry_id, registry_name, registry_actions = await self._registry_for(
            request, policy, max_age=max_age, write=write)
        if write:
            registry_actions = self.registries.drain(request.remote)
        desired = docs.desired_policy(request, registry_id=registry_id, stored=policy)
        differences = docs.policy_differences(desired, policy)
        executions, gone = await self._executions(
            external_id, follow, max_age=max_age if executions_max_age is None
            else min(max_age, executions_max_age))
        return PolicyObservation(
            exists=True, external_id=external_id, name=str(policy.get("name", "")),
            up_to_date=not differences, differences=differences,
            owner=docs.owner_of(policy.get("description")), executions=executions,
            gone=gone,
            registries=[registry_status(request.remote, registry_id, registry_name)],
            registry_actions=registry_actions, handle={"policy": policy})

    async def _registry_for(self, request: PolicyRequest, policy: Mapping[str, Any] | None,
                            *, max_age: float, write: bool) -> tuple[int, str, list[str]]:
        """The registry standing for the remote side: its id, name, and (preview only)
        what would be done to it. An adopted policy keeps a registry the operator did
        not make while it points where the spec says (the operator leaves such a
        registry as it is); otherwise the operator's own, created or put back (`write`)
        or only looked up (id 0 when it would be created)."""
        if request.adopted and policy is not None:
            side = "dest_registry" if request.push else "src_registry"
            current = docs.registry_id(policy.get(side))
            found = (await self.registries.by_id(max_age=max_age)).get(current)
            if found is not None and docs.owner_of(found.get("description")) is None \
                    and docs.registry_serves(request.remote, found):
                return current, str(found.get("name") or ""), []
        name = docs.registry_name(request.remote)
        if not write:
            registry_id, actions = await self.registries.preview(request.remote,
                                                                 max_age=max_age)
            return registry_id, name, actions
        registry_id, _ = await self.registries.ensure(request.remote, max_age=max_age)
        return registry_id, name, []

    async def _executions(self, external_id: str, follow: Collection[int], *,
                          max_age: float) -> tuple[list[Execution], set[int]]:
        window = await self._recent.get(max_age)
        mine = {int(e["id"]): docs.execution_from(e) for e in window
                if str(e.get("policy_id")) == external_id}
        # a full window may have pushed an older running execution out of sight
        covered_from = min((int(e["id"]) for e in window), default=0) \
            if len(window) >= PAGE_SIZE else 0
        gone: set[int] = set()
        for execution_id in set(follow) - set(mine):
            if execution_id >= covered_from:
                gone.add(execution_id)
                continue
            response = await self.conn.request(
                "GET", f"{API}/replication/executions/{execution_id}", allow=(404,))
            if response.status_code == 404:
                gone.add(execution_id)
            else:
                mine[execution_id] = docs.execution_from(response.json())
        return sorted(mine.values(), key=lambda e: e.id, reverse=True), gone

    # --- changes -----------------------------------------------------------------

    async def create_policy(self, request: PolicyRequest) -> str:
        registry_id, _ = await self.registries.ensure(request.remote, max_age=1.0)
        body = docs.policy_body(request, name=request.name, registry_id=registry_id)
        try:
            response = await self.conn.request("POST", f"{API}/replication/policies",
                                               json=body)
        except ConflictError:
            # the name is taken: by this very resource (a create whose answer was lost)
            # it is ours to use; by anything else it is not ours to take
            policies = (await self._policies.get(0)).values()
            existing = next((p for p in policies if p.get("name") == request.name), None)
            if existing is not None and docs.owner_of(existing.get("description")) \
                    == request.key:
                return str(existing["id"])
            raise ConflictError(f"a replication policy named {request.name} exists on the "
                                f"server and was not made for {request.key}; set "
                                f"spec.externalName to its id to adopt it",
                                code="Conflict", status=409) from None
        finally:
            self._policies.invalidate()
        return str(id_from_location(response))

    async def update_policy(self, request: PolicyRequest, seen: PolicyObservation) -> None:
        policy = seen.handle["policy"]
        registry_id, _, _ = await self._registry_for(request, policy, max_age=1.0, write=True)
        body = docs.desired_policy(request, registry_id=registry_id, stored=policy)
        try:
            await self.conn.request("PUT", f"{API}/replication/policies/{seen.external_id}",
                                    json=body)
        finally:
            self._policies.invalidate()
        before = {docs.registry_id(policy.get(s)) for s in ("src_registry", "dest_registry")}
        if before - {registry_id, 0}:  # the policy moved to another remote server
            await self.registries.remove_unused(
                before, (await self._policies.get(0)).values())

    async def delete_policy(self, name: str, external_id: str) -> list[str]:
        """Stop running executions, wait for them (bounded), delete the policy and the
        registries only it used; returns the registries removed."""
        policies = await self._policies.get(0)
        policy = policies.get(external_id) or next(
            (p for p in policies.values() if p.get("name") == name), None)
        if policy is None:
            return []
        external_id = str(policy["id"])
        running = await self._stop_running(external_id)
        response = await self.conn.request(
            "DELETE", f"{API}/replication/policies/{external_id}", allow=(404, 412))
        self._policies.invalidate()
        if response.status_code == 412:
            raise TransientBackendError(_still_running(external_id, running), code="Stopping")
        registries = {docs.registry_id(policy.get(s)) for s in ("src_registry", "dest_registry")}
        return await self.registries.remove_unused(
            registries, (await self._policies.get(0)).values())

    async def _running(self, external_id: str) -> list[dict[str, Any]]:
        return await list_all(self.conn, "/replication/executions",
                              {"policy_id": external_id, "status": "InProgress"})

    async def _stop_running(self, external_id: str) -> list[Execution]:
        """Stop the policy's running executions and wait (bounded) until their tasks
        have ended; the executions still open. Harbor closes an execution only 20-30 s
        after its tasks end (sometimes never), so that is not waited for here: the
        deletion retries instead."""
        running = [docs.execution_from(e) for e in await self._running(external_id)]
        for execution in running:
            if not execution.tasks_finished:
                await self.conn.request(
                    "PUT", f"{API}/replication/executions/{execution.id}", allow=(404,))
        deadline = time.monotonic() + STOP_WAIT
        while any(not e.tasks_finished for e in running) and time.monotonic() < deadline:
            await asyncio.sleep(STOP_POLL)  # the server stops tasks asynchronously
            running = [docs.execution_from(e) for e in await self._running(external_id)]
        self._recent.invalidate()
        return running

    async def run_policy(self, external_id: str) -> int:
        try:
            response = await self.conn.request("POST", f"{API}/replication/executions",
                                               json={"policy_id": int(external_id)})
        finally:
            self._recent.invalidate()
        return id_from_location(response)

    async def failed_tasks(self, execution_id: int, limit: int) -> list[FailedTask]:
        path = f"{API}/replication/executions/{execution_id}/tasks"
        response = await self.conn.request("GET", path, params={
            "status": "Failed", "page": 1, "page_size": max(1, limit)})
        tasks = [t for t in response.json() or [] if t.get("status") == "Failed"][:limit]
        out = []
        for task in tasks:
            log = await self.conn.request("GET", f"{path}/{task['id']}/log", allow=(404,))
            message = docs.error_line(log.text) if log.status_code == 200 else ""
            out.append(FailedTask(str(task.get("src_resource") or ""),
                                  str(task.get("dst_resource") or ""), message))
        return out
