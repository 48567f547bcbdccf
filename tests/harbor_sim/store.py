"""In-memory Harbor state and its rules: projects, artifacts, registries, replication
policies, executions, tasks and robot accounts. No HTTP here: the handlers in app.py
call these methods, and tests in the same process may call them directly.

Every public method takes the store's lock, so the HTTP thread and a test thread can use
one store at the same time. Time comes from one clock (monotonic, anchored to the wall
clock); task progress and scheduled triggers are brought up to date lazily by
`advance()`, which every public read calls first, so reads are always consistent.
"""

from __future__ import annotations

import math
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simkit.faults import Faults, RequestLog

from . import cron as cronlib
from .errors import (
    HarborError,
    bad_request,
    conflict,
    not_found,
    precondition,
)
from .matching import glob_match, is_literal

ROBOT_PREFIX = "robot$"
MASK = "*****"
LOCAL_REGISTRY_ID = 0
MAX_INT32 = 2**31 - 1
CRON_CATCH_UP_SECONDS = 300

# The adapters Harbor 2.12 registers (src/pkg/reg/manager.go); helm-hub and artifact-hub
# are gone. Any other type is an internal error (500) at create or ping.
REGISTRY_TYPES = frozenset({
    "harbor", "docker-hub", "docker-registry", "huawei-SWR", "google-gcr", "aws-ecr",
    "azure-acr", "ali-acr", "jfrog-artifactory", "quay", "gitlab", "dtr", "tencent-tcr",
    "github-ghcr", "volcengine-cr"})

_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")

# rbac.PoliciesMap["Project"] and ["System"]: what a robot permission may grant.
_PROJECT_ACCESS = {
    "log": {"list"}, "project": {"read", "delete", "update"},
    "metadata": {"read", "create", "delete", "list", "update"},
    "repository": {"read", "update", "delete", "list", "pull", "push"},
    "artifact": {"read", "create", "list", "delete"}, "scan": {"create", "read", "stop"},
    "tag": {"create", "list", "delete"}, "accessory": {"list"},
    "artifact-addition": {"read"}, "artifact-label": {"create", "delete"},
    "scanner": {"create", "read"},
    "preheat-policy": {"read", "create", "delete", "list", "update"},
    "immutable-tag": {"create", "delete", "list", "update"},
    "notification-policy": {"read", "create", "delete", "list", "update"},
    "tag-retention": {"read", "create", "delete", "list", "update"},
    "label": {"read", "create", "delete", "list", "update"}, "quota": {"read"},
}
_SYSTEM_ACCESS = {
    "audit-log": {"list"}, "preheat-instance": {"read", "create", "delete", "list", "update"},
    "project": {"list", "create"},
    "replication-policy": {"read", "create", "delete", "list", "update"},
    "replication": {"read", "create", "list"}, "replication-adapter": {"list"},
    "registry": {"read", "create", "delete", "list", "update"},
    "scan-all": {"read", "update", "stop", "create"}, "system-volumes": {"read"},
    "garbage-collection": {"read", "create", "list", "update", "stop"},
    "purge-audit": {"read", "create", "list", "update", "stop"},
    "jobservice-monitor": {"list", "stop"},
    "scanner": {"read", "create", "delete", "list", "update"},
    "label": {"read", "create", "delete", "update"}, "security-hub": {"read", "list"},
    "catalog": {"read"}, "quota": {"read", "list"},
}

FINAL_TASK_STATUSES = frozenset({"Succeed", "Failed", "Stopped"})


class Clock:
    """Monotonic time anchored to the wall clock, in Unix seconds."""

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0)


@dataclass
class Project:
    id: int
    name: str
    public: bool
    created: float
    updated: float


@dataclass
class Artifact:
    project: str
    repository: str  # full name, "library/nginx"
    tag: str
    digest: str
    pushed: float


@dataclass
class Registry:
    id: int
    name: str
    description: str
    type: str
    url: str
    insecure: bool
    credential_type: str
    access_key: str
    access_secret: str
    created: float
    updated: float


@dataclass
class Policy:
    id: int
    name: str
    description: str
    src_registry_id: int
    dest_registry_id: int
    dest_namespace: str
    dest_namespace_replace_count: int
    trigger: dict[str, Any] | None
    filters: list[dict[str, Any]]
    replicate_deletion: bool
    override: bool
    enabled: bool
    speed: int
    copy_by_chunk: bool
    creator: str
    created: float
    updated: float

    @property
    def trigger_type(self) -> str:
        return str(self.trigger.get("type", "")) if self.trigger else ""

    @property
    def cron(self) -> str:
        settings = (self.trigger or {}).get("trigger_settings") or {}
        return str(settings.get("cron") or "")

    @property
    def is_push(self) -> bool:
        return self.src_registry_id == LOCAL_REGISTRY_ID


@dataclass
class Task:
    id: int
    execution_id: int
    job_id: str
    operation: str
    resource_type: str
    repository: str
    tags: list[str]
    dst_repository: str
    src_resource: str
    dst_resource: str
    created: float
    pending_until: float
    run_until: float
    status: str = "Pending"
    started: float | None = None
    ended: float | None = None
    error: str | None = None


@dataclass
class Execution:
    id: int
    policy_id: int
    trigger: str
    started: float
    task_ids: list[int] = field(default_factory=list)
    final_status: str | None = None  # set when the execution ends without tasks
    status_text: str = ""
    ended: float | None = None
    stuck: bool = False  # never closed: InProgress for good, all tasks finished


@dataclass
class Robot:
    id: int
    name: str  # as stored: "<name>" (system) or "<project>+<name>" (project)
    description: str
    level: str
    project_id: int
    disabled: bool
    duration: int
    expires_at: int
    secret: str
    permissions: list[dict[str, Any]]
    created: float
    updated: float

    @property
    def full_name(self) -> str:
        return ROBOT_PREFIX + self.name


@dataclass
class Settings:
    task_seconds: float = 2.0
    check_registry_health: bool = True
    harbor_version: str = "v2.12.4-sim"
    # Harbor closes an execution only when its status is refreshed, 20-30 s after the
    # last task ended (BACKENDS.md §2a): the lag is drawn from [2/3, 1] x this.
    status_refresh_seconds: float = 30.0


