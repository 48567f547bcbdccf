"""In-memory Eden state and its rules: users, data tables, sync repositories, tasks,
scheduler jobs and the sync log. No HTTP and no awaiting here: app.py calls these
methods, sync.py does the peer requests between them, and tests in the same process
may call them directly. Every public method takes the store's lock (never held across
a network call), so the HTTP thread and a test thread can share one store."""

from __future__ import annotations

import copy
import json
import threading
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from simkit.faults import Faults, RequestLog

from . import s3json
from .s3xml import XmlRecord
from .times import fmt, iso
from .times import now as clock_now

DEFAULT_TABLES = ("org_organisation", "org_office", "pr_person", "project_project")
FUNCTION = "sync_synchronize"
PULL, PUSH = "pull/outgoing", "push/outgoing"
SUCCESS, WARNING, ERROR, FATAL = "success", "warning", "error", "fatal"


class EdenError(Exception):
    """An answer other than 200: the HTTP status, the body (JSON or text), headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None
                 ) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def failed(statuscode: int, message: str | None = None, http_status: int | None = None
           ) -> EdenError:
    """Eden's JSON error message `{"status": "failed", "statuscode": "404", ...}`."""
    body: dict[str, Any] = {"status": "failed", "statuscode": str(statuscode)}
    if message is not None:
        body["message"] = message
    return EdenError(http_status or statuscode, body)


def new_uuid() -> str:
    return f"urn:uuid:{uuidlib.uuid4()}"


@dataclass
class User:
    email: str
    password: str
    admin: bool = True


@dataclass
class Record:
    """A row of a data table (org_organisation, ...)."""

    id: int
    uuid: str
    fields: dict[str, str]
    created_on: datetime
    modified_on: datetime
    deleted: bool = False


@dataclass
class Repository:
    id: int
    name: str
    uuid: str
    apitype: str = "eden"
    url: str | None = None
    username: str = ""
    password: str = ""
    proxy: str = ""
    synchronise_uuids: bool = False
    keep_source: bool = False
    last_connected: datetime | None = None
    deleted: bool = False


@dataclass
class Task:
    id: int
    repository_id: int
    resource_name: str
    uuid: str
    mode: int = 3
    strategy: list[str] = field(default_factory=lambda: list(s3json.STRATEGIES))
    update_policy: str = "NEWER"
    conflict_policy: str = "NEWER"
    components: bool = False  # listed as false when not given (seen on Eden built here)
    last_pull: datetime | None = None
    last_push: datetime | None = None
    deleted: bool = False


@dataclass
class SchedulerTask:
    """web2py's scheduler_task (a "job" of a repository, through sync_job links)."""

    id: int
    uuid: str
    function_name: str
    task_name: str = ""
    application_name: str = "eden/default"
    group_name: str = "main"
    args: str = "[]"
    vars: str = "{}"
    period: int = 60
    repeats: int = 1
    timeout: int = 60
    enabled: bool = True
    status: str = "QUEUED"
    start_time: datetime | None = None
    next_run_time: datetime | None = None
    last_run_time: datetime | None = None
    times_run: int = 0
    times_failed: int = 0
    deleted: bool = False
    # when the simulated worker runs it next: next_run_time, or sooner under max_period
    # (next_run_time itself stays last run + period, as web2py writes it)
    due_at: datetime | None = None


@dataclass
class JobLink:
    """sync_job: repository ↔ scheduler_task. Every job write adds one (BACKENDS.md §4:
    "Updating a job this way adds a duplicate link row each time")."""

    id: int
    repository_id: int
    scheduler_task_id: int
    deleted: bool = False


@dataclass
class LogRow:
    id: int
    timestmp: datetime
    repository_id: int
    resource_name: str | None
    mode: str | None
    action: str
    result: str
    remote: bool
    message: str


