"""Sahana Eden: sync repositories, sync tasks and scheduler jobs, for Replications and
ReplicationPolicies; state from the sync log.

On the job server the operator owns one `sync_repository` per (job server, peer)
pair, `dbops.<namespace>.<peer>`, shared by every Replication and ReplicationPolicy
between that pair; each of them adds its `sync_task`(s) and its scheduler job, whose
name carries its owner (see `docs`). The repository goes with its last task.

Observation is batched per server: the repository list, each operator repository's
tasks and jobs, and one `sync_log` read for all of them
(`~.repository_id__belongs=`) serve every resource on the server. A repository's peer
settings can only be read together with the peer password (`.s3json`): that read
happens once per repository and credential in this process, the password is compared
and dropped, never logged or kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

from replication_operator.backends.base import (
    Endpoint,
    Observation,
    ReplicationRequest,
    ServerInfo,
    dotted_name,
)
from replication_operator.backends.eden import docs, logs
from replication_operator.backends.eden.schedule import fixed_schedule
from replication_operator.backends.policies import FailedTask, PolicyObservation, PolicyRequest
from replication_operator.backends.snapshot import Snapshot
from replication_operator.errors import (
    PermanentBackendError,
    SpecError,
    TransientBackendError,
)
from replication_operator.http import ServerConnection, ServerSettings

ConnectionFor = Callable[[ServerSettings], ServerConnection]
REPOSITORIES = "/sync/repository"
MAX_REMEMBERED = 500  # executions whose failed tasks are kept for failed_tasks()
FINISHED = ("COMPLETED", "FAILED", "TIMEOUT", "STOPPED", "EXPIRED")
# default/about: a row "Core Components | Version", then "<system name> | <Eden's VERSION
# file>", e.g. "Sahana | eden-dev-73981fd80 (2022-05-20 14:18:14)" (seen on Eden built
# from master of 2024); the label is the deployment's short system name
_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.I | re.S)
_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
# an import body that names the table and holds no record: a write check that imports
# nothing (an empty object is refused, 400 "Invalid source", on a real Eden)
PROBE_BODY: dict[str, list[Any]] = {"$_sync_repository": []}


@dataclass
class EdenState:
    """The operator's repositories on one server, with tasks, jobs and log rows.

    Eden keeps one repository per peer: its `url` is unique, and a peer's registration
    renames the repository it finds by uuid after the peer's host (seen on Eden built
    from master of 2024). So the operator's repository for a peer is the one with the
    peer's URL that has the operator's name for it or the peer's host as name (renamed
    by the peer); a repository with that URL and another name (another namespace's, or
    made by hand) is not taken over."""

    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)  # by name
    by_url: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by peer URL
    listed: list[dict[str, Any]] = field(default_factory=list)  # every repository
    urls: frozenset[str] = frozenset()  # the peer URLs asked for
    tasks: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by repository id
    jobs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    rows: dict[int, list[logs.LogRow]] = field(default_factory=dict)

    def repository(self, plan: Plan) -> dict[str, Any] | None:
        rows = self.by_url.get(peer_url(plan.peer), [])
        return next((r for r in rows if r.get("name") == plan.repository), None) or \
            next((r for r in self.renamed() if r in rows), None) or \
            self.repositories.get(plan.repository)

    def renamed(self) -> list[dict[str, Any]]:
        """Repositories for a peer that the peer's registration named after its host."""
        return [r for url, rows in self.by_url.items() for r in rows
                if r.get("name") == urlsplit(url).netloc]

    def owned(self) -> dict[int, dict[str, Any]]:
        """The repositories the operator made or took over, by id."""
        return {int(r["id"]): r for r in [*self.repositories.values(), *self.renamed()]}

    def task(self, repository_id: int, resource: str) -> dict[str, Any] | None:
        return next((t for t in self.tasks.get(repository_id, [])
                     if t.get("resource_name") == resource), None)

    def owned_jobs(self, repository_id: int, owner: str, kinds: Collection[str]
                   ) -> list[tuple[dict[str, Any], docs.Marker]]:
        out = []
        for job in self.jobs.get(repository_id, []):
            found = docs.parse_marker(job.get("task_name"))
            if found is not None and found.owner == owner and found.kind in kinds:
                out.append((job, found))
        return out

    def claims(self, repository_id: int) -> dict[str, set[str]]:
        """resource → owners ("Replication ns/name", ...) whose jobs name it."""
        out: dict[str, set[str]] = {}
        for job in self.jobs.get(repository_id, []):
            found = docs.parse_marker(job.get("task_name"))
            if found is not None:
                for resource in found.resources:
                    out.setdefault(resource, set()).add(owner_label(found.kind, found.owner))
        return out