def _random_secret() -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(32))
        if is_valid_secret(value):
            return value


def is_valid_secret(secret: str) -> bool:
    """robot.IsValidSec: 8-128 characters with a lower, an upper case letter and a digit."""
    return (8 <= len(secret) <= 128 and re.search(r"[a-z]", secret) is not None
            and re.search(r"[A-Z]", secret) is not None
            and re.search(r"\d", secret) is not None)


def validate_http_url(raw: str) -> str:
    """lib.ValidateHTTPURL: trim, default to http://, http(s) only, keep scheme/host/path."""
    value = raw.strip().rstrip("/")
    if not value:
        raise bad_request("empty string")
    if "://" not in value:
        value = "http://" + value
    scheme, _, rest = value.partition("://")
    if scheme not in ("http", "https"):
        raise bad_request(f"invalid HTTP scheme: {scheme}")
    host, _, path = rest.partition("/")
    host = host.split("@")[-1]
    if not host:
        raise bad_request(f"invalid URL: {raw}")
    rest_path = path.split("?")[0].split("#")[0]
    return f"{scheme}://{host}" + (f"/{rest_path}" if rest_path else "")


def _bool(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"parsing body body from \"\" failed, because json: cannot "
                          f"unmarshal {type(value).__name__} into Go struct field .{key} "
                          f"of type bool")
    return value


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"parsing body body from \"\" failed, because json: cannot "
                          f"unmarshal {type(value).__name__} into Go struct field .{key} "
                          f"of type string")
    return value


def _int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"parsing body body from \"\" failed, because json: cannot "
                          f"unmarshal {type(value).__name__} into Go struct field .{key} "
                          f"of type int64")
    return value


def _dict(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"parsing body body from \"\" failed, because json: cannot "
                          f"unmarshal {type(value).__name__} into Go struct field .{key}")
    return value


def _registry_id(body: dict[str, Any], key: str) -> int:
    value = _dict(body, key)
    if value is None:
        return LOCAL_REGISTRY_ID
    return _int(value, "id") or LOCAL_REGISTRY_ID


def replace_namespace(repository: str, namespace: str, replace_count: int) -> str:
    """flow.replaceNamespace: where a source repository lands on the destination."""
    if not namespace:
        return repository
    parts = repository.split("/")
    if replace_count < 0:
        prefix = namespace
    elif replace_count > len(parts) - 1:
        raise bad_request(f"the source repository {repository!r} contains only "
                          f"{len(parts) - 1} path components {parts[:-1]} excepting the "
                          f"last one, but the destination namespace flattening level is "
                          f"{replace_count}")
    else:
        prefix = "/".join([namespace, *parts[replace_count:-1]])
    return f"{prefix}/{parts[-1]}"


def resource_name(repository: str, count: int) -> str:
    """flow.getResourceName: `library/nginx [2 item(s) in total]`."""
    return f"{repository} [{count} item(s) in total]"