@dataclass
class Settings:
    """Knobs for tests: `max_period` caps every job's period (seconds) so recurring jobs
    run often; `strict_policy` makes non-admin writes 403; `adapter_bug` answers 500 to
    the creation of a repository with a URL (Eden's sync adapter on Python >= 3.9)."""

    max_period: float | None = None
    strict_policy: bool = False
    adapter_bug: bool = False
    # Eden's one repository per peer (seen on Eden built here): a repository's url is
    # unique; a registration answers this site's uuid as `sender`, which becomes the
    # registering repository's uuid (a clash with another repository: HTTP 500, nothing
    # written), and a registration whose uuid names a repository updates (renames,
    # undeletes) that one. Off: urls may repeat and registrations change no uuid (for
    # test suites that make many repositories for one peer).
    one_repository_per_peer: bool = True


@dataclass
class Registration:
    """A repository write that must register this site at the peer (done by sync.py)."""

    repository_id: int
    url: str
    username: str
    password: str = field(repr=False)


@dataclass
class RunTask:
    id: int
    resource_name: str
    mode: int
    strategy: list[str]
    update_policy: str
    conflict_policy: str
    last_pull: datetime | None
    known: bool  # the resource is a table of this site (unknown ones are skipped)


@dataclass
class RunPlan:
    """What one run of a repository needs, copied out of the store (no lock held)."""

    scheduler_task_id: int | None
    repository_id: int
    url: str | None
    username: str
    password: str = field(repr=False)
    tasks: list[RunTask] = field(default_factory=list)