def peer_url(peer: ServerSettings) -> str:
    return peer.base_url.rstrip("/")


def owner_label(kind: str, owner: str) -> str:
    """A Replication and a ReplicationPolicy may share a name: tell them apart."""
    return f"{'Replication' if kind == docs.REPLICATION else 'ReplicationPolicy'} {owner}"


@dataclass(frozen=True)
class Plan:
    """What one Replication or ReplicationPolicy needs on this server."""

    key: str
    kind: str  # docs.REPLICATION | docs.POLICY
    repository: str
    peer: ServerSettings
    peer_side: str  # "source" | "target": where the peer is in the spec
    resources: tuple[str, ...]
    resource_field: str
    settings: docs.SyncSettings
    job: docs.JobSpec
    first_run: datetime | None = None  # None: now

    @property
    def peer_name(self) -> str:
        return self.peer.key.split("/")[-1]

    def fingerprint(self) -> str:
        username, password = docs.peer_credentials(self.peer, self.peer_side)
        text = f"{self.peer.base_url}\0{username}\0{password}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class EdenBackend:
    suspend_deletes = False  # a job can be disabled
    writes_through = False  # a write drops the stored state: the next look lists

    def __init__(self, conn: ServerConnection, connection_for: ConnectionFor) -> None:
        self.conn = conn
        self._connection_for = connection_for
        self._state = Snapshot(self._fetch)
        self._write = asyncio.Lock()
        self._verified: dict[int, str] = {}  # repository id → peer settings it has
        self._verifying: dict[int, asyncio.Lock] = {}  # one .s3json read at a time
        self._credentials: dict[str, dict[str, str]] = {}  # repository → owner → fingerprint
        # resources a server confirmed, per URL and login (the check proves the login too)
        self._known: dict[ServerSettings, set[str]] = {}
        self._logins: set[ServerSettings] = set()  # peer logins a write check accepted
        self._peer_urls: set[str] = set()  # peers whose repository observation looks up
        self._last: dict[str, Plan] = {}  # owner → last plan (deletion without a job)
        self._failed: dict[int, list[FailedTask]] = {}  # execution id → its failed tasks

    async def _state_for(self, plan: Plan, max_age: float) -> EdenState:
        """The snapshot, taken (again) if it did not look for this plan's peer yet."""
        url = peer_url(plan.peer)
        self._peer_urls.add(url)
        state = await self._state.get(max_age)
        if url not in state.urls:
            self._state.invalidate()
            state = await self._state.get(0)
        return state

    # -- server ----------------------------------------------------------------------

    async def probe(self) -> ServerInfo:
        """A write an anonymous user cannot make (a body without records: Eden imports
        nothing), since a wrong password on a read silently becomes anonymous."""
        response = await self.conn.request("POST", f"{REPOSITORIES}.s3json", json=PROBE_BODY,
                                           allow=(401, 403))
        if response.status_code == 401:
            raise PermanentBackendError(
                "Eden refused the login (401 Authentication Required to a write check): "
                "check the e-mail and password in the auth Secret", code="Unauthorized",
                status=401)
        if response.status_code == 403:
            raise PermanentBackendError(
                "the Eden user may not write sync settings (403 Insufficient Privileges): "
                "the operator needs an administrator's login", code="Forbidden", status=403)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise PermanentBackendError("the server at this URL does not answer like Sahana "
                                        "Eden's sync module (POST sync/repository.s3json)",
                                        code="WrongServerType")
        about = await self.conn.request("GET", "/default/about", allow=range(300, 600))
        return ServerInfo("Sahana Eden", about_version(about.text)
                          if about.status_code == 200 else "unknown")

    def replications(self) -> EdenBackend:
        return self

    default_name = staticmethod(dotted_name)

    def policies(self) -> EdenBackend:
        return self

    def tokens(self) -> Any:
        raise SpecError("spec.server: Eden has no tokens the operator can issue (Eden users "
                        "are managed in Eden); give the peer's login to the DatabaseServer")

    def invalidate(self) -> None:
        self._state.invalidate()

    # -- observation -------------------------------------------------------------------

    async def _fetch(self) -> EdenState:
        listed = list((await self.conn.request("GET", f"{REPOSITORIES}.json")).json() or [])
        urls = frozenset(self._peer_urls)
        state = EdenState(repositories={
            str(r.get("name")): r for r in listed
            if str(r.get("name") or "").startswith(docs.REPOSITORY_PREFIX)},
            listed=listed, urls=urls)

        async def by_url(url: str) -> None:
            # the list does not show urls, but filters on them (one request per peer)
            rows = (await self.conn.request("GET", f"{REPOSITORIES}.json",
                                            params={"~.url": url})).json() or []
            state.by_url[url] = list(rows)

        await asyncio.gather(*(by_url(u) for u in sorted(urls)))
        ids = sorted(state.owned())

        async def components(repository_id: int) -> None:
            for name, into in (("task", state.tasks), ("job", state.jobs)):
                response = await self.conn.request(
                    "GET", f"{REPOSITORIES}/{repository_id}/{name}.json", allow=(404,))
                into[repository_id] = list(response.json() or []) \
                    if response.status_code == 200 else []

        await asyncio.gather(*(components(i) for i in ids))
        if ids:
            entries = sum(len(state.tasks[i]) + len(state.jobs[i]) for i in ids)
            response = await self.conn.request("GET", "/sync/log.json", params={
                "~.repository_id__belongs": ",".join(map(str, ids)),
                "limit": min(2000, 100 + 10 * entries)})
            for row in logs.parse_rows(response.json() or []):
                state.rows.setdefault(row.repository_id, []).append(row)
        return state

    async def _repository_drift(self, repository: Mapping[str, Any], plan: Plan) -> list[str]:
        """Peer settings that differ on the repository, read from `.s3json` (with the
        peer password) only when this process has not seen these settings on it yet."""
        repository_id = int(repository["id"])
        fingerprint = plan.fingerprint()
        if self._verified.get(repository_id) == fingerprint:
            return []
        async with self._verifying.setdefault(repository_id, asyncio.Lock()):
            if self._verified.get(repository_id) == fingerprint:
                return []  # verified while this one waited
            return await self._read_repository(repository_id, plan, fingerprint)

    async def _read_repository(self, repository_id: int, plan: Plan, fingerprint: str
                               ) -> list[str]:
        response = await self.conn.request("GET", f"{REPOSITORIES}/{repository_id}.s3json",
                                           params={"mcomponents": "None"}, allow=(404,))
        records = response.json().get("$_sync_repository") \
            if response.status_code == 200 and isinstance(response.json(), dict) else None
        record = records[0] if isinstance(records, list) and records else {}
        want = docs.repository_fields(plan.repository, plan.peer, plan.peer_side)
        differences = docs.repository_differences(record, want)
        del record, records, want  # the peer password, in both, goes no further
        if not differences:
            self._verified[repository_id] = fingerprint
        return differences

    def _claim_credentials(self, plan: Plan) -> None:
        """Resources sharing a repository share its peer login: two that want different
        ones would overwrite each other at every resync."""
        owners = self._credentials.setdefault(plan.repository, {})
        fingerprint = plan.fingerprint()
        other = next((o for o, f in owners.items() if o != plan.key and f != fingerprint), None)
        if other is not None:
            raise PermanentBackendError(
                f"spec.{plan.peer_side}: sync repository {plan.repository} is shared with "
                f"{other}, which logs in to {plan.peer_name} with other credentials; "
                f"resources between the same two servers must use the same peer login "
                f"(tokenRef)", code="CredentialConflict")
        owners[plan.key] = fingerprint

    @staticmethod
    def _check_claims(state: EdenState, repository_id: int, plan: Plan) -> None:
        claims = state.claims(repository_id)
        for index, resource in enumerate(plan.resources):
            others = sorted(claims.get(resource, set()) - {owner_label(plan.kind, plan.key)})
            if others:
                where = plan.resource_field if plan.kind == docs.REPLICATION \
                    else f"{plan.resource_field}[{index}]"
                raise PermanentBackendError(
                    f"{where} {resource}: the sync task for it in repository "
                    f"{plan.repository} belongs to {others[0]}; one task cannot serve two "
                    f"resources (use options.mode both for a two-way sync)",
                    code="OwnedByAnother")

    async def _differences(self, state: EdenState, repository: Mapping[str, Any],
                           plan: Plan, jobs: Sequence[Mapping[str, Any]]) -> list[str]:
        repository_id = int(repository["id"])
        out: list[str] = []
        for resource in plan.resources:
            out += docs.task_differences(state.task(repository_id, resource), resource,
                                         plan.settings)
        out += docs.job_differences(jobs, repository_id, plan.job)
        out += await self._repository_drift(repository, plan)
        return out

    # -- writes --------------------------------------------------------------------------

    async def _check_resources(self, plan: Plan) -> None:
        """Eden accepts a task for a resource it does not know and then skips it without
        a word: ask both servers first (`sync/sync.xml` answers 400 to an unknown one)."""
        checks = [(self.conn, "the job server"),
                  (self._connection_for(plan.peer), f"peer {plan.peer_name}")]
        await self._check_peer_login(checks[1][0], plan)
        # naive UTC: Eden ignores an msince with a zone ("...Z") and exports everything
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        for conn, who in checks:
            known = self._known.setdefault(conn.settings, set())
            for index, resource in enumerate(plan.resources):
                if resource in known:
                    continue
                response = await conn.request("GET", "/sync/sync.xml", params={
                    "resource": resource, "msince": since}, allow=(400, 401, 404))
                if response.status_code == 401:
                    raise PermanentBackendError(
                        f"spec.{plan.peer_side}.server: {who} refused the login "
                        f"(401 Authentication Required) while checking {resource}",
                        code="PeerUnauthorized" if conn is not self.conn else "Unauthorized",
                        status=401)
                if response.status_code in (400, 404):
                    where = plan.resource_field if plan.kind == docs.REPLICATION \
                        else f"{plan.resource_field}[{index}]"
                    raise PermanentBackendError(
                        f"{where} {resource!r}: {who} ({conn.settings.base_url}) has no such "
                        f"resource (sync.xml answered {response.status_code}); Eden would "
                        f"accept the task and skip it at every run", code="UnknownResource",
                        status=400)
                known.add(resource)

    async def _check_peer_login(self, conn: ServerConnection, plan: Plan) -> None:
        """The peer login the repository will use, proven by a write check (as `probe`):
        under Eden's default policy a wrong password reads as anonymous, so a pull check
        passes and even pulls work, while the registration at the peer and every push
        fail with 401 (seen on Eden built from master of 2024)."""
        if conn.settings in self._logins:
            return
        response = await conn.request("POST", f"{REPOSITORIES}.s3json", json=PROBE_BODY,
                                      allow=(401, 403))
        if response.status_code == 401:
            raise PermanentBackendError(
                f"spec.{plan.peer_side}.server: peer {plan.peer_name} refused the login "
                f"(401 Authentication Required to a write check); the sync repository "
                f"would log in with it to register and to push", code="PeerUnauthorized",
                status=401)
        if response.status_code == 403:
            raise PermanentBackendError(
                f"spec.{plan.peer_side}.server: the login for peer {plan.peer_name} may not "
                f"write sync settings there (403 Insufficient Privileges); registering at "
                f"the peer needs that", code="PeerForbidden", status=403)
        self._logins.add(conn.settings)

    async def _write_repository(self, method: str, path: str, body: Mapping[str, Any],
                                expect: str | tuple[str, ...], what: str) -> list[int]:
        try:
            response = await self.conn.request(method, path, json=body)
            return docs.check_write(response.json(), expect=expect, what=what)
        finally:
            self._state.invalidate()

    async def _apply(self, plan: Plan) -> list[str]:
        """Bring repository, tasks and job in line with `plan` (idempotent); returns
        what was done, for Events."""
        await self._check_resources(plan)
        done: list[str] = []
        async with self._write:
            state = await self._state_for(plan, 0)
            repository = state.repository(plan)
            fields = docs.repository_fields(plan.repository, plan.peer, plan.peer_side)
            if repository is None:
                tasks = [docs.task_body(r, plan.settings) for r in plan.resources]
                body = docs.create_repository_body(fields, tasks)
                passive = await self._registered_by_peer(state, plan)
                if passive is not None:
                    # Eden's way: the peer's registration made this server's record of
                    # it; a second repository for the peer would take the same uuid
                    # (HTTP 500, and the peer renames its own repository meanwhile)
                    (made, *_) = await self._write_repository(
                        "PUT", f"{REPOSITORIES}/{passive['id']}.s3json", body, "updated",
                        f"taking over sync repository {passive['name']!r}, which peer "
                        f"{plan.peer_name} registered here")
                    done.append(f"took over sync repository {passive['name']!r} (registered "
                                f"here by peer {plan.peer_name}) as {plan.repository}")
                else:
                    # "updated": a deleted repository of that name comes back (Eden
                    # matches an import by name, deleted records too)
                    (made, *_) = await self._create_repository(body, plan)
                    done.append(f"created sync repository {plan.repository}")
                self._verified[made] = plan.fingerprint()
                state = await self._state_for(plan, 0)
                repository = state.repository(plan)
                if repository is None:
                    raise PermanentBackendError(f"sync repository {plan.repository} was "
                                                f"created but is not listed",
                                                code="UnexpectedAnswer")
            else:
                repository_id = int(repository["id"])
                drift = await self._repository_drift(repository, plan)
                tasks = [docs.task_body(r, plan.settings) for r in plan.resources
                         if docs.task_differences(state.task(repository_id, r), r,
                                                  plan.settings)]
                if drift or tasks:
                    await self._write_repository(
                        "PUT", f"{REPOSITORIES}/{repository_id}.s3json",
                        docs.update_repository_body(fields if drift else None, tasks),
                        "updated", f"updating sync repository {plan.repository}")
                    if drift:
                        self._verified[repository_id] = plan.fingerprint()
                        done.append(f"updated sync repository {plan.repository} "
                                    f"({', '.join(drift)})")
            del fields  # holds the peer password
            repository_id = int(repository["id"])
            jobs = [j for j, _ in state.owned_jobs(repository_id, plan.key, {plan.kind})]
            if docs.job_differences(jobs, repository_id, plan.job):
                await self._delete_jobs(repository_id, jobs)
                start = plan.first_run or datetime.now(UTC)
                await self._write_repository(
                    "PUT", f"{REPOSITORIES}.s3json",
                    docs.job_body(str(repository["uuid"]), repository_id, plan.job, start),
                    "updated", f"adding the job to sync repository {plan.repository}")
        return done

    async def _registered_by_peer(self, state: EdenState, plan: Plan
                                  ) -> dict[str, Any] | None:
        """The repository the peer's own registration made on this server (its sync
        module names it after the peer's public host, and gives it no URL), if any."""
        host = urlsplit(plan.peer.base_url).netloc
        for row in state.listed:
            if str(row.get("name") or "") != host or int(row["id"]) in state.owned():
                continue
            response = await self.conn.request(
                "GET", f"{REPOSITORIES}/{int(row['id'])}.s3json",
                params={"mcomponents": "None"}, allow=(404,))
            records = response.json().get("$_sync_repository") \
                if response.status_code == 200 and isinstance(response.json(), dict) else None
            record = records[0] if isinstance(records, list) and records else {}
            has_url = bool(record.get("url"))
            del record, records  # a passive repository has no password; still, drop it
            if not has_url:
                return row
        return None

    async def _create_repository(self, body: Mapping[str, Any], plan: Plan) -> list[int]:
        """POST the repository ("updated": a deleted one of that name comes back, as
        Eden matches an import by name, deleted records too). Eden answers 500 when its
        registration at the peer gives the new record the peer's site uuid and another
        record, deleted or not, already has it: typically the operator's own earlier
        repository for the peer, deleted after the peer's registration renamed it to
        the peer's host. Then the same POST under that name brings it back."""
        what = f"creating sync repository {plan.repository}"
        host = urlsplit(plan.peer.base_url).netloc
        try:
            return await self._write_repository("POST", f"{REPOSITORIES}.s3json", body,
                                                ("created", "updated"), what)
        except PermanentBackendError as exc:
            if "url: " not in exc.message:
                raise
            raise PermanentBackendError(
                f"{exc.message}; Eden keeps one sync repository per peer URL and this "
                f"server has one for {plan.peer.base_url} that the operator does not own "
                f"(made by hand, or by another namespace: its name is not {plan.repository}"
                f" or {host!r})", code=exc.code, status=exc.status) from None
        except TransientBackendError as exc:
            if exc.status != 500:
                raise
            first = exc
        records = [{**record, "name": host} for record in body["$_sync_repository"]]
        try:
            return await self._write_repository(
                "POST", f"{REPOSITORIES}.s3json", {"$_sync_repository": records},
                ("created", "updated"), f"{what} (as {host!r})")
        except TransientBackendError as exc:
            if exc.status != 500:
                raise
        raise TransientBackendError(
            f"{what}: {first.message[:300]} (Eden keeps one repository per peer and gives "
            f"it the peer's site uuid when it registers there, which fails if the server "
            f"already has a repository with that uuid, e.g. one peer {plan.peer_name} "
            f"registered here that is not named {host!r}: give that one the URL "
            f"{plan.peer.base_url} or delete it)", status=500)

    async def _delete_jobs(self, repository_id: int, jobs: Iterable[Mapping[str, Any]]) -> None:
        """Delete (not update: an update adds a duplicate link row) each distinct job."""
        try:
            for job_id in sorted({int(j["id"]) for j in jobs}):
                await self.conn.request(
                    "DELETE", f"{REPOSITORIES}/{repository_id}/job/{job_id}.json", allow=(404,))
        finally:
            self._state.invalidate()

    async def _remove(self, key: str, kinds: Collection[str]) -> list[str]:
        """Delete the owner's jobs, the tasks only it claimed, and repositories left
        without tasks and jobs; returns the repositories removed."""
        removed: list[str] = []
        fallback = self._last.get(key)
        async with self._write:
            state = await (self._state_for(fallback, 0) if fallback is not None
                           else self._state.get(0))
            fallback_row = state.repository(fallback) if fallback is not None else None
            renamed = {int(row["id"]) for row in state.renamed()}
            for repository_id, repository in sorted(state.owned().items()):
                name = str(repository.get("name") or "")
                mine = state.owned_jobs(repository_id, key, kinds)
                resources = {r for _, m in mine for r in m.resources}
                if not mine and fallback_row is not None and \
                        int(fallback_row["id"]) == repository_id:
                    resources = set(fallback.resources) if fallback is not None else set()
                if not resources and not mine:
                    continue
                await self._delete_jobs(repository_id, [j for j, _ in mine])
                others = {r for job in state.jobs.get(repository_id, [])
                          if (m := docs.parse_marker(job.get("task_name"))) is not None
                          and (m.owner != key or m.kind not in kinds) for r in m.resources}
                left = [t for t in state.tasks.get(repository_id, [])
                        if t.get("resource_name") not in resources - others]
                for task in state.tasks.get(repository_id, []):
                    if task not in left:
                        await self.conn.request(
                            "DELETE", f"{REPOSITORIES}/{repository_id}/task/{task['id']}.json",
                            allow=(404,))
                mine_ids = {int(j["id"]) for j, _ in mine}
                other_jobs = [j for j in state.jobs.get(repository_id, [])
                              if int(j["id"]) not in mine_ids]
                # one the operator made (a peer's registration may have renamed it
                # after the peer's host) goes with its last task and job; another
                # repository for the peer (Eden allows one per URL) is left
                if not left and not other_jobs and (
                        name.startswith(docs.REPOSITORY_PREFIX) or repository_id in renamed):
                    await self.conn.request("DELETE", f"{REPOSITORIES}/{repository_id}.json",
                                            allow=(404,))
                    self._verified.pop(repository_id, None)
                    removed.append(name)
            self._state.invalidate()
        self._last.pop(key, None)
        for owners in self._credentials.values():
            owners.pop(key, None)
        return removed

    # -- Replication ----------------------------------------------------------------------

    def _replication_plan(self, request: ReplicationRequest) -> Plan:
        own = self.conn.settings.key
        if request.source.server.key == request.target.server.key:
            raise SpecError("spec.target.server: source and target are the same Eden")
        if request.target.server.key == own:
            job_side, peer = "target", request.source
        elif request.source.server.key == own:
            job_side, peer = "source", request.target
        else:
            raise SpecError("spec.server must name spec.source.server (push) or "
                            "spec.target.server (pull) on eden")
        peer_side = "source" if job_side == "target" else "target"
        self._check_endpoints(request.source, request.target)
        if request.adopted:
            raise SpecError("spec.externalName: adoption is not available on eden (a task in "
                            "the operator's repository for the peer is taken over as it is)")
        if request.filter:
            raise SpecError(f"spec.filter.{sorted(request.filter)[0]} is not available on "
                            f"eden: the operator sets no Eden resource filters")
        resource = request.source.database
        docs.check_resource_name(resource, "spec.source.database")
        settings = docs.sync_settings(request.options, push=job_side == "source")
        docs.peer_credentials(peer.server, peer_side)
        namespace = request.key.split("/")[0]
        job = docs.JobSpec(
            marker=docs.marker(docs.REPLICATION, request.key, [resource],
                               "spec.source.database"),
            period=settings.interval, repeats=0 if request.continuous else 1,
            enabled=not request.suspend, timeout=settings.timeout, user_id=settings.user_id)
        return Plan(key=request.key, kind=docs.REPLICATION,
                    repository=docs.repository_name(namespace, peer.server.key.split("/")[-1]),
                    peer=peer.server, peer_side=peer_side, resources=(resource,),
                    resource_field="spec.source.database", settings=settings, job=job)

    @staticmethod
    def _check_endpoints(source: Endpoint, target: Endpoint) -> None:
        for side, endpoint in (("source", source), ("target", target)):
            if endpoint.server.type != "eden":
                raise SpecError(f"spec.{side}.server: an Eden sync runs between two Eden "
                                f"servers; DatabaseServer {endpoint.server.key.split('/')[-1]!r}"
                                f" is of type {endpoint.server.type}")
        if source.database != target.database:
            raise SpecError("spec.target.database must equal spec.source.database on eden: a "
                            "sync task names one resource (table) for both sides")

    def validate(self, request: ReplicationRequest | PolicyRequest) -> None:
        """Raise SpecError for what Eden cannot do (both protocols call it)."""
        if isinstance(request, PolicyRequest):
            self._policy_plan(request)
        else:
            if request.run_id:
                raise SpecError("spec.runId is not available on eden (run a one-shot job "
                                "again by re-creating the Replication)")
            self._replication_plan(request)

    async def observe(self, request: ReplicationRequest, *, max_age: float) -> Observation:
        plan = self._replication_plan(request)
        self._last[plan.key] = plan
        self._claim_credentials(plan)
        state = await self._state_for(plan, max_age)
        repository = state.repository(plan)
        if repository is None:
            return Observation.absent()
        repository_id = int(repository["id"])
        self._check_claims(state, repository_id, plan)
        jobs = [j for j, _ in state.owned_jobs(repository_id, plan.key, {docs.REPLICATION})]
        if not jobs:
            return Observation.absent()
        resource = plan.resources[0]
        task = state.task(repository_id, resource)
        seen = logs.observe_replication(
            resource=resource, rows=state.rows.get(repository_id, []), job=jobs[0],
            jobs=state.jobs.get(repository_id, []), task=task,
            continuous=request.continuous, repository=plan.repository)
        seen.differences = await self._differences(state, repository, plan, jobs)
        seen.up_to_date = not seen.differences
        seen.handle = {"repository_id": repository_id}
        return seen

    async def create(self, request: ReplicationRequest) -> None:
        await self._apply(self._replication_plan(request))

    async def update(self, request: ReplicationRequest, seen: Observation) -> None:
        await self._apply(self._replication_plan(request))

    async def delete(self, external_name: str, seen: Observation | None) -> None:
        await self._remove(docs.key_from_external_name(external_name), {docs.REPLICATION})

    # -- ReplicationPolicy ------------------------------------------------------------------

    def _policy_plan(self, request: PolicyRequest, now: datetime | None = None) -> Plan:
        side = "target" if request.push else "source"
        if request.remote.declared_at:
            raise SpecError(f"{request.remote.declared_at}: a registry is a Harbor peer; an "
                            f"Eden sync runs between two Eden DatabaseServers")
        remote = request.remote.settings
        if remote.type != "eden":
            raise SpecError(f"spec.{side}.server: an Eden sync runs between two Eden servers; "
                            f"DatabaseServer {remote.key.split('/')[-1]!r} is of type "
                            f"{remote.type}")
        if remote.key == self.conn.settings.key:
            raise SpecError(f"spec.{side}.server: source and target are the same Eden")
        if request.adopted:
            raise SpecError("spec.externalName: adoption is not available on eden")
        if request.filters:
            raise SpecError("spec.filters are Harbor filters; not available on eden")
        if request.dest_namespace:
            raise SpecError("spec.target.namespace is a Harbor setting; not available on eden")
        if request.trigger not in ("manual", "scheduled"):
            raise SpecError(f"spec.trigger.type {request.trigger!r} is not available on eden "
                            f"(allowed: manual, scheduled)")
        resources = tuple(request.patterns)
        for index, resource in enumerate(resources):
            docs.check_resource_name(resource, f"spec.source.databases[{index}]")
        if len(set(resources)) != len(resources):
            raise SpecError("spec.source.databases names a resource twice")
        settings = docs.sync_settings(
            request.options, push=request.push,
            extra_strategy=("delete",) if request.replicate_deletion else (),
            without=() if request.override else ("update",))
        docs.peer_credentials(remote, side)
        first_run: datetime | None = None
        if request.trigger == "scheduled":
            schedule = fixed_schedule(request.schedule, now or datetime.now(UTC),
                                      docs.MIN_INTERVAL)
            period, enabled, first_run = schedule.period, request.enabled, schedule.first_run
        else:  # a disabled job marks the policy; runs on request are one-shot jobs
            period, enabled = 86400, False
        namespace = request.key.split("/")[0]
        job = docs.JobSpec(
            marker=docs.marker(docs.POLICY, request.key, resources, "spec.source.databases"),
            period=period, repeats=0, enabled=enabled, timeout=settings.timeout,
            user_id=settings.user_id)
        return Plan(key=request.key, kind=docs.POLICY,
                    repository=docs.repository_name(namespace, remote.key.split("/")[-1]),
                    peer=remote, peer_side=side, resources=resources,
                    resource_field="spec.source.databases", settings=settings, job=job,
                    first_run=first_run)

    async def observe_policy(self, request: PolicyRequest, *, max_age: float,
                             follow: Collection[int] = (),
                             executions_max_age: float | None = None) -> PolicyObservation:
        """`executions_max_age` is not honoured: Eden's runs come from the sync log,
        read with everything else once per resync."""
        plan = self._policy_plan(request)
        self._last[plan.key] = plan
        self._claim_credentials(plan)
        state = await self._state_for(plan, max_age)
        repository = state.repository(plan)
        if repository is None:
            return PolicyObservation.absent()
        repository_id = int(repository["id"])
        self._check_claims(state, repository_id, plan)
        jobs = [j for j, _ in state.owned_jobs(repository_id, plan.key, {docs.POLICY})]
        if not jobs:
            return PolicyObservation.absent()
        runs = [j for j, _ in state.owned_jobs(repository_id, plan.key, {docs.RUN})]
        results, gone = logs.job_executions(
            jobs=[*jobs[:1], *runs], all_jobs=state.jobs.get(repository_id, []),
            resources=plan.resources, rows=state.rows.get(repository_id, []), follow=follow)
        for result in results:
            self._failed[result.execution.id] = result.failed_tasks
        for stale in sorted(self._failed)[:-MAX_REMEMBERED]:
            del self._failed[stale]
        differences = await self._differences(state, repository, plan, jobs)
        return PolicyObservation(
            exists=True, external_id=str(jobs[0]["id"]), name=plan.job.marker.text,
            up_to_date=not differences, differences=differences,
            executions=[r.execution for r in results], gone=gone,
            registries=[{"server": plan.peer_name, "id": repository_id}],
            handle={"repository_id": repository_id})

    async def create_policy(self, request: PolicyRequest) -> str:
        plan = self._policy_plan(request)
        await self._apply(plan)
        state = await self._state_for(plan, 0)
        repository = state.repository(plan)
        if repository is None:
            return ""
        jobs = state.owned_jobs(int(repository["id"]), plan.key, {docs.POLICY})
        return str(jobs[0][0]["id"]) if jobs else ""

    async def update_policy(self, request: PolicyRequest, seen: PolicyObservation) -> None:
        await self._apply(self._policy_plan(request))

    async def delete_policy(self, name: str, external_id: str) -> list[str]:
        removed = await self._remove(docs.key_from_external_name(name),
                                     {docs.POLICY, docs.RUN})
        return [f"sync repository {r}" for r in removed]

    async def run_policy(self, external_id: str) -> int:
        """A one-shot job (runs at once, all tasks of the repository); finished run jobs
        of the policy are removed first (their executions stay in the status)."""
        async with self._write:
            state = await self._state.get(0)
            for repository in state.owned().values():
                repository_id = int(repository["id"])
                for job in state.jobs.get(repository_id, []):
                    found = docs.parse_marker(job.get("task_name"))
                    if str(job.get("id")) != external_id or found is None or \
                            found.kind != docs.POLICY:
                        continue
                    finished = [j for j, _ in state.owned_jobs(repository_id, found.owner,
                                                          {docs.RUN})
                                if str(j.get("status")).upper() in FINISHED]
                    await self._delete_jobs(repository_id, finished)
                    now = datetime.now(UTC).replace(microsecond=0)
                    spec = docs.JobSpec(
                        marker=docs.Marker(docs.RUN, found.owner, found.resources),
                        period=60, repeats=1, enabled=True,
                        timeout=int(job.get("timeout") or docs.DEFAULT_TIMEOUT),
                        user_id=_user_id(job.get("vars")))
                    await self._write_repository(
                        "PUT", f"{REPOSITORIES}.s3json",
                        docs.job_body(str(repository["uuid"]), repository_id, spec, now),
                        "updated", f"adding a run to sync repository {repository['name']}")
                    return logs.execution_id(now, manual=True)
        raise PermanentBackendError(f"no policy job {external_id} on the server",
                                    code="NotFound", status=404)

    async def failed_tasks(self, execution_id: int, limit: int) -> list[FailedTask]:
        return self._failed.get(execution_id, [])[:limit]


def about_version(html: str) -> str:
    """Eden's version from its default/about page: the row after "Core Components |
    Version" (its label is the deployment's short system name); "unknown" if the page
    does not show it (e.g. where settings.security.version_info is off)."""
    rows = [[" ".join(_TAG.sub(" ", cell).split()) for cell in _CELL.findall(row)]
            for row in _ROW.findall(html)]
    for here, after in pairwise(rows):
        if here[:1] == ["Core Components"] and len(after) > 1 and after[1]:
            return after[1]
    return "unknown"


def _user_id(raw: Any) -> int:
    match = re.search(r'"user_id"\s*:\s*(\d+)', str(raw or ""))
    return int(match[1]) if match else docs.DEFAULT_USER_ID