class Store:
    """All of one simulated Harbor's state. `url` is the simulator's own base URL (the
    local registry's URL in policies); set by the server once it has a port."""

    def __init__(self, username: str = "admin", password: str = "Harbor12345",
                 url: str = "http://127.0.0.1", clock: Clock | None = None) -> None:
        self._lock = threading.RLock()
        self.clock = clock or Clock()
        self.username = username
        self.password = password
        self.url = url
        self.settings = Settings()
        self.faults = Faults()
        self.requests = RequestLog()
        self.created = self.clock.now()
        # ids 1 and 2 went to Harbor's own jobs at start; tasks are shared the same way
        self._ids: dict[str, int] = {"execution": 2, "task": 6}
        self._stick_next = False
        self.projects: dict[int, Project] = {}
        self.artifacts: list[Artifact] = []
        self.repository_ids: dict[str, int] = {}
        self.registries: dict[int, Registry] = {}
        self.policies: dict[int, Policy] = {}
        self.executions: dict[int, Execution] = {}
        self.tasks: dict[int, Task] = {}
        self.robots: dict[int, Robot] = {}
        self.unreachable: set[str] = set()
        self.failure_patterns: list[str] = []
        self._sessions: set[str] = set()  # sids handed out
        self._csrf: dict[str, str] = {}  # _gorilla_csrf cookie → the token it stands for
        self._registry_tokens: dict[str, str] = {}  # token → subject ("" anonymous)
        self._cron_cursor = int(self.clock.now())
        self._crons: dict[int, cronlib.Cron] = {}
        self._add_project("library", public=True)

    # ----------------------------------------------------------------- internals

    def _next_id(self, kind: str) -> int:
        self._ids[kind] = self._ids.get(kind, 0) + 1
        return self._ids[kind]

    def _next_execution_id(self) -> int:
        """Execution ids are shared with Harbor's other jobs (GC, scans, retention...):
        a fresh Harbor's first replication execution had id 3 (BACKENDS.md §2a). The
        simulator lets "other jobs" take every fourth id, so ids have gaps."""
        execution_id = self._next_id("execution")
        if execution_id % 4 == 0:
            execution_id = self._next_id("execution")
        return execution_id

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def now(self) -> float:
        return self.clock.now()

    # ------------------------------------------------------------------ controls

    def set_task_seconds(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("task_seconds must not be negative")
        with self._lock:
            self.settings.task_seconds = seconds

    def set_registry_health_check(self, enabled: bool) -> None:
        with self._lock:
            self.settings.check_registry_health = enabled

    def mark_unreachable(self, url: str) -> None:
        """Registries with this URL are unhealthy; replications to/from them fail."""
        with self._lock:
            self.unreachable.add(url.rstrip("/"))

    def clear_unreachable(self, url: str | None = None) -> None:
        with self._lock:
            if url is None:
                self.unreachable.clear()
            else:
                self.unreachable.discard(url.rstrip("/"))

    def add_failure_pattern(self, pattern: str) -> None:
        """Tasks whose `repository` or `repository:tag` matches fail (glob or substring)."""
        with self._lock:
            self.failure_patterns.append(pattern)

    def clear_failure_patterns(self) -> None:
        with self._lock:
            self.failure_patterns.clear()

    def is_unreachable(self, url: str) -> bool:
        with self._lock:
            return url.rstrip("/") in self.unreachable

    def resume(self) -> None:
        """Called when the server (re)starts: a Harbor that was down fired no schedules."""
        with self._lock:
            self._cron_cursor = int(self.now())

    # ------------------------------------------------------------ sessions and tokens

    def new_session(self) -> str:
        """A session id as beego hands it out (32 hex)."""
        with self._lock:
            session = secrets.token_hex(16)
            self._sessions.add(session)
            return session

    def known_session(self, session: str) -> bool:
        with self._lock:
            return session in self._sessions

    def csrf_for(self, cookie: str | None) -> tuple[str, str]:
        """The `_gorilla_csrf` cookie (the given one if known, else a new one) and the
        token that a write must send with it."""
        with self._lock:
            if cookie is None or cookie not in self._csrf:
                cookie = secrets.token_urlsafe(24)
                self._csrf[cookie] = secrets.token_urlsafe(24)
            return cookie, self._csrf[cookie]

    def csrf_valid(self, cookie: str | None, token: str) -> bool:
        with self._lock:
            expected = self._csrf.get(cookie or "")
        return expected is not None and secrets.compare_digest(expected, token)

    def issue_registry_token(self, subject: str) -> str:
        """A registry token for `subject` (a user or robot name; "" for anonymous)."""
        with self._lock:
            token = secrets.token_urlsafe(32)
            self._registry_tokens[token] = subject
            return token

    def registry_token_subject(self, token: str) -> str:
        with self._lock:
            return self._registry_tokens.get(token.strip(), "")

    # ------------------------------------------------------------ time and jobs

    def advance(self) -> None:
        """Fire due schedules and move tasks along their timeline, up to now."""
        with self._lock:
            now = self.now()
            self._fire_schedules(now)
            for task in self.tasks.values():
                if task.status not in FINAL_TASK_STATUSES:
                    self._advance_task(task, now)

    def _fire_schedules(self, now: float) -> None:
        current = int(now)
        start = max(self._cron_cursor + 1, current - CRON_CATCH_UP_SECONDS)
        if start > current:
            return
        scheduled = [p for p in self.policies.values()
                     if p.enabled and p.trigger_type == "scheduled" and p.id in self._crons]
        self._cron_cursor = current
        if not scheduled:
            return
        for second in range(start, current + 1):
            moment = datetime.fromtimestamp(second, UTC)
            for policy in scheduled:
                if self._crons[policy.id].matches(moment):
                    self._start(policy, "scheduled", float(second))

    def _advance_task(self, task: Task, now: float) -> None:
        if now >= task.pending_until and task.started is None:
            task.status = "InProgress"
            task.started = task.pending_until
        if now >= task.run_until:
            task.ended = task.run_until
            task.error = self._task_error(task)
            task.status = "Failed" if task.error else "Succeed"

    def _task_error(self, task: Task) -> str | None:
        execution = self.executions[task.execution_id]
        policy = self.policies.get(execution.policy_id)
        if policy is not None:
            remote_id = policy.dest_registry_id if policy.is_push else policy.src_registry_id
            remote = self.registries.get(remote_id)
            if remote is not None and remote.url.rstrip("/") in self.unreachable:
                # a push to a destination that is down: the tasks are made and fail (only
                # a pull from a source that is down fails before any task)
                return (f"failed to check the existence of the manifest of artifact "
                        f"{task.dst_repository}:{','.join(task.tags)} on the destination "
                        f"registry: Get \"{remote.url}/v2/\": dial tcp: connect: "
                        f"connection refused")
        for pattern in self.failure_patterns:
            names = [task.repository] + [f"{task.repository}:{tag}" for tag in task.tags]
            for name in names:
                if glob_match(pattern, name) or pattern in name:
                    return (f"failed to copy {name}: simulated failure (pattern "
                            f"{pattern!r})")
        return None

    def _matching_artifacts(self, policy: Policy, only: Artifact | None = None
                            ) -> dict[str, list[str]]:
        """Local artifacts selected by the policy's filters, grouped by repository.
        Label and resource filters select everything (the simulator has no labels and
        only images)."""
        candidates = [only] if only is not None else self.artifacts
        selected: dict[str, list[str]] = {}
        for artifact in candidates:
            if self._filters_match(policy.filters, artifact.repository, artifact.tag):
                tags = selected.setdefault(artifact.repository, [])
                if artifact.tag not in tags:
                    tags.append(artifact.tag)
        return selected

    @staticmethod
    def _filters_match(filters: list[dict[str, Any]], repository: str, tag: str) -> bool:
        for item in filters:
            kind, value = item.get("type"), item.get("value")
            if kind == "name" and isinstance(value, str) and value:
                if not glob_match(value, repository):
                    return False
            elif kind == "tag" and isinstance(value, str) and value:
                hit = glob_match(value, tag)
                if item.get("decoration") == "excludes":
                    hit = not hit
                if not hit:
                    return False
        return True

    def _pull_resources(self, policy: Policy) -> dict[str, list[str]]:
        """A pull policy (remote source): one resource for a literal name filter, with
        the literal tag filter's tag or "latest"; nothing for a wildcard name."""
        name = next((f.get("value") for f in policy.filters if f.get("type") == "name"),
                    None)
        if not isinstance(name, str) or not name or not is_literal(name):
            return {}
        tag = next((f.get("value") for f in policy.filters if f.get("type") == "tag"
                    and f.get("decoration") != "excludes"), None)
        if not isinstance(tag, str) or not tag or not is_literal(tag):
            tag = "latest"
        return {name: [tag]}

    def _start(self, policy: Policy, trigger: str, at: float, only: Artifact | None = None,
               operation: str = "copy") -> Execution:
        if not policy.enabled:
            raise precondition(f"the policy {policy.id} is disabled")
        execution = Execution(self._next_execution_id(), policy.id, trigger, at,
                              stuck=self._stick_next)
        self._stick_next = False
        self.executions[execution.id] = execution
        if policy.is_push:
            resources = self._matching_artifacts(policy, only)
            remote = self.registries.get(policy.dest_registry_id)
        else:
            remote = self.registries.get(policy.src_registry_id)
            resources = {} if only is not None else self._pull_resources(policy)
            if remote is not None and remote.url.rstrip("/") in self.unreachable:
                return self._end_execution(
                    execution, "Failed", at, f"failed to fetch artifacts: Get "
                    f"\"{remote.url}/api/v2.0/projects\": dial tcp: connect: connection refused")
        if not resources:
            return self._end_execution(execution, "Succeed", at,
                                       "no resources need to be replicated")
        try:
            targets = {repo: replace_namespace(repo, policy.dest_namespace,
                                               policy.dest_namespace_replace_count)
                       for repo in resources}
        except HarborError as exc:
            return self._end_execution(execution, "Failed", at, exc.message)
        seconds = self.settings.task_seconds
        for repository, tags in resources.items():
            task = Task(
                id=self._next_id("task"), execution_id=execution.id,
                job_id=secrets.token_hex(12), operation=operation, resource_type="artifact",
                repository=repository, tags=list(tags), dst_repository=targets[repository],
                src_resource=resource_name(repository, len(tags)),
                dst_resource=resource_name(targets[repository], len(tags)),
                created=at, pending_until=at + seconds * 0.1, run_until=at + seconds)
            self.tasks[task.id] = task
            execution.task_ids.append(task.id)
            self._advance_task(task, self.now())
        return execution

    @staticmethod
    def _end_execution(execution: Execution, status: str, at: float, text: str
                       ) -> Execution:
        execution.final_status = status
        execution.status_text = text
        execution.ended = at
        return execution

    def execution_tasks(self, execution: Execution) -> list[Task]:
        return [self.tasks[i] for i in execution.task_ids if i in self.tasks]

    def _refreshed_after(self, moment: float) -> float:
        """The first status refresh at or after `moment` (a sweep every
        `status_refresh_seconds`, phased from the store's start)."""
        period = self.settings.status_refresh_seconds
        if period <= 0:
            return moment
        return self.created + math.ceil((moment - self.created) / period) * period

    def execution_status(self, execution: Execution) -> tuple[str, float | None]:
        """Harbor's rule: running while any task is pending/running; then Failed if any
        failed, Stopped if any stopped, else Succeed. End time: the last task's end.

        An execution with tasks is closed only by Harbor's periodic status refresh, 0-30 s
        after its last task ended (seen on Harbor 2.12.4; BACKENDS.md §2a says 20-30 s);
        until then, and for good when `stuck`, it is InProgress with a zero end time
        although its task counts say everything finished. One without tasks closes at
        once."""
        tasks = self.execution_tasks(execution)
        if execution.final_status is not None and not tasks:
            return execution.final_status, execution.ended
        statuses = {t.status for t in tasks}
        if statuses & {"Pending", "InProgress"}:
            return "InProgress", None
        ended = max((t.ended for t in tasks if t.ended is not None), default=execution.ended)
        if execution.stuck or (ended is not None and
                               self.now() < self._refreshed_after(ended)):
            return "InProgress", None
        if "Failed" in statuses:
            return "Failed", ended
        if "Stopped" in statuses:
            return "Stopped", ended
        return "Succeed", ended

    def task_log(self, task: Task) -> str:
        """A few plausible jobservice log lines for the task, as far as it has got."""
        execution = self.executions[task.execution_id]
        policy = self.policies.get(execution.policy_id)
        src = self._registry_view_url(policy.src_registry_id if policy else 0)
        dst = self._registry_view_url(policy.dest_registry_id if policy else 0)
        lines: list[str] = []

        def line(at: float | None, level: str, text: str) -> None:
            stamp = datetime.fromtimestamp(at or task.created, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            lines.append(f"{stamp} [{level}] [/controller/replication/transfer/image/"
                         f"transfer.go]: {text}")

        if task.started is None:
            return ""
        tags = ",".join(task.tags)
        line(task.started, "INFO", f"client for source registry [type: harbor, URL: {src}, "
             "insecure: true] created")
        line(task.started, "INFO", f"client for destination registry [type: harbor, URL: "
             f"{dst}, insecure: true] created")
        line(task.started, "INFO", f"copying {task.repository}:[{tags}](source registry) to "
             f"{task.dst_repository}:[{tags}](destination registry)...")
        for tag in task.tags:
            line(task.started, "INFO", f"copying {task.repository}:{tag}(source registry) "
                 f"to {task.dst_repository}:{tag}(destination registry)...")
        if task.status == "Succeed":
            for tag in task.tags:
                line(task.ended, "INFO", f"copy {task.repository}:{tag}(source registry) to "
                     f"{task.dst_repository}:{tag}(destination registry) completed")
            line(task.ended, "INFO", f"copy {task.repository}:[{tags}](source registry) to "
                 f"{task.dst_repository}:[{tags}](destination registry) completed")
        elif task.status == "Failed":
            line(task.ended, "ERROR", task.error or "failed")
        elif task.status == "Stopped":
            line(task.ended, "INFO", "the job is stopped")
        return "\n".join(lines) + "\n"

    def _registry_view_url(self, registry_id: int) -> str:
        if registry_id == LOCAL_REGISTRY_ID:
            return self.url
        registry = self.registries.get(registry_id)
        return registry.url if registry else ""

    # ----------------------------------------------------------------- projects

    def _add_project(self, name: str, public: bool) -> Project:
        now = self.now()
        project = Project(self._next_id("project"), name, public, now, now)
        self.projects[project.id] = project
        return project

    def project_by_name(self, name: str) -> Project | None:
        with self._lock:
            return next((p for p in self.projects.values() if p.name == name), None)

    def project_by_ref(self, ref: str, is_name: bool) -> Project | None:
        """`project_name_or_id`: an id unless X-Is-Resource-Name is true or it is no int."""
        with self._lock:
            if not is_name and ref.isdigit():
                return self.projects.get(int(ref))
            return self.project_by_name(ref)

    def create_project(self, body: dict[str, Any]) -> Project:
        with self._lock:
            name = _str(body, "project_name").strip()
            if not name or len(name) > 255 or not _NAME_RE.match(name):
                raise bad_request("project name is not in lower case or contains illegal "
                                  "characters")
            if self.project_by_name(name) is not None:
                raise conflict(f"The project named {name} already exists")
            metadata = _dict(body, "metadata") or {}
            public_value = metadata.get("public")
            public = (str(public_value).lower() == "true" if public_value is not None
                      else bool(body.get("public")))
            return self._add_project(name, public)

    def ensure_project(self, name: str, public: bool = False) -> Project:
        with self._lock:
            return self.project_by_name(name) or self._add_project(name, public)

    def repositories(self, project: Project) -> list[dict[str, Any]]:
        """Repositories of the project's artifacts, as Harbor's Repository model fields."""
        with self._lock:
            result: dict[str, dict[str, Any]] = {}
            for artifact in self.artifacts:
                if artifact.project != project.name:
                    continue
                entry = result.setdefault(artifact.repository, {
                    "id": self.repository_ids[artifact.repository], "project_id": project.id,
                    "name": artifact.repository, "artifact_count": 0, "pull_count": 0,
                    "creation_time": artifact.pushed, "update_time": artifact.pushed})
                entry["artifact_count"] += 1
                entry["creation_time"] = min(entry["creation_time"], artifact.pushed)
                entry["update_time"] = max(entry["update_time"], artifact.pushed)
            return list(result.values())

    def repo_count(self, project: Project) -> int:
        with self._lock:
            return len({a.repository for a in self.artifacts if a.project == project.name})

    # ---------------------------------------------------------------- artifacts

    def push_artifact(self, project: str, repository: str, tag: str) -> list[Execution]:
        """An artifact pushed to the local Harbor (the project is created if needed);
        fires the enabled event_based push policies whose filters match. `repository`
        may be given with or without the project prefix."""
        with self._lock:
            self.advance()
            if not _NAME_RE.match(project):
                raise bad_request(f"invalid project name: {project}")
            full = repository if repository.startswith(project + "/") else \
                f"{project}/{repository}"
            if not _REPOSITORY_RE.match(full) or not tag:
                raise bad_request(f"invalid artifact: {full}:{tag}")
            self.ensure_project(project)
            self.repository_ids.setdefault(full, self._next_id("repository"))
            artifact = next((a for a in self.artifacts
                             if a.repository == full and a.tag == tag), None)
            if artifact is None:
                artifact = Artifact(project, full, tag, "sha256:" + secrets.token_hex(32),
                                    self.now())
                self.artifacts.append(artifact)
            else:
                artifact.pushed = self.now()
            return self._fire_events(artifact, "copy")

    def delete_artifact(self, project: str, repository: str, tag: str) -> list[Execution]:
        """Deletes a local artifact; fires event_based policies that replicate deletion."""
        with self._lock:
            self.advance()
            full = repository if repository.startswith(project + "/") else \
                f"{project}/{repository}"
            artifact = next((a for a in self.artifacts
                             if a.repository == full and a.tag == tag), None)
            if artifact is None:
                raise not_found(f"artifact {full}:{tag} not found")
            self.artifacts.remove(artifact)
            return self._fire_events(artifact, "deletion")

    def _fire_events(self, artifact: Artifact, operation: str) -> list[Execution]:
        started = []
        for policy in sorted(self.policies.values(), key=lambda p: p.id):
            if not (policy.enabled and policy.trigger_type == "event_based" and policy.is_push):
                continue
            if operation == "deletion" and not policy.replicate_deletion:
                continue
            if not self._matching_artifacts(policy, artifact):
                continue
            started.append(self._start(policy, "event_based", self.now(), artifact,
                                       operation))
        return started

    # --------------------------------------------------------------- registries

    def get_registry(self, registry_id: int) -> Registry:
        with self._lock:
            registry = self.registries.get(registry_id)
            if registry is None:
                raise not_found(f"registry {registry_id} not found")
            return registry

    def prepare_registry(self, body: dict[str, Any], base: Registry | None = None
                         ) -> Registry:
        """Validate a registry as the registry controller does (name, URL, adapter type),
        except the health check, which needs the network (app.py does it)."""
        with self._lock:
            now = self.now()
            if base is None:
                credential = _dict(body, "credential") or {}
                registry = Registry(
                    id=0, name=_str(body, "name"), description=_str(body, "description"),
                    type=_str(body, "type"), url=_str(body, "url"),
                    insecure=_bool(body, "insecure"),
                    credential_type=_str(credential, "type"),
                    access_key=_str(credential, "access_key"),
                    access_secret=_str(credential, "access_secret"), created=now, updated=now)
            else:
                registry = Registry(**vars(base))
                registry.updated = now
                for key in ("name", "description", "url"):
                    if body.get(key) is not None:
                        setattr(registry, key, _str(body, key))
                if body.get("insecure") is not None:
                    registry.insecure = _bool(body, "insecure")
                if body.get("credential_type") is not None:
                    registry.credential_type = _str(body, "credential_type")
                if body.get("access_key") is not None:
                    registry.access_key = _str(body, "access_key")
                if body.get("access_secret") is not None:
                    registry.access_secret = _str(body, "access_secret")
            if not registry.name:
                raise bad_request("name cannot be empty")
            if len(registry.name) > 64:
                raise bad_request("the max length of name is 64")
            registry.url = validate_http_url(registry.url)
            if registry.type not in REGISTRY_TYPES:
                # adapter.GetFactory's plain error becomes a 500 in Harbor
                raise HarborError("UNKNOWN", "internal server error")
            if not registry.access_key:
                registry.credential_type = registry.access_secret = ""
            elif not registry.credential_type:
                registry.credential_type = "basic"
            return registry

    def save_registry(self, registry: Registry) -> Registry:
        with self._lock:
            clash = next((r for r in self.registries.values()
                          if r.name == registry.name and r.id != registry.id), None)
            if clash is not None:
                raise conflict(f"registry {registry.name} already exists")
            if registry.id == 0:
                registry.id = self._next_id("registry")
            elif registry.id not in self.registries:
                raise not_found(f"registry {registry.id} not found")
            # Harbor lists registries in the database's order: an updated row moves last
            self.registries.pop(registry.id, None)
            self.registries[registry.id] = registry
            return registry

    def delete_registry(self, registry_id: int) -> None:
        with self._lock:
            if any(registry_id in (p.src_registry_id, p.dest_registry_id)
                   for p in self.policies.values()):
                raise precondition(f"the registry {registry_id} is referenced by "
                                   "replication policies, cannot delete it")
            if self.registries.pop(registry_id, None) is None:
                raise not_found(f"registry {registry_id} not found")

    def registry_status(self, registry: Registry) -> str:
        return "unhealthy" if registry.url.rstrip("/") in self.unreachable else "healthy"

    # ----------------------------------------------------------------- policies

    def get_policy(self, policy_id: int) -> Policy:
        with self._lock:
            policy = self.policies.get(policy_id)
            if policy is None:
                raise not_found(f"policy {policy_id} not found")
            return policy

    def _policy_from_body(self, body: dict[str, Any], policy_id: int, creator: str,
                          created: float) -> tuple[Policy, cronlib.Cron | None]:
        """The handler's field mapping and the controller's validation, in Harbor's order.
        `replicate_deletion` is taken from the deprecated `deletion` (Harbor's handler)."""
        replace_count = _int(body, "dest_namespace_replace_count")
        speed = _int(body, "speed")
        trigger = _dict(body, "trigger")
        stored_trigger: dict[str, Any] | None = None
        if trigger is not None:
            stored_trigger = {"type": _str(trigger, "type")}
            settings = _dict(trigger, "trigger_settings")
            if settings is not None:
                stored_trigger["trigger_settings"] = {"cron": _str(settings, "cron")}
        raw_filters = body.get("filters") or []
        if not isinstance(raw_filters, list):
            raise bad_request("parsing policy body from \"\" failed, because json: cannot "
                              "unmarshal into Go struct field .filters")
        filters = []
        for item in raw_filters:
            if not isinstance(item, dict):
                raise bad_request("invalid filter")
            stored = {"type": _str(item, "type"), "value": item.get("value")}
            if item.get("decoration"):
                stored["decoration"] = _str(item, "decoration")
            filters.append(stored)
        now = self.now()
        policy = Policy(
            id=policy_id, name=_str(body, "name"), description=_str(body, "description"),
            src_registry_id=_registry_id(body, "src_registry"),
            dest_registry_id=_registry_id(body, "dest_registry"),
            dest_namespace=_str(body, "dest_namespace"),
            dest_namespace_replace_count=-1 if replace_count is None else replace_count,
            trigger=stored_trigger, filters=filters,
            replicate_deletion=_bool(body, "deletion"), override=_bool(body, "override"),
            enabled=_bool(body, "enabled"), speed=max(speed or 0, 0),
            copy_by_chunk=_bool(body, "copy_by_chunk"), creator=creator,
            created=created, updated=now)
        # model.Policy.Validate
        if not policy.name:
            raise bad_request("empty name")
        if (policy.src_registry_id != 0) == (policy.dest_registry_id != 0):
            raise bad_request("either src_registry or dest_registry should be empty and the "
                              "other one shouldn't be empty")
        for item in policy.filters:
            self._validate_filter(item)
        if policy.dest_namespace and not _REPOSITORY_RE.match(policy.dest_namespace):
            raise bad_request(f"invalid destination namespace: {policy.dest_namespace}")
        parsed: cronlib.Cron | None = None
        if policy.trigger is not None:
            kind = policy.trigger_type
            if kind == "scheduled":
                if not policy.cron:
                    raise bad_request("the cron string cannot be empty when the trigger type "
                                      "is scheduled")
                try:
                    parsed = cronlib.parse(policy.cron)
                except cronlib.CronError as exc:
                    raise bad_request(f"invalid cron string for scheduled trigger: "
                                      f"{policy.cron}") from exc
                # controller/replication/model: split on single spaces, as Harbor does
                cron_parts = policy.cron.split(" ")
                if cron_parts[0] != "0":
                    raise bad_request("the 1st field (indicating Seconds of time) of the "
                                      "cron setting must be 0")
                if len(cron_parts) > 1 and cron_parts[1] == "*":
                    raise bad_request("* is not allowed for the Minutes field of the cron "
                                      "setting of replication policy")
            elif kind not in ("manual", "event_based"):
                raise bad_request("invalid trigger type")
        # controller.validatePolicy: the registries must exist
        for registry_id in (policy.src_registry_id, policy.dest_registry_id):
            if registry_id != LOCAL_REGISTRY_ID and registry_id not in self.registries:
                raise not_found(f"registry {registry_id} not found")
        return policy, parsed

    @staticmethod
    def _validate_filter(item: dict[str, Any]) -> None:
        """reg/model.Filter.Validate."""
        kind, value, decoration = item["type"], item["value"], item.get("decoration", "")
        if kind in ("resource", "name", "tag"):
            if not isinstance(value, str):
                raise bad_request("the type of filter value isn't string")
            if kind == "resource" and value not in ("artifact", "image"):
                raise bad_request(f"invalid resource filter: {value}")
            if kind in ("name", "resource") and decoration:
                raise bad_request("only tag and label filter support decoration")
        elif kind == "label":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad_request("the type of label filter value isn't string slice")
        else:
            raise bad_request("invalid filter type")
        if decoration and decoration not in ("matches", "excludes"):
            raise bad_request(f"invalid filter decoration, :{decoration}")

    def create_policy(self, body: dict[str, Any], creator: str = "admin") -> Policy:
        with self._lock:
            self.advance()
            policy, parsed = self._policy_from_body(body, 0, creator, self.now())
            if any(p.name == policy.name for p in self.policies.values()):
                raise conflict(f"policy {policy.name} already exists")
            policy.id = self._next_id("policy")
            self.policies[policy.id] = policy
            self._schedule(policy, parsed)
            return policy

    def update_policy(self, policy_id: int, body: dict[str, Any]) -> Policy:
        """PUT is a full replace: omitted fields take their zero values."""
        with self._lock:
            self.advance()
            current = self.policies.get(policy_id)
            created = current.created if current else self.now()
            creator = current.creator if current else ""
            policy, parsed = self._policy_from_body(body, policy_id, creator, created)
            if current is None:
                raise not_found(f"replication policy {policy_id} not found")
            if any(p.name == policy.name and p.id != policy_id
                   for p in self.policies.values()):
                raise conflict(f"policy {policy.name} already exists")
            self.policies[policy_id] = policy
            self._schedule(policy, parsed)
            return policy

    def _schedule(self, policy: Policy, parsed: cronlib.Cron | None) -> None:
        self._crons.pop(policy.id, None)
        if parsed is not None:
            self._crons[policy.id] = parsed

    def delete_policy(self, policy_id: int) -> None:
        with self._lock:
            self.advance()
            mine = [e for e in self.executions.values() if e.policy_id == policy_id]
            if any(self.execution_status(e)[0] == "InProgress" for e in mine):
                raise precondition("contains executions that aren't in final status, stop "
                                   "the execution first")
            if policy_id not in self.policies:
                raise not_found(f"replication policy {policy_id} not found")
            for execution in mine:
                for task_id in execution.task_ids:
                    self.tasks.pop(task_id, None)
                del self.executions[execution.id]
            del self.policies[policy_id]
            self._crons.pop(policy_id, None)

    # --------------------------------------------------------------- executions

    def start_execution(self, policy_id: int, trigger: str = "manual") -> Execution:
        with self._lock:
            self.advance()
            policy = self.policies.get(policy_id)
            if policy is None:
                raise not_found(f"policy {policy_id} not found")
            return self._start(policy, trigger, self.now())

    def get_execution(self, execution_id: int) -> Execution:
        with self._lock:
            self.advance()
            execution = self.executions.get(execution_id)
            if execution is None:
                raise not_found(f"replication execution {execution_id} not found")
            return execution

    def stop_execution(self, execution_id: int) -> Execution:
        """Running tasks become Stopped; stopping a finished execution changes nothing."""
        with self._lock:
            execution = self.get_execution(execution_id)
            now = self.now()
            tasks = self.execution_tasks(execution)
            if not tasks and execution.final_status is None:
                self._end_execution(execution, "Stopped", now, "")
            for task in tasks:
                if task.status not in FINAL_TASK_STATUSES:
                    task.status = "Stopped"
                    task.ended = now
            return execution

    def stick_next_execution(self) -> None:
        """The next execution started is never closed (InProgress for good once its
        tasks have finished), as seen on a real Harbor (BACKENDS.md §2a)."""
        with self._lock:
            self._stick_next = True

    def set_stuck(self, execution_id: int, stuck: bool) -> None:
        with self._lock:
            self.get_execution(execution_id).stuck = stuck

    def release_stuck(self) -> None:
        with self._lock:
            self._stick_next = False
            for execution in self.executions.values():
                execution.stuck = False

    def set_status_refresh_seconds(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("status_refresh_seconds must not be negative")
        with self._lock:
            self.settings.status_refresh_seconds = seconds

    def get_task(self, execution_id: int, task_id: int) -> Task:
        with self._lock:
            execution = self.get_execution(execution_id)
            task = self.tasks.get(task_id)
            if task is None:
                raise not_found(f"replication task {task_id} not found")
            if task.execution_id != execution.id:
                raise not_found(f"execution {execution_id} contains no task with ID {task_id}")
            return task

    # ------------------------------------------------------------------- robots

    def _project_or_404(self, name: str) -> Project:
        project = self.project_by_name(name)
        if project is None:
            raise not_found(f"project {name} not found")
        return project

    @staticmethod
    def _parse_permissions(raw: Any) -> list[dict[str, Any]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise bad_request("parsing robot body from \"\" failed: permissions")
        result = []
        for item in raw:
            if not isinstance(item, dict):
                raise bad_request("parsing robot body from \"\" failed: permissions")
            access = []
            for entry in item.get("access") or []:
                if not isinstance(entry, dict):
                    raise bad_request("parsing robot body from \"\" failed: access")
                kept = {"resource": _str(entry, "resource"), "action": _str(entry, "action")}
                if entry.get("effect"):
                    kept["effect"] = _str(entry, "effect")
                access.append(kept)
            result.append({"kind": _str(item, "kind"), "namespace": _str(item, "namespace"),
                           "access": access})
        return result

    @staticmethod
    def _validate_robot(duration: int, level: str, permissions: list[dict[str, Any]]) -> None:
        """robotAPI.validate."""
        if not (duration == -1 or 0 < duration < MAX_INT32):
            raise bad_request(f"bad request error duration input: {duration}, duration must "
                              "be either -1(Never) or a positive integer")
        if level not in ("system", "project"):
            raise bad_request(f"bad request error level input: {level}")
        if not permissions:
            raise bad_request("bad request empty permission")
        if any(not p["access"] for p in permissions):
            raise bad_request("bad request empty access")
        if level == "project" and len(permissions) > 1:
            raise bad_request("bad request permission")
        for perm in permissions:
            table = {"system": _SYSTEM_ACCESS, "project": _PROJECT_ACCESS}.get(perm["kind"])
            if table is None:
                raise bad_request(f"bad request permission level: {perm['kind']}")
            for access in perm["access"]:
                if access["action"] not in table.get(access["resource"], set()):
                    raise bad_request(f"bad request permission: {access['resource']}:"
                                      f"{access['action']}")

    def _check_scopes(self, permissions: list[dict[str, Any]]) -> None:
        """robot controller toScope: system needs namespace "/", project an existing one."""
        for perm in permissions:
            if perm["kind"] == "system" and perm["namespace"] != "/":
                raise bad_request("unknown namespace")
            if perm["kind"] == "project" and perm["namespace"] != "*":
                self._project_or_404(perm["namespace"])

    def create_robot(self, body: dict[str, Any]) -> tuple[Robot, str]:
        """POST /robots: the secret is generated (Harbor ignores a given one) and is
        returned only here."""
        with self._lock:
            name = _str(body, "name")
            if not _NAME_RE.match(name):
                raise bad_request("robot name is not in lower case or contains illegal "
                                  "characters")
            duration = _int(body, "duration") or 0
            level = _str(body, "level")
            permissions = self._parse_permissions(body.get("permissions"))
            self._validate_robot(duration, level, permissions)
            project_id = 0
            stored_name = name
            if level == "project":
                project = self.project_by_name(permissions[0]["namespace"])
                if project is None:
                    raise not_found(f"project {permissions[0]['namespace']} not found")
                project_id = project.id
                stored_name = f"{project.name}+{name}"
            self._check_scopes(permissions)
            if any(r.name == stored_name for r in self.robots.values()):
                raise conflict(f"robot account {ROBOT_PREFIX}{stored_name} already exists")
            now = self.now()
            expires = -1 if duration == -1 else int(now) + duration * 86400
            secret = _random_secret()
            robot = Robot(self._next_id("robot"), stored_name, _str(body, "description"),
                          level, project_id, _bool(body, "disable"), duration, expires,
                          secret, permissions, now, now)
            self.robots[robot.id] = robot
            return robot, secret

    def get_robot(self, robot_id: int) -> Robot:
        with self._lock:
            robot = self.robots.get(robot_id)
            if robot is None:
                raise not_found(f"robot {robot_id} not found")
            return robot

    def update_robot(self, robot_id: int, body: dict[str, Any]) -> Robot:
        """PUT /robots/{id} (updateV2Robot): description, disable, duration and
        permissions change; name, level and project cannot."""
        with self._lock:
            robot = self.get_robot(robot_id)
            duration = _int(body, "duration")
            if duration is None:
                duration = robot.duration
            level = _str(body, "level")
            permissions = self._parse_permissions(body.get("permissions"))
            self._validate_robot(duration, level, permissions)
            if robot.level != "system":
                project = self.project_by_name(permissions[0]["namespace"])
                if project is None:
                    raise not_found(f"project {permissions[0]['namespace']} not found")
                if project.id != robot.project_id:
                    raise bad_request("cannot update the project id of robot")
            elif level == "project" and self.project_by_name(permissions[0]["namespace"]) \
                    is None:
                raise not_found(f"project {permissions[0]['namespace']} not found")
            if level != robot.level or _str(body, "name") != robot.full_name:
                raise bad_request("cannot update the level or name of robot")
            self._check_scopes(permissions)
            if duration != robot.duration:
                robot.duration = duration
                robot.expires_at = -1 if duration == -1 else \
                    int(robot.created) + duration * 86400
            robot.description = _str(body, "description")
            robot.disabled = _bool(body, "disable")
            robot.permissions = permissions
            robot.updated = self.now()
            return robot

    def refresh_robot_secret(self, robot_id: int, secret: str | None) -> str | None:
        """PATCH /robots/{id}: no secret → a new random one, returned; a given one must
        be complex enough and is not echoed back (Harbor answers `{}`)."""
        with self._lock:
            robot = self.get_robot(robot_id)
            if secret:
                if not is_valid_secret(secret):
                    raise bad_request("the secret must be 8-128, inclusively, characters long "
                                      "with at least 1 uppercase letter, 1 lowercase letter "
                                      "and 1 number")
                robot.secret = secret
                robot.updated = self.now()
                return None
            robot.secret = _random_secret()
            robot.updated = self.now()
            return robot.secret

    def delete_robot(self, robot_id: int) -> None:
        with self._lock:
            if self.robots.pop(robot_id, None) is None:
                raise not_found(f"robot {robot_id} not found")

    def authenticate_robot(self, username: str, secret: str) -> Robot | None:
        """The robot with this full name and current secret, if enabled and unexpired."""
        with self._lock:
            if not username.startswith(ROBOT_PREFIX):
                return None
            name = username[len(ROBOT_PREFIX):]
            robot = next((r for r in self.robots.values() if r.name == name), None)
            if robot is None or robot.disabled or not secrets.compare_digest(
                    robot.secret.encode(), secret.encode()):
                return None
            if robot.expires_at != -1 and self.now() >= robot.expires_at:
                return None
            return robot

    @staticmethod
    def robot_may(robot: Robot, project: Project, resource: str, action: str) -> bool:
        """Whether the robot's permissions allow `resource:action` in the project (as
        Harbor's RBAC evaluates a project-kind permission). Reading the project itself is
        `project:read`: a robot with repository pull only gets 403 on GET /projects/{name}
        (BACKENDS.md §2a)."""
        for perm in robot.permissions:
            if perm["kind"] != "project" or perm["namespace"] not in ("*", project.name):
                continue
            if any(a["resource"] in (resource, "*") and a["action"] in (action, "*")
                   and a.get("effect", "allow") != "deny" for a in perm["access"]):
                return True
        return False

    @staticmethod
    def robot_has_any_permission(robot: Robot, project: Project) -> bool:
        return any(perm["kind"] == "project" and perm["namespace"] in ("*", project.name)
                   and perm["access"] for perm in robot.permissions)

    @classmethod
    def robot_can_pull(cls, robot: Robot, project: Project) -> bool:
        return cls.robot_may(robot, project, "repository", "pull")

    # -------------------------------------------------------------------- state

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able dump of everything, secrets masked (GET /_sim/state)."""
        with self._lock:
            self.advance()

            def plain(obj: Any, hide: Iterable[str] = ()) -> dict[str, Any]:
                data = dict(vars(obj))
                for key in hide:
                    if data.get(key):
                        data[key] = MASK
                return data

            return {
                "url": self.url, "username": self.username,
                "settings": vars(self.settings).copy(),
                "projects": [plain(p) for p in self.projects.values()],
                "artifacts": [plain(a) for a in self.artifacts],
                "registries": [plain(r, ["access_secret"]) for r in self.registries.values()],
                "policies": [plain(p) for p in self.policies.values()],
                "executions": [{**plain(e), "status": self.execution_status(e)[0]}
                               for e in self.executions.values()],
                "tasks": [plain(t) for t in self.tasks.values()],
                "robots": [plain(r, ["secret"]) for r in self.robots.values()],
                "unreachable": sorted(self.unreachable),
                "failure_patterns": list(self.failure_patterns),
                **self.faults.snapshot(),
            }

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` under the store lock (several reads that must agree)."""
        with self._lock:
            self.advance()
            return fn()
