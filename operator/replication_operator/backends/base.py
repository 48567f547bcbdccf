"""The protocol every backend speaks, shaped like Crossplane's external client.

For each kind of thing on a server: `observe` (does it exist, does it match the
request, what state is it in), `create`, `update`, `delete`. Reconcile decides from
the observation which verb to call, the same way for every backend.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from replication_operator.backends.tokens import TokenDriver
from replication_operator.errors import SpecError
from replication_operator.http import ServerConnection, ServerSettings


def refuse_outside(given: Iterable[str], allowed: Collection[str], field: str, why: str
                   ) -> None:
    """SpecError naming the first of `given` that is not `allowed`, and what is."""
    outside = sorted(set(given) - set(allowed))
    if outside:
        raise SpecError(f"{field}.{outside[0]} {why} (allowed: {', '.join(sorted(allowed))})")


@dataclass(frozen=True)
class Endpoint:
    """One side of a replication: a server and a database (db / bucket / resource)."""

    server: ServerSettings
    database: str


@dataclass(frozen=True)
class ReplicationRequest:
    """What the user declared, resolved against servers and credentials."""

    key: str  # "namespace/name" of the Replication: the owner marker on the server
    external_name: str
    source: Endpoint
    target: Endpoint
    continuous: bool = True
    create_target: bool = False
    suspend: bool = False
    filter: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    adopted: bool = False  # externalName given: the job exists already, take it over
    retiring: str = ""  # a job this one replaced, still draining (status.retiring)
    rotated: bool = False  # a Token's credential changed (servers may not show it)
    run_id: str = ""  # spec.runId: a new value runs a one-shot job again (CouchDB)


@dataclass
class Progress:
    docs_read: int | None = None
    docs_written: int | None = None
    doc_write_failures: int | None = None
    changes_pending: int | None = None
    pending_records: int | None = None

    def as_status(self) -> dict[str, int]:
        pairs = {
            "docsRead": self.docs_read,
            "docsWritten": self.docs_written,
            "docWriteFailures": self.doc_write_failures,
            "changesPending": self.changes_pending,
            "pendingRecords": self.pending_records,
        }
        return {k: int(v) for k, v in pairs.items() if v is not None}


# Phases, as in the API (status.phase).
PENDING, RUNNING, COMPLETED, SUSPENDED, FAILED, ERROR = (
    "Pending", "Running", "Completed", "Suspended", "Failed", "Error")


@dataclass
class Observation:
    """What the server says about one replication job."""

    exists: bool
    up_to_date: bool = True
    differences: list[str] = field(default_factory=list)  # field names, never values
    phase: str = PENDING
    reason: str = ""
    message: str = ""
    progress: Progress = field(default_factory=Progress)
    started_at: str | None = None
    completed_at: str | None = None
    last_sync: str | None = None
    owner: str | None = None  # the Replication ("ns/name") that made it, if marked
    provisioned: bool = False  # read-only on the server: never written
    mode: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    handle: dict[str, Any] = field(default_factory=dict)  # backend bookkeeping (_rev, ...)
    retired: bool = False  # the request's `retiring` job has drained and is gone

    @classmethod
    def absent(cls) -> Observation:
        return cls(exists=False, up_to_date=False)


class ReplicationDriver(Protocol):
    """Replication jobs on one server."""

    #: True where a job cannot be paused, so `suspend` removes it from the server.
    suspend_deletes: bool
    #: True where create/update/delete put their own result into the stored server
    #: state, so the observation right after a write needs no list of its own.
    writes_through: bool

    def default_name(self, namespace: str, name: str) -> str:
        """The job's name on the server when the spec gives none: deterministic, so a
        restart in the middle of a create never makes a duplicate."""
        ...

    def validate(self, request: ReplicationRequest) -> None:
        """Raise SpecError for what this server type cannot do."""
        ...

    async def observe(self, request: ReplicationRequest, *, max_age: float) -> Observation: ...

    async def create(self, request: ReplicationRequest) -> None: ...

    async def update(self, request: ReplicationRequest, seen: Observation) -> str | None:
        """Apply the spec; a new name when the job was replaced by a new one (the old
        one then drains under `request.retiring` and goes once done: see observe)."""
        ...

    async def delete(self, external_name: str, seen: Observation | None) -> None: ...


def dotted_name(namespace: str, name: str) -> str:
    """`<namespace>.<name>`: unique, since namespaces have no dots."""
    return f"{namespace}.{name}"


@dataclass
class ServerInfo:
    """What a probe learned about a server."""

    flavour: str
    version: str
    features: list[str] = field(default_factory=list)


class Prober(Protocol):
    async def probe(self) -> ServerInfo: ...


class Backend(Protocol):
    """Everything the operator can do on one server type."""

    conn: ServerConnection

    async def probe(self) -> ServerInfo: ...

    def replications(self) -> ReplicationDriver: ...

    def tokens(self) -> TokenDriver: ...