class Store:
    def __init__(self, email: str = "admin@example.com", password: str = "eden",
                 tables: Iterable[str] = DEFAULT_TABLES, version: str = "4.0.0-sim") -> None:
        self._lock = threading.RLock()
        self.users: dict[str, User] = {email: User(email, password, admin=True)}
        self.version = version
        self.site_uuid = new_uuid()
        self.url = ""  # the simulator's base URL (…/eden), set when it starts
        self.tables: dict[str, dict[str, Record]] = {t: {} for t in tables}
        self.repositories: dict[int, Repository] = {}
        self.tasks: dict[int, Task] = {}
        self.scheduler: dict[int, SchedulerTask] = {}
        self.links: dict[int, JobLink] = {}
        self.log: list[LogRow] = []
        self.settings = Settings()
        self.faults = Faults()
        self.requests = RequestLog()
        self._ids: dict[str, int] = {}

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def _next_id(self, kind: str) -> int:
        self._ids[kind] = self._ids.get(kind, 0) + 1
        return self._ids[kind]

    def now(self) -> datetime:
        return clock_now()

    @property
    def host(self) -> str:
        """This site's name as a peer sees it ("host:port"), from its public URL."""
        return self.url.split("//", 1)[-1].split("/", 1)[0]

    # -- users ----------------------------------------------------------------------

    def add_user(self, email: str, password: str, admin: bool = False) -> None:
        with self._lock:
            self.users[email] = User(email, password, admin)

    def authenticate(self, email: str, password: str) -> User | None:
        """None for a wrong or missing login: Eden then treats the request as anonymous."""
        with self._lock:
            user = self.users.get(email)
            return user if user is not None and user.password == password else None

    def set_settings(self, **values: Any) -> Settings:
        with self._lock:
            for key, value in values.items():
                if not hasattr(self.settings, key):
                    raise ValueError(f"unknown setting {key}")
                setattr(self.settings, key, value)
            return self.settings

    # -- data tables (org_organisation, ...) -------------------------------------------

    def add_table(self, table: str) -> None:
        with self._lock:
            self.tables.setdefault(table, {})

    def _table(self, table: str) -> dict[str, Record]:
        records = self.tables.get(table)
        if records is None:
            raise failed(404, f"Unknown resource: {table}")
        return records

    @staticmethod
    def record_view(record: Record) -> dict[str, Any]:
        return {"id": record.id, "uuid": record.uuid, **record.fields,
                "created_on": fmt(record.created_on), "modified_on": fmt(record.modified_on)}

    def data_list(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            records = sorted(self._table(table).values(), key=lambda r: r.id)
            return [self.record_view(r) for r in records if not r.deleted]

    def data_import(self, table: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        """POST/PUT <prefix>/<name>.s3json: create, or update by @uuid."""
        with self._lock:
            records = self._table(table)
            now = self.now()
            converted = []
            for raw in items:
                values = {k: str(s3json.raw_value(v)) for k, v in raw.items()
                          if not k.startswith(("@", "$")) and s3json.raw_value(v) is not None}
                item = s3json.Item(raw=raw, uuid=s3json.as_text(raw.get("@uuid")))
                existing = records.get(item.uuid or "")
                if existing is None and not values.get("name"):
                    item.errors["name"] = s3json.REQUIRED
                converted.append((item, values))
            if any(item.errors for item, _ in converted):
                return {"status": "failed", "statuscode": "400", "message": "Validation error",
                        "tree": s3json.tree(table, [item for item, _ in converted])}
            created, updated = [], []
            for item, values in converted:
                existing = records.get(item.uuid or "")
                if existing is not None:
                    existing.fields.update(values)
                    existing.modified_on, existing.deleted = now, False
                    updated.append(existing.id)
                else:
                    record = Record(self._next_id(table), item.uuid or new_uuid(), values,
                                    now, now)
                    records[record.uuid] = record
                    created.append(record.id)
            return answer(len(converted), created, updated)

    def data_delete(self, table: str, record_id: int) -> None:
        with self._lock:
            for record in self._table(table).values():
                if record.id == record_id and not record.deleted:
                    record.deleted, record.modified_on = True, self.now()
                    return
            raise failed(404)

    def export_records(self, table: str, msince: datetime | None) -> list[XmlRecord]:
        """What a peer pulling `table` gets: records modified at or after `msince`,
        deleted ones included (Eden's adapter asks with include_deleted=True)."""
        with self._lock:
            return [XmlRecord(r.uuid, r.modified_on, r.created_on, r.deleted, dict(r.fields))
                    for r in sorted(self._table(table).values(), key=lambda r: r.id)
                    if msince is None or r.modified_on >= msince]

    def import_records(self, table: str, incoming: list[XmlRecord], strategy: list[str],
                       update_policy: str, conflict_policy: str,
                       last_sync: datetime | None) -> int:
        """Import as Eden's importer does, reduced: records match by uuid; a new one is
        created if `create` is in the strategy; an existing one is updated if `update`
        is, as the policy allows (THIS never, OTHER always, NEWER if the incoming one
        is newer, MASTER as OTHER); a record also changed here since `last_sync` is a
        conflict and follows `conflict_policy`; deletions need `delete`. Returns the
        number of records created, updated or deleted."""
        with self._lock:
            records = self._table(table)
            count = 0
            for item in incoming:
                local = records.get(item.uuid)
                if local is None:
                    if item.deleted or "create" not in strategy:
                        continue
                    records[item.uuid] = Record(self._next_id(table), item.uuid,
                                                dict(item.fields), item.created_on,
                                                item.modified_on)
                    count += 1
                    continue
                conflict = last_sync is not None and local.modified_on > last_sync
                policy = conflict_policy if conflict else update_policy
                if policy == "THIS" or (policy == "NEWER" and
                                        item.modified_on <= local.modified_on):
                    continue
                if item.deleted:
                    if "delete" in strategy and not local.deleted:
                        local.deleted, local.modified_on = True, item.modified_on
                        count += 1
                    continue
                if "update" not in strategy:
                    continue
                local.fields, local.modified_on, local.deleted = \
                    dict(item.fields), item.modified_on, False
                count += 1
            return count

    # -- sync tables: views ----------------------------------------------------------------

    def _repository(self, repository_id: int) -> Repository:
        repository = self.repositories.get(repository_id)
        if repository is None or repository.deleted:
            raise failed(404)
        return repository

    @staticmethod
    def repository_view(r: Repository) -> dict[str, Any]:
        # BACKENDS.md §4: GET sync/repository.json → [{"id", "name", "uuid", "last_connected"}]
        return {"id": r.id, "name": r.name, "uuid": r.uuid,
                "last_connected": fmt(r.last_connected)}

    @staticmethod
    def task_view(t: Task) -> dict[str, Any]:
        return {"id": t.id, "resource_name": t.resource_name, "mode": t.mode,
                "strategy": list(t.strategy), "update_policy": t.update_policy,
                "conflict_policy": t.conflict_policy, "components": t.components,
                "last_pull": fmt(t.last_pull), "last_push": fmt(t.last_push)}

    @staticmethod
    def job_view(s: SchedulerTask) -> dict[str, Any]:
        """web2py's scheduler_task as `job.json` lists it on Eden built here: its readable
        fields, in this order. `last_run_time` is not readable, so not listed: a run's
        start shows only as `next_run_time - period` once the run is over."""
        return {"id": s.id, "application_name": s.application_name,
                "task_name": s.task_name, "group_name": s.group_name, "status": s.status,
                "broadcast": False, "function_name": s.function_name, "uuid": s.uuid,
                "args": s.args, "vars": s.vars, "enabled": s.enabled,
                "start_time": fmt(s.start_time), "next_run_time": fmt(s.next_run_time),
                "stop_time": None, "repeats": s.repeats, "retry_failed": 0,
                "period": s.period, "prevent_drift": False, "cronline": None,
                "timeout": s.timeout, "sync_output": 0, "times_run": s.times_run,
                "times_failed": s.times_failed,
                "assigned_worker_name": "eden-sim#1" if s.times_run or s.status != "QUEUED"
                else ""}

    @staticmethod
    def log_view(row: LogRow) -> dict[str, Any]:
        return {"id": row.id, "timestmp": fmt(row.timestmp), "repository_id": row.repository_id,
                "resource_name": row.resource_name, "mode": row.mode, "action": row.action,
                "result": row.result, "remote": row.remote, "message": row.message}

    def repositories_list(self, hidden: bool = False) -> list[dict[str, Any]]:
        """The live repositories as `sync/repository.json` lists them; `hidden` adds the
        fields it does not show but filters on (url, apitype, username)."""
        with self._lock:
            return [{**self.repository_view(r),
                     **({"url": r.url, "apitype": r.apitype, "username": r.username}
                        if hidden else {})}
                    for r in sorted(self.repositories.values(), key=lambda r: r.id)
                    if not r.deleted]

    def _tasks_of(self, repository_id: int) -> list[Task]:
        return sorted((t for t in self.tasks.values()
                       if t.repository_id == repository_id and not t.deleted),
                      key=lambda t: t.id)

    def _links_of(self, repository_id: int) -> list[JobLink]:
        return sorted((link for link in self.links.values()
                       if link.repository_id == repository_id and not link.deleted
                       and link.scheduler_task_id in self.scheduler
                       and not self.scheduler[link.scheduler_task_id].deleted),
                      key=lambda link: link.id)

    def tasks_list(self, repository_id: int) -> list[dict[str, Any]]:
        with self._lock:
            self._repository(repository_id)
            return [self.task_view(t) for t in self._tasks_of(repository_id)]

    def jobs_list(self, repository_id: int) -> list[dict[str, Any]]:
        """One row per link row: a job written twice shows twice."""
        with self._lock:
            self._repository(repository_id)
            return [self.job_view(self.scheduler[link.scheduler_task_id])
                    for link in self._links_of(repository_id)]

    def log_list(self) -> list[dict[str, Any]]:
        """Newest first (BACKENDS.md §4)."""
        with self._lock:
            rows = sorted(self.log, key=lambda r: (r.timestmp, r.id), reverse=True)
            return [self.log_view(r) for r in rows]

    def export_repository(self, repository_id: int, components: set[str] | None
                          ) -> dict[str, Any]:
        """GET sync/repository/<id>.s3json: the record, its password in clear text
        (BACKENDS.md §4), and the components asked for (all when None)."""
        with self._lock:
            r = self._repository(repository_id)
            record: dict[str, Any] = {
                "@uuid": r.uuid, "name": r.name,
                "apitype": {"@value": r.apitype, "$": "Sahana Eden" if r.apitype == "eden"
                            else r.apitype},
                "url": r.url, "username": r.username, "password": r.password,
                "proxy": r.proxy, "synchronise_uuids": r.synchronise_uuids,
                "keep_source": r.keep_source}
            if r.last_connected is not None:  # null fields are left out of an export
                record["last_connected"] = {"@value": iso(r.last_connected),
                                            "$": r.last_connected.strftime("%Y-%m-%d %H:%M")}
            wanted = components if components is not None else {"task", "job", "log"}
            if "task" in wanted:
                record["$_sync_task"] = [
                    {"@uuid": t.uuid, **{k: v for k, v in self.task_view(t).items()
                                         if k != "id"}}
                    for t in self._tasks_of(repository_id)]
            if "job" in wanted:
                record["$_sync_job"] = [
                    {"$k_scheduler_task_id": {"@resource": "scheduler_task",
                                              "@uuid": self.scheduler[link.scheduler_task_id]
                                              .uuid}}
                    for link in self._links_of(repository_id)]
            if "log" in wanted:
                record["$_sync_log"] = [self.log_view(row) for row in self.log
                                        if row.repository_id == repository_id]
            return {"$_sync_repository": [record]}

    # -- sync tables: writes ---------------------------------------------------------------

    def import_repositories(self, body: Any, record_id: int | None, user: User
                            ) -> tuple[dict[str, Any], list[Registration]]:
        """POST/PUT sync/repository[/<id>].s3json. Validation errors are an answer with
        status "failed" (HTTP 200, BACKENDS.md §4); nothing is written then."""
        if not isinstance(body, Mapping):
            raise failed(400, "Invalid JSON: a JSON object is required")
        with self._lock:
            if self.settings.strict_policy and not user.admin:
                raise EdenError(403, "Insufficient Privileges")
            if record_id is not None:
                self._repository(record_id)
            items = s3json.records(body, "sync_repository")
            if items is None:
                return answer(0, [], []), []
            refs = {str(s3json.raw_value(raw.get("@tuid"))): raw
                    for raw in s3json.records(body, "scheduler_task") or []
                    if raw.get("@tuid") is not None}
            plans = [self._plan_repository(raw, record_id if i == 0 else None, refs)
                     for i, raw in enumerate(items)]
            if any(p.failed for p in plans):
                return ({"status": "failed", "statuscode": "400", "message": "Validation error",
                         "tree": {"$_sync_repository": [p.tree_record() for p in plans]}},
                        [])
            created: list[int] = []
            updated: list[int] = []
            registrations = []
            for plan in plans:
                repository, is_new = self._apply_repository(plan)
                (created if is_new else updated).append(repository.id)
                if repository.url:
                    registrations.append(Registration(repository.id, repository.url,
                                                      repository.username, repository.password))
            return answer(len(plans), created, updated), registrations

    def _plan_repository(self, raw: dict[str, Any], record_id: int | None,
                         refs: Mapping[str, dict[str, Any]]) -> _RepositoryPlan:
        item = s3json.convert(raw, s3json.REPOSITORY_FIELDS)
        target = self.repositories.get(record_id) if record_id is not None else None
        if target is None and item.uuid:
            target = next((r for r in self.repositories.values()
                           if r.uuid == item.uuid and not r.deleted), None)
        name = item.values.get("name", target.name if target else None)
        if target is None and name:
            # Eden's S3Duplicate: an import matches a repository of the same name (case
            # does not matter), deleted ones too (undeleted), and updates it (seen on
            # Eden built here: the name is not unique, nothing refuses it)
            wanted = str(name).lower()
            target = next((r for r in sorted(self.repositories.values(),
                                             key=lambda r: (r.deleted, r.id))
                           if r.name.lower() == wanted), None)
        url = item.values.get("url")
        if not name:
            item.errors["name"] = s3json.REQUIRED
        elif url and self.settings.one_repository_per_peer and any(
                r.url == url and r is not target for r in self.repositories.values()):
            item.errors["url"] = "Value already in database or empty"
        plan = _RepositoryPlan(item, target)
        for task_raw in s3json.records(raw, "sync_task") or []:
            task = s3json.convert(task_raw, s3json.TASK_FIELDS)
            if not task.values.get("resource_name"):
                task.errors["resource_name"] = s3json.REQUIRED
            plan.tasks.append(task)
        for job_raw in s3json.records(raw, "sync_job") or []:
            ref = job_raw.get("$k_scheduler_task_id")
            job_item = s3json.Item(raw=job_raw)
            sched_raw: dict[str, Any] | None = None
            existing: SchedulerTask | None = None
            if isinstance(ref, Mapping) and ref.get("@tuid") is not None:
                sched_raw = refs.get(str(ref["@tuid"]))
            elif isinstance(ref, Mapping) and ref.get("@uuid") is not None:
                existing = next((s for s in self.scheduler.values()
                                 if s.uuid == ref["@uuid"] and not s.deleted), None)
            if sched_raw is None and existing is None:
                job_item.errors["scheduler_task_id"] = s3json.REQUIRED
                plan.jobs.append((job_item, None, None))
                continue
            sched = s3json.convert(sched_raw or {}, s3json.SCHEDULER_FIELDS)
            if existing is None and sched.uuid:
                existing = next((s for s in self.scheduler.values()
                                 if s.uuid == sched.uuid and not s.deleted), None)
            if existing is None and not sched.values.get("function_name"):
                sched.errors["function_name"] = s3json.REQUIRED
            if sched.errors:
                job_item.errors.update(sched.errors)
            plan.jobs.append((job_item, sched, existing))
        return plan

    def _apply_repository(self, plan: _RepositoryPlan) -> tuple[Repository, bool]:
        values = plan.item.values
        repository = plan.target
        is_new = repository is None
        if repository is None:
            repository = Repository(self._next_id("sync_repository"), str(values["name"]),
                                    plan.item.uuid or new_uuid())
            self.repositories[repository.id] = repository
        for key, value in values.items():
            setattr(repository, key, value if value is not None or key == "url" else "")
        repository.deleted = False  # a deleted one matched by name comes back
        now = self.now()
        for task_item in plan.tasks:
            task_values = task_item.values
            task = next((t for t in self._tasks_of(repository.id)
                         if t.resource_name == task_values["resource_name"]), None)
            if task is None:
                task = Task(self._next_id("sync_task"), repository.id,
                            str(task_values["resource_name"]), task_item.uuid or new_uuid())
                self.tasks[task.id] = task
            for key, value in task_values.items():
                setattr(task, key, value)
        for _, sched_item, existing in plan.jobs:
            if sched_item is None:
                continue
            sched = existing
            if sched is None:
                sched = SchedulerTask(self._next_id("scheduler_task"),
                                      sched_item.uuid or str(uuidlib.uuid4()),
                                      str(sched_item.values["function_name"]),
                                      start_time=now, next_run_time=now)
                self.scheduler[sched.id] = sched
            for key, value in sched_item.values.items():
                setattr(sched, key, value)
            if {"start_time", "next_run_time"} & set(sched_item.values):
                sched.due_at = None
            if "next_run_time" not in sched_item.values and "start_time" in sched_item.values:
                sched.next_run_time = sched.start_time
            link = JobLink(self._next_id("sync_job"), repository.id, sched.id)
            self.links[link.id] = link
        return repository, is_new

    def delete_repository(self, repository_id: int) -> None:
        """Soft delete; its tasks and job links go with it, its log rows are removed."""
        with self._lock:
            repository = self._repository(repository_id)
            repository.deleted = True
            repository.url = None  # as Eden's ondelete: the same peer may be set up again
            for task in self._tasks_of(repository_id):
                task.deleted = True
            for link in self._links_of(repository_id):
                link.deleted = True
                self.scheduler[link.scheduler_task_id].deleted = True
            self.log = [row for row in self.log if row.repository_id != repository_id]

    def delete_task(self, repository_id: int, task_id: int) -> None:
        with self._lock:
            self._repository(repository_id)
            task = self.tasks.get(task_id)
            if task is None or task.deleted or task.repository_id != repository_id:
                raise failed(404)
            task.deleted = True

    def delete_job(self, repository_id: int, job_id: int) -> None:
        """The scheduler task and every link row to it."""
        with self._lock:
            self._repository(repository_id)
            links = [link for link in self._links_of(repository_id)
                     if link.scheduler_task_id == job_id]
            if not links:
                raise failed(404)
            for link in links:
                link.deleted = True
            self.scheduler[job_id].deleted = True

    def register_peer(self, body: Any) -> dict[str, Any]:
        """POST sync/repository/register.json from a peer (S3Sync.__register): the
        repository whose uuid is the peer's site uuid, deleted or not, is updated (name,
        apitype; undeleted): "Registration update successful"; else a passive one (no
        URL) named after the peer's host is made: "Registration successful". The answer
        names this site (`sender`); a log row here says `register/incoming`."""
        if not isinstance(body, Mapping) or not body.get("uuid"):
            raise failed(400, "No repository identifier specified")
        with self._lock:
            peer_uuid = str(body["uuid"])
            name = str(body.get("name") or peer_uuid)
            faithful = self.settings.one_repository_per_peer
            existing = next((r for r in sorted(self.repositories.values(), key=lambda r: r.id)
                             if r.uuid == peer_uuid and (faithful or not r.deleted)), None)
            if existing is None:
                existing = Repository(self._next_id("sync_repository"), name, peer_uuid,
                                      apitype=str(body.get("apitype") or "eden"))
                self.repositories[existing.id] = existing
                message = "Registration successful"
            elif faithful:
                existing.name, existing.deleted = name, False
                existing.apitype = str(body.get("apitype") or existing.apitype)
                message = "Registration update successful"
            else:
                message = "Registration successful"
            self.log.append(LogRow(self._next_id("sync_log"), self.now(), existing.id,
                                   "none", "register/incoming", "none", SUCCESS, False,
                                   message))
            answer = {"status": "success", "statuscode": "200", "message": message}
            if faithful:
                answer["sender"] = self.site_uuid
            return answer

    def take_peer_uuid(self, repository_id: int, sender: str) -> bool:
        """After a registration: the repository takes the peer's site uuid (Eden's
        adapter); False if another repository, deleted or not, has it (Eden: a unique
        constraint fails, HTTP 500)."""
        with self._lock:
            clash = any(r.uuid == sender and r.id != repository_id
                        for r in self.repositories.values())
            if clash:
                return False
            repository = self.repositories.get(repository_id)
            if repository is not None:
                repository.uuid = sender
            return True

    def checkpoint(self) -> Any:
        """The sync tables as they are (to undo a write Eden would roll back)."""
        with self._lock:
            return copy.deepcopy((self.repositories, self.tasks, self.scheduler, self.links,
                                  self.log, self._ids))

    def restore(self, saved: Any) -> None:
        with self._lock:
            (self.repositories, self.tasks, self.scheduler, self.links, self.log,
             self._ids) = copy.deepcopy(saved)

    def write_log(self, repository_id: int, resource_name: str | None, mode: str | None,
                  action: str, result: str, remote: bool, message: str) -> None:
        with self._lock:
            if repository_id not in self.repositories or \
                    self.repositories[repository_id].deleted:
                return
            self.log.append(LogRow(self._next_id("sync_log"), self.now(), repository_id,
                                   resource_name, mode, action, result, remote, message))

    # -- the scheduler (a worker, `web2py.py -K eden`, built in) --------------------------------

    def period_of(self, sched: SchedulerTask) -> float:
        cap = self.settings.max_period
        return float(sched.period) if cap is None else min(float(sched.period), cap)

    def claim_due(self) -> list[RunPlan]:
        """Every enabled, QUEUED sync job whose time has come, marked RUNNING, with what
        its run needs."""
        with self._lock:
            now = self.now()
            linked = {link.scheduler_task_id for link in self.links.values()
                      if not link.deleted}
            plans = []
            for sched in sorted(self.scheduler.values(), key=lambda s: s.id):
                due = sched.due_at or sched.next_run_time or sched.start_time or now
                if sched.deleted or not sched.enabled or sched.status != "QUEUED" or \
                        sched.function_name != FUNCTION or sched.id not in linked or due > now \
                        or (sched.start_time is not None and sched.start_time > now):
                    continue
                sched.status, sched.last_run_time = "RUNNING", now
                # a job web2py runs is due: next_run_time <= its start (the simulated
                # worker may take it sooner, under max_period)
                if sched.next_run_time is None or sched.next_run_time > now:
                    sched.next_run_time = now
                repository_id = _repository_argument(sched.args)
                plan = self.run_plan(repository_id, sched.id)
                if plan is None:
                    self.finish_job(sched.id, ok=False)
                    continue
                plans.append(plan)
            return plans

    def run_plan(self, repository_id: int | None, scheduler_task_id: int | None = None
                 ) -> RunPlan | None:
        """Start a run of a repository: `last_connected` is set now, whatever happens."""
        with self._lock:
            repository = self.repositories.get(repository_id or 0)
            if repository is None or repository.deleted:
                return None
            repository.last_connected = self.now()
            return RunPlan(scheduler_task_id, repository.id, repository.url,
                           repository.username, repository.password,
                           [RunTask(t.id, t.resource_name, t.mode, list(t.strategy),
                                    t.update_policy, t.conflict_policy, t.last_pull,
                                    t.resource_name in self.tables)
                            for t in self._tasks_of(repository.id)])

    def finish_job(self, scheduler_task_id: int | None, ok: bool = True) -> None:
        """After a run: web2py counts it; `repeats` 0 runs forever, N stops after N."""
        with self._lock:
            sched = self.scheduler.get(scheduler_task_id or 0)
            if sched is None:
                return
            sched.times_run += 1
            if not ok:
                sched.times_failed += 1
            # web2py: next_run_time = the run's start + period, also for a finished job
            # (seen on Eden built here: a job listing's only trace of when it last ran)
            started = sched.last_run_time or self.now()
            sched.next_run_time = started + timedelta(seconds=int(sched.period))
            sched.due_at = started + timedelta(seconds=max(self.period_of(sched), 1.0))
            if sched.repeats and sched.times_run >= sched.repeats:
                sched.status = "COMPLETED"
                return
            if sched.status == "RUNNING":
                sched.status = "QUEUED"

    def set_last_pull(self, task_id: int, value: datetime) -> None:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is not None:
                task.last_pull = value

    # -- state for /_sim/state ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything as JSON, passwords masked."""
        with self._lock:
            return {
                "site_uuid": self.site_uuid, "url": self.url,
                "settings": vars(self.settings).copy(),
                "tables": {t: self.data_list(t) for t in sorted(self.tables)},
                "repositories": [{**self.repository_view(r), "url": r.url,
                                  "username": r.username, "password": "*****",
                                  "deleted": r.deleted}
                                 for r in self.repositories.values()],
                "tasks": [{**self.task_view(t), "repository_id": t.repository_id,
                           "deleted": t.deleted} for t in self.tasks.values()],
                "jobs": [{**self.job_view(s), "deleted": s.deleted}
                         for s in self.scheduler.values()],
                "links": [vars(link).copy() for link in self.links.values()],
                "log": self.log_list(),
            }


@dataclass
class _RepositoryPlan:
    item: s3json.Item
    target: Repository | None
    tasks: list[s3json.Item] = field(default_factory=list)
    jobs: list[tuple[s3json.Item, s3json.Item | None, SchedulerTask | None]] = \
        field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.item.errors or any(t.errors for t in self.tasks)
                    or any(j.errors for j, _, _ in self.jobs))

    def tree_record(self) -> dict[str, Any]:
        """The record as submitted, with `@error` on it and on its nested records."""
        record = dict(self.item.raw)
        if self.item.errors:
            record["@error"] = self.item.error_text
        if self.tasks:
            record["$_sync_task"] = [
                {**t.raw, **({"@error": t.error_text} if t.errors else {})}
                for t in self.tasks]
        if self.jobs:
            record["$_sync_job"] = [
                {**j.raw, **({"@error": j.error_text} if j.errors else {})}
                for j, _, _ in self.jobs]
        return record


def answer(records: int, created: list[int], updated: list[int]) -> dict[str, Any]:
    """Eden's import answer; `created` / `updated` only when something was."""
    out: dict[str, Any] = {"status": "success", "statuscode": "200", "records": records}
    if created:
        out["created"] = created
    if updated:
        out["updated"] = updated
    return out


def _repository_argument(args: str) -> int | None:
    """`args: "[<repository id>]"` of a sync_synchronize job."""
    try:
        value = json.loads(args or "[]")
    except ValueError:
        return None
    if isinstance(value, list) and value and str(value[0]).isdigit():
        return int(value[0])
    return None
