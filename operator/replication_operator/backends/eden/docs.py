"""Pure Eden logic: specs become sync repository / task / job bodies (S3JSON), Eden's
answers are checked and compared. No I/O here.

Shapes and quirks follow `BACKENDS.md` §4: writes only through `.s3json` (tasks nested
in the repository, a job as a `$_sync_job` link to a `$_scheduler_task`); the answer of
a write must be read (validation errors come back as HTTP 200 with `"status":
"failed"`, a body without the right key is a "successful" no-op, so `created` /
`updated` are checked); updating a job adds a duplicate link row, so a job is deleted
and re-created instead of updated.

Ownership: sync tasks have no free-form field, so the owner of what the operator made
is written into the name of the scheduler job (`task_name`), e.g.
`dbops.repl:team-a/orgs:org_organisation` (a Replication's job) or
`dbops.policy:team-a/nightly:org_organisation,org_office` (a ReplicationPolicy's job);
a task belongs to whoever's job names its resource.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from replication_operator.errors import PermanentBackendError, SpecError
from replication_operator.http import ServerSettings

REPOSITORY_PREFIX = "dbops."
NAME_LIMIT = 64  # sync_repository.name is a 64-character field in Eden's model
TASK_NAME_LIMIT = 512  # web2py scheduler_task.task_name
FUNCTION = "sync_synchronize"
APPLICATION = "eden/default"
MODES = {"pull": 1, "push": 2, "both": 3}
MODE_NAMES = {v: k for k, v in MODES.items()}
STRATEGIES = ("create", "update", "delete", "merge")
POLICIES = ("THIS", "OTHER", "NEWER", "MASTER")
DEFAULT_STRATEGY = ("create", "update")
DEFAULT_POLICY = "NEWER"
DEFAULT_INTERVAL = 300
MIN_INTERVAL = 10
DEFAULT_TIMEOUT = 600
DEFAULT_USER_ID = 1
OPTIONS = ("mode", "strategy", "updatePolicy", "conflictPolicy", "intervalSeconds",
           "timeoutSeconds", "userId")
RESOURCE_NAME = re.compile(r"^[a-z][a-z0-9]*_[a-z0-9_]+$")
# kinds of operator jobs: a Replication's, a policy's (its schedule, or a disabled
# placeholder for a manual policy), a one-shot run of a policy on request
REPLICATION, POLICY, RUN = "repl", "policy", "run"
_MARKER = re.compile(r"^dbops\.(?P<kind>repl|policy|run):(?P<owner>[^/:\s]+/[^:\s]+)"
                     r":(?P<resources>[a-z0-9_,]+)$")


@dataclass(frozen=True)
class SyncSettings:
    """What `spec.options` asks of Eden's sync, validated."""

    mode: int  # 1 pull, 2 push, 3 both
    strategy: tuple[str, ...] = DEFAULT_STRATEGY
    update_policy: str = DEFAULT_POLICY
    conflict_policy: str = DEFAULT_POLICY
    interval: int = DEFAULT_INTERVAL
    timeout: int = DEFAULT_TIMEOUT
    user_id: int = DEFAULT_USER_ID


