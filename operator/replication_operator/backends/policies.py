"""Replication policies (the ReplicationPolicy kind), for every backend that has them.

A policy lives on one server and replicates between it and a remote server, on
demand, on a schedule or on events; each run is an execution with tasks. Harbor maps
this 1:1 (policy, registries for the remote side, executions).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from replication_operator.http import ServerSettings

# Execution states, as Harbor names them.
IN_PROGRESS, SUCCEED, FAILED, STOPPED = "InProgress", "Succeed", "Failed", "Stopped"


@dataclass(frozen=True)
class PolicyFilter:
    type: str  # tag | label | resource
    value: str
    decoration: str = ""  # matches | excludes (tag and label only)


@dataclass(frozen=True)
class Remote:
    """The other side of a policy, as the server holding the policy should reach it: a
    DatabaseServer, or a plain registry declared in the policy itself (`registry` of
    spec.source / spec.target: a Distribution, Docker Hub, Quay, ECR, ... endpoint the
    operator never talks to itself)."""

    settings: ServerSettings  # url, auth, credentials, TLS; `key` names what it stands for
    registry_type: str = "harbor"  # the kind of registry endpoint (Harbor's type names)
    declared_at: str = ""  # "" for a DatabaseServer, else the spec field declaring it
    secret: str = ""  # the Secret holding its credential (named in messages, never read)

    @property
    def name(self) -> str:
        """What a user calls it: the DatabaseServer's name, or the declared URL."""
        return self.settings.url if self.declared_at else self.settings.key.split("/")[-1]

    def credential_hint(self) -> str:
        if self.declared_at:
            where = f"Secret {self.secret!r} ({self.declared_at}.secretRef)" if self.secret \
                else f"{self.declared_at} (no secretRef: anonymous)"
            return where
        return f"the auth Secret of DatabaseServer {self.name!r}"


@dataclass(frozen=True)
class PolicyRequest:
    """What the user declared, resolved against the two servers."""

    key: str  # "namespace/name" of the ReplicationPolicy: the owner marker on the server
    name: str  # the policy's name on the server
    external_id: str  # the policy's id on the server, if known ("" before creation)
    adopted: bool  # spec.externalName given: the policy exists, take it over
    remote: Remote  # the other side of the replication
    push: bool  # True: this server → remote; False: remote → this server (pull)
    patterns: tuple[str, ...]
    dest_namespace: str = ""
    dest_namespace_replace_count: int = -1
    trigger: str = "manual"  # manual | scheduled | eventBased | continuous
    schedule: str = ""
    filters: tuple[PolicyFilter, ...] = ()
    replicate_deletion: bool = False
    override: bool = True
    enabled: bool = True
    speed: int = -1
    copy_by_chunk: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # backend extras (Eden sync options)


@dataclass(frozen=True)
class FailedTask:
    """A task of a failed execution, with the error line of its log."""

    source: str
    destination: str
    message: str

    def as_status(self) -> dict[str, str]:
        return {"source": self.source, "destination": self.destination,
                "message": self.message}


@dataclass(frozen=True)
class Execution:
    id: int
    status: str
    trigger: str = ""
    status_text: str = ""
    start_time: str | None = None
    end_time: str | None = None
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    in_progress: int = 0
    stopped: int = 0

    @property
    def running(self) -> bool:
        return self.status == IN_PROGRESS

    @property
    def tasks_finished(self) -> bool:
        """Every task has ended, but the server still says the execution runs. Harbor
        closes an execution 20-30 s after its last task, and sometimes never (BACKENDS.md
        §2a): the counts are the truth then, not the status."""
        return self.running and self.total > 0 and self.in_progress == 0 and \
            self.succeeded + self.failed + self.stopped >= self.total

    @property
    def settled(self) -> bool:
        """Nothing more will happen: finished, or every task has ended."""
        return not self.running or self.tasks_finished

    @property
    def outcome(self) -> str:
        """The status, or what the task counts say once every task has ended."""
        if not self.tasks_finished:
            return self.status
        return FAILED if self.failed else STOPPED if self.stopped else SUCCEED

    def as_status(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.id, "status": self.status, "trigger": self.trigger,
            "total": self.total, "succeeded": self.succeeded, "failed": self.failed,
            "inProgress": self.in_progress, "stopped": self.stopped}
        if self.tasks_finished:
            item["tasksFinished"] = True
        for key, value in (("statusText", self.status_text), ("startTime", self.start_time),
                           ("endTime", self.end_time)):
            if value:
                item[key] = value
        return item

    @classmethod
    def from_status(cls, item: dict[str, Any]) -> Execution:
        return cls(id=int(item["id"]), status=str(item.get("status", "")),
                   trigger=str(item.get("trigger", "")),
                   status_text=str(item.get("statusText", "")),
                   start_time=item.get("startTime"), end_time=item.get("endTime"),
                   total=int(item.get("total", 0)), succeeded=int(item.get("succeeded", 0)),
                   failed=int(item.get("failed", 0)), in_progress=int(item.get("inProgress", 0)),
                   stopped=int(item.get("stopped", 0)))


@dataclass
class PolicyObservation:
    """What the server says about one policy and its recent executions."""

    exists: bool
    external_id: str = ""
    name: str = ""
    up_to_date: bool = True
    differences: list[str] = field(default_factory=list)  # spec field names, never values
    owner: str | None = None  # the ReplicationPolicy ("ns/name") that made it, if marked
    provisioned: bool = False
    executions: list[Execution] = field(default_factory=list)  # newest first
    gone: set[int] = field(default_factory=set)  # executions the server no longer has
    registries: list[dict[str, Any]] = field(default_factory=list)  # [{server, id}]
    registry_actions: list[str] = field(default_factory=list)  # done while observing
    handle: dict[str, Any] = field(default_factory=dict)  # backend bookkeeping

    @classmethod
    def absent(cls) -> PolicyObservation:
        return cls(exists=False, up_to_date=False)


class PolicyDriver(Protocol):
    def validate(self, request: PolicyRequest) -> None:
        """Raise SpecError for what this server type cannot do."""
        ...

    async def observe_policy(self, request: PolicyRequest, *, max_age: float,
                             follow: Collection[int] = (),
                             executions_max_age: float | None = None) -> PolicyObservation:
        """`follow`: executions the caller saw running; each is looked up if the
        server's recent list no longer shows it. `executions_max_age`: a tighter bound
        for the list of executions alone (polled while one runs), where the server
        keeps them apart from the rest."""
        ...

    async def create_policy(self, request: PolicyRequest) -> str: ...

    async def update_policy(self, request: PolicyRequest, seen: PolicyObservation) -> None: ...

    async def delete_policy(self, name: str, external_id: str) -> list[str]:
        """Stop running executions (waiting a bounded time), remove the policy and
        whatever the operator made only for it (returned, by name)."""
        ...

    async def run_policy(self, external_id: str) -> int: ...

    async def failed_tasks(self, execution_id: int, limit: int) -> list[FailedTask]: ...