def sync_settings(options: Mapping[str, Any], *, push: bool, field: str = "spec.options",
                  extra_strategy: Iterable[str] = (), without: Iterable[str] = ()
                  ) -> SyncSettings:
    """Validate `options` (names and values); `push` says which side the job is on."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise SpecError(f"{field}.{unknown[0]} is not an Eden sync option "
                        f"(allowed: {', '.join(OPTIONS)})")
    direction = "push" if push else "pull"
    mode_name = str(options.get("mode", direction))
    if mode_name not in MODES:
        raise SpecError(f"{field}.mode {mode_name!r} is not allowed (pull, push, both)")
    if mode_name != "both" and mode_name != direction:
        raise SpecError(f"{field}.mode {mode_name!r} contradicts spec.server: the job lives "
                        f"on the {'source' if push else 'target'} server, so it can only "
                        f"{direction} (or use mode both)")
    raw = options.get("strategy", list(DEFAULT_STRATEGY))
    if not isinstance(raw, list) or not raw or \
            any(not isinstance(s, str) or s not in STRATEGIES for s in raw):
        raise SpecError(f"{field}.strategy must be a non-empty list of "
                        f"{', '.join(STRATEGIES)}")
    strategy = [s for s in STRATEGIES if (s in raw or s in set(extra_strategy))
                and s not in set(without)]
    if not strategy:
        raise SpecError(f"{field}.strategy leaves nothing Eden may do")
    policies = {}
    for name in ("updatePolicy", "conflictPolicy"):
        value = str(options.get(name, DEFAULT_POLICY))
        if value not in POLICIES:
            raise SpecError(f"{field}.{name} {value!r} is not allowed ({', '.join(POLICIES)})")
        policies[name] = value
    numbers = {}
    for name, default, minimum in (("intervalSeconds", DEFAULT_INTERVAL, MIN_INTERVAL),
                                   ("timeoutSeconds", DEFAULT_TIMEOUT, 1),
                                   ("userId", DEFAULT_USER_ID, 1)):
        value = options.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise SpecError(f"{field}.{name} must be an integer of at least {minimum}")
        numbers[name] = value
    return SyncSettings(mode=MODES[mode_name], strategy=tuple(strategy),
                        update_policy=policies["updatePolicy"],
                        conflict_policy=policies["conflictPolicy"],
                        interval=numbers["intervalSeconds"], timeout=numbers["timeoutSeconds"],
                        user_id=numbers["userId"])


def check_resource_name(name: str, field: str) -> None:
    """Eden resources are table names (`prefix_name`); patterns are not."""
    if not RESOURCE_NAME.match(name):
        raise SpecError(f"{field} {name!r} is not an Eden resource name: a table name such "
                        f"as org_organisation (no patterns)")


def peer_credentials(peer: ServerSettings, side: str) -> tuple[str, str]:
    """The e-mail and password the job server logs in to the peer with."""
    creds = peer.credentials
    if peer.auth_type not in ("basic", "session") or not creds.username or not creds.password:
        raise SpecError(f"spec.{side}.server: Eden peers authenticate with basic auth "
                        f"(e-mail and password); DatabaseServer "
                        f"{peer.key.split('/')[-1]!r} has auth type {peer.auth_type}")
    return creds.username, creds.password


def repository_name(namespace: str, peer: str) -> str:
    """Deterministic, one per (job server, peer server) pair in a namespace:
    `dbops.<namespace>.<peer DatabaseServer>`; shortened with a digest past Eden's
    64 characters."""
    name = f"{REPOSITORY_PREFIX}{namespace}.{peer}"
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: NAME_LIMIT - 9]}-{digest}"


@dataclass(frozen=True)
class Marker:
    """The owner written into a job's name: kind, "namespace/name", resources."""

    kind: str
    owner: str
    resources: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"dbops.{self.kind}:{self.owner}:{','.join(self.resources)}"


def marker(kind: str, owner: str, resources: Sequence[str], field: str) -> Marker:
    made = Marker(kind, owner, tuple(resources))
    if len(made.text) > TASK_NAME_LIMIT:
        raise SpecError(f"{field}: too many resources for one Eden job (its name, which "
                        f"lists them, would pass {TASK_NAME_LIMIT} characters)")
    return made


def parse_marker(text: Any) -> Marker | None:
    match = _MARKER.match(str(text or ""))
    if match is None:
        return None
    return Marker(match["kind"], match["owner"], tuple(match["resources"].split(",")))


def key_from_external_name(external_name: str) -> str:
    """`namespace.name` (a Replication's default external name) → `namespace/name`;
    namespaces cannot contain dots."""
    namespace, _, name = external_name.partition(".")
    return f"{namespace}/{name}"


# --- bodies ------------------------------------------------------------------------

def task_body(resource: str, settings: SyncSettings) -> dict[str, Any]:
    return {"resource_name": resource, "mode": str(settings.mode),
            "strategy": {"@value": json.dumps(list(settings.strategy))},
            "update_policy": settings.update_policy,
            "conflict_policy": settings.conflict_policy}


def repository_fields(name: str, peer: ServerSettings, side: str) -> dict[str, Any]:
    username, password = peer_credentials(peer, side)
    return {"name": name, "apitype": "eden", "url": peer.base_url, "username": username,
            "password": password, "synchronise_uuids": "false"}


def create_repository_body(fields: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]
                           ) -> dict[str, Any]:
    return {"$_sync_repository": [{**fields, "$_sync_task": list(tasks)}]}


def update_repository_body(fields: Mapping[str, Any] | None,
                           tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    record: dict[str, Any] = dict(fields or {})
    if tasks:
        record["$_sync_task"] = list(tasks)
    return {"$_sync_repository": [record]}


@dataclass(frozen=True)
class JobSpec:
    """The scheduler job the operator wants for an owner."""

    marker: Marker
    period: int
    repeats: int  # 0 forever, 1 once
    enabled: bool
    timeout: int
    user_id: int

    def fields(self, repository_id: int) -> dict[str, Any]:
        """The compared fields, as Eden lists them (job.json)."""
        return {"task_name": self.marker.text, "function_name": FUNCTION,
                "args": f"[{repository_id}]", "vars": json.dumps({"user_id": self.user_id}),
                "period": self.period, "repeats": self.repeats, "timeout": self.timeout,
                "enabled": self.enabled}


def job_body(repository_uuid: str, repository_id: int, job: JobSpec, start: datetime
             ) -> dict[str, Any]:
    """A scheduler job for a repository: a `$_sync_job` link to a new `$_scheduler_task`
    (written with `PUT sync/repository.s3json`, the repository addressed by uuid)."""
    stamp = start.strftime("%Y-%m-%dT%H:%M:%S")
    fields = job.fields(repository_id)
    task = {"@tuid": "j", **{k: str(v).lower() if isinstance(v, bool) else str(v)
                             for k, v in fields.items()},
            "application_name": APPLICATION, "status": "QUEUED", "start_time": stamp,
            "next_run_time": stamp}
    return {"$_sync_repository": [{"@uuid": repository_uuid, "$_sync_job": [
        {"$k_scheduler_task_id": {"@resource": "scheduler_task", "@tuid": "j"}}]}],
        "$_scheduler_task": [task]}


# --- answers -------------------------------------------------------------------------

def _errors(tree: Any) -> list[str]:
    """Every `@error` text in an error tree (never any other value: the tree echoes
    the submitted records, password included)."""
    found: list[str] = []
    if isinstance(tree, Mapping):
        if isinstance(tree.get("@error"), str):
            found.append(tree["@error"])
        for key, value in tree.items():
            if key != "@error":
                found.extend(_errors(value))
    elif isinstance(tree, list):
        for value in tree:
            found.extend(_errors(value))
    return found


def check_write(answer: Any, *, expect: str | tuple[str, ...], what: str) -> list[int]:
    """The ids Eden says it `expect`-ed ("created" / "updated", or the first of several
    that it names); an error otherwise.

    Validation errors arrive as HTTP 200 with `"status": "failed"`; a write Eden did
    not understand is a "success" that created and updated nothing."""
    if not isinstance(answer, Mapping):
        raise PermanentBackendError(f"{what}: Eden answered without a JSON object",
                                    code="UnexpectedAnswer")
    if answer.get("status") != "success":
        details = "; ".join(dict.fromkeys(_errors(answer.get("tree"))))
        message = str(answer.get("message") or "failed")
        raise PermanentBackendError(
            f"{what}: Eden refused it ({message}{': ' + details if details else ''})",
            code="ValidationError", status=int(str(answer.get("statuscode") or 400))
            if str(answer.get("statuscode") or "").isdigit() else 400)
    keys = (expect,) if isinstance(expect, str) else expect
    ids: Any = next((answer[k] for k in keys if answer.get(k)), [])
    if not isinstance(ids, list) or not ids:
        raise PermanentBackendError(
            f"{what}: Eden answered success but {' or '.join(keys)} nothing (records: "
            f"{answer.get('records', 0)}); the write was ignored", code="NotWritten")
    return [int(i) for i in ids if str(i).isdigit()]


# --- comparison ------------------------------------------------------------------------

def strategy_of(value: Any) -> tuple[str, ...]:
    """A task's strategy as Eden lists it (a list, or a JSON / separated text)."""
    if isinstance(value, Mapping):
        value = value.get("@value")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else \
                [p for p in re.split(r"[|,]", text) if p.strip()]
        except ValueError:
            value = []
    items = {str(v).strip() for v in value or []} if isinstance(value, list) else set()
    return tuple(s for s in STRATEGIES if s in items)


def task_differences(task: Mapping[str, Any] | None, resource: str, settings: SyncSettings
                     ) -> list[str]:
    """Names of the task's fields that differ from the spec (never values)."""
    if task is None:
        return [f"task {resource} (missing)"]
    out = []
    if str(task.get("mode")) != str(settings.mode):
        out.append("task.mode")
    if strategy_of(task.get("strategy")) != settings.strategy:
        out.append("task.strategy")
    for name, want in (("update_policy", settings.update_policy),
                       ("conflict_policy", settings.conflict_policy)):
        if str(task.get(name) or "") != want:
            out.append(f"task.{name}")
    return out


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "t", "1", "yes", "on")


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def job_differences(rows: Sequence[Mapping[str, Any]], repository_id: int, job: JobSpec
                    ) -> list[str]:
    """Names of what differs between the owner's job rows and the wanted job."""
    if not rows:
        return ["job (missing)"]
    if len(rows) > 1:
        return ["job (duplicate link rows)"]
    row, want = rows[0], job.fields(repository_id)
    out = []
    for name, value in want.items():
        have = row.get(name)
        if name == "enabled":
            same = _as_bool(have) == value
        elif name in ("period", "repeats", "timeout"):
            same = _as_int(have) == value
        elif name == "vars":
            try:
                same = json.loads(str(have or "{}")) == json.loads(str(value))
            except ValueError:
                same = False
        else:
            same = str(have or "") == str(value)
        if not same:
            out.append(f"job.{name}")
    return out


def repository_differences(record: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """Names of the repository's fields that differ (`record` from an .s3json read:
    the password is compared here and nowhere kept)."""
    out = []
    for name in ("url", "username", "password", "apitype"):
        have = record.get(name)
        if isinstance(have, Mapping):
            have = have.get("@value")
        if str(have or "").rstrip("/") != str(want.get(name) or "").rstrip("/"):
            out.append(f"repository.{name}")
    return out
