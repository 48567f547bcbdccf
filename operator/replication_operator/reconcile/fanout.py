"""ReplicationPolicy on CouchDB, Cloudant and ReductStore: the policy owns a list of
child Replications, one per source database (bucket) that matches its patterns.

Pure functions only: which names match, what each child is called and declares,
which children to create, change or remove, how scheduled runs progress, and what
the policy's status says. The handler (handlers/fanout.py) does the I/O.

Scheduled and manual runs (see `child_spec`):
- CouchDB / Cloudant: children are one-shot Replications (continuous: false). A child
  waits suspended (no job) until its first run; a run sets `spec.runId` to the run's
  id, which the CouchDB backend writes into the `_replicator` doc, so the job runs
  again (an edited completed doc restarts; a running one is replaced). Between runs a
  child stays `Completed`.
- ReductStore: replications are always continuous. A child waits paused (mode
  `paused`: ReductStore keeps queueing new records without sending them); a run
  enables it and, once `pendingRecords` is 0, pauses it again. Each run sends what
  was written since the child was created or since the previous run; records written
  before the replication existed are not sent (ReductStore replicates new writes).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from replication_operator import API_VERSION, GROUP, cron
from replication_operator.backends.policies import FAILED, IN_PROGRESS, SUCCEED
from replication_operator.config import RUN_REQUESTED
from replication_operator.errors import BackendError, SpecError
from replication_operator.status import (
    READY,
    RECONCILING,
    STALLED,
    SYNCED,
    Condition,
    error_conditions,
    merge_conditions,
)

POLICY_LABEL = f"{GROUP}/policy"
RUN_ANNOTATION = f"{GROUP}/run"  # the run a child took part in last
OUTCOME_ANNOTATION = f"{GROUP}/run-outcome"  # Succeeded | Failed, once decided
SUCCEEDED, FAILED_OUTCOME = "Succeeded", "Failed"
COUCH_TYPES = frozenset({"couchdb", "cloudant"})
FANOUT_TYPES = COUCH_TYPES | {"reductstore"}
MAX_NAME = 63
HASH_LEN = 8
FAILED_SHOWN = 10  # failed databases listed per run

COUCH_NAME = re.compile(r"[a-z][a-z0-9_$()+/-]*")
REDUCT_NAME = re.compile(r"[A-Za-z0-9_-]+")
COUCH_MAX_LEN = 238
_LABEL_SAFE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_PLAIN_DB = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def family(server_type: str) -> str:
    """couchdb (CouchDB, Cloudant) or reductstore: servers that replicate with each other."""
    return "couchdb" if server_type in COUCH_TYPES else server_type


# -- matching ---------------------------------------------------------------------


class PatternError(ValueError):
    """A pattern that is not a valid glob; the message says why (no field name)."""


def _glob_regex(pattern: str) -> str:
    """`*` (any text, `/` included), `?` (one character), `[abc]`, `[a-z]`, `[!abc]`
    and `{a,b}` (alternatives, not nested) as a regular expression."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_braces = False
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "^") else i + 1)
            if end < 0:
                raise PatternError(f"'[' at position {i + 1} is never closed")
            body = pattern[i + 1:end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            if not body:
                raise PatternError(f"'[]' at position {i + 1} is empty")
            escaped = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{escaped}]")
            i = end
        elif c == "{":
            if in_braces:
                raise PatternError(f"'{{' at position {i + 1}: alternatives cannot be nested")
            if "}" not in pattern[i:]:
                raise PatternError(f"'{{' at position {i + 1} is never closed")
            in_braces = True
            out.append("(?:")
        elif c == "}" and in_braces:
            in_braces = False
            out.append(")")
        elif c == "," and in_braces:
            out.append("|")
        elif c in "]}":
            raise PatternError(f"'{c}' at position {i + 1} closes nothing")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class Matcher:
    """Include and exclude ("!"-prefixed) globs of spec.source.databases."""

    includes: tuple[re.Pattern[str], ...]
    excludes: tuple[re.Pattern[str], ...]
    literals: frozenset[str]  # include patterns without wildcards: may name system dbs

    def __call__(self, name: str) -> bool:
        if is_system(name) and name not in self.literals:
            return False
        return any(p.fullmatch(name) for p in self.includes) and \
            not any(p.fullmatch(name) for p in self.excludes)


def is_system(name: str) -> bool:
    """`_users`, `_replicator`, `_global_changes` (CouchDB), `$system` (ReductStore)."""
    return name.startswith(("_", "$"))


def compile_patterns(patterns: Sequence[str], where: str = "spec.source.databases"
                     ) -> Matcher:
    includes: list[re.Pattern[str]] = []
    excludes: list[re.Pattern[str]] = []
    literals: set[str] = set()
    for i, raw in enumerate(patterns):
        exclude = raw.startswith("!")
        text = raw[1:] if exclude else raw
        if not text:
            raise SpecError(f"{where}[{i}] {raw!r}: a pattern needs a name after '!'")
        try:
            regex = re.compile(_glob_regex(text))
        except PatternError as exc:
            raise SpecError(f"{where}[{i}] {raw!r} is not a valid glob: {exc}") from None
        (excludes if exclude else includes).append(regex)
        if not exclude and not any(ch in text for ch in "*?[{"):
            literals.add(text)
    if not includes:
        raise SpecError(f"{where} has only exclusions ('!'); add a pattern to include")
    return Matcher(tuple(includes), tuple(excludes), frozenset(literals))


def matching(matcher: Matcher, names: Iterable[str]) -> list[str]:
    """The names that match, sorted and without duplicates."""
    return sorted({n for n in names if matcher(n)})


# -- naming -----------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def child_name(policy: str, database: str) -> str:
    """The child Replication's name: `<policy>-<database>` when that is already a
    valid name of at most 63 characters, else a readable slug cut to fit plus `--`
    and a hash of the database name.

    Stable (a pure function of the two names), at most 63 characters, a DNS label
    (so also a valid label value), and different for different databases of one
    policy: a plain name's database part never holds `--` (it matches
    `[a-z0-9]+(-[a-z0-9]+)*`) and the policy name ends with a letter or digit, so a
    plain name can never end in `--<hash>`, and hashed names differ by their hash.
    """
    policy_slug = _slug(policy) or "policy"
    plain = f"{policy}-{database}"
    if _LABEL_SAFE.fullmatch(policy) and _PLAIN_DB.fullmatch(database) \
            and len(plain) <= MAX_NAME:
        return plain
    digest = hashlib.sha256(f"{policy}\0{database}".encode()).hexdigest()[:HASH_LEN]
    readable = f"{policy_slug}-{_slug(database)}".strip("-")
    readable = readable[:MAX_NAME - HASH_LEN - 2].rstrip("-")
    return f"{readable}--{digest}"


def valid_database_name(server_family: str, name: str) -> str | None:
    """Why `name` cannot be a database (bucket) on such a server, or None."""
    if server_family == "couchdb":
        if len(name) > COUCH_MAX_LEN:
            return f"longer than {COUCH_MAX_LEN} characters"
        if not COUCH_NAME.fullmatch(name):
            return "CouchDB names are lowercase, start with a letter and hold only " \
                   "a-z 0-9 _ $ ( ) + / -"
        return None
    if not REDUCT_NAME.fullmatch(name):
        return "ReductStore bucket names hold only letters, digits, - and _"
    return None


# -- the policy's declaration -------------------------------------------------------


@dataclass(frozen=True)
class FanoutSpec:
    """What a fan-out policy declares (spec, defaults applied)."""

    policy: str
    source_server: str
    target_server: str
    job_server: str  # "" = the Replication default (target for CouchDB, source for ReductStore)
    patterns: tuple[str, ...]
    prefix: str = ""
    create: bool = True
    source_token: str = ""
    target_token: str = ""
    filter: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    suspend: bool = False
    deletion_policy: str = "Delete"
    trigger: str = "manual"  # continuous | scheduled | manual
    schedule: str = ""
    history_limit: int = 10

    @property
    def runs(self) -> bool:
        """Children copy in runs (scheduled or on request), not continuously."""
        return self.trigger != "continuous"


def _harbor_only(spec: Mapping[str, Any]) -> list[str]:
    """Harbor (or Eden) fields set to something other than their default."""
    found: list[str] = []
    checks = (
        ("spec.filters", bool(spec.get("filters"))),
        ("spec.target.namespace", bool((spec.get("target") or {}).get("namespace"))),
        ("spec.target.namespaceReplaceCount",
         (spec.get("target") or {}).get("namespaceReplaceCount") not in (None, -1)),
        ("spec.source.registry", "registry" in (spec.get("source") or {})),
        ("spec.target.registry", "registry" in (spec.get("target") or {})),
        ("spec.replicateDeletion", bool(spec.get("replicateDeletion", False))),
        ("spec.override", spec.get("override", True) is not True),
        ("spec.enabled", spec.get("enabled", True) is not True),
        ("spec.speed", spec.get("speed", -1) not in (-1, 0)),
        ("spec.copyByChunk", bool(spec.get("copyByChunk", False))),
        ("spec.externalName", bool(spec.get("externalName"))),
    )
    found += [name for name, present in checks if present]
    return found


HINTS = {"spec.enabled": "use spec.suspend", "spec.filters": "use spec.filter",
         "spec.externalName": "children have deterministic names"}


def parse(policy: str, spec: Mapping[str, Any], server_type: str) -> FanoutSpec:
    """The declaration, refusing what only Harbor or Eden policies have."""
    kind = "ReductStore" if server_type == "reductstore" else "CouchDB/Cloudant"
    for name in _harbor_only(spec):
        hint = f" ({HINTS[name]})" if name in HINTS else ""
        raise SpecError(f"{name} is for Harbor (or Eden) policies; a {kind} policy expands "
                        f"into Replications and has no such setting{hint}")
    trigger = dict(spec.get("trigger") or {})
    if trigger.get("type") == "eventBased":
        raise SpecError(f"spec.trigger.type eventBased is Harbor only; a {kind} policy "
                        f"takes continuous, scheduled or manual")
    source, target = spec["source"], spec["target"]
    return FanoutSpec(
        policy=policy, source_server=str(source["server"]),
        target_server=str(target["server"]), job_server=str(spec.get("server") or ""),
        patterns=tuple(str(p) for p in source["databases"]),
        prefix=str(target.get("databasePrefix") or ""),
        create=bool(target.get("create", True)),
        source_token=str((source.get("tokenRef") or {}).get("name") or ""),
        target_token=str((target.get("tokenRef") or {}).get("name") or ""),
        filter=dict(spec.get("filter") or {}), options=dict(spec.get("options") or {}),
        suspend=bool(spec.get("suspend", False)),
        deletion_policy=str(spec.get("deletionPolicy") or "Delete"),
        trigger=str(trigger.get("type") or "manual"), schedule=str(trigger.get("schedule") or ""),
        history_limit=int(spec.get("historyLimit", 10)))


def check(fs: FanoutSpec, source_type: str, target_type: str) -> Matcher:
    """Refuse what cannot work, naming the field; the compiled patterns otherwise."""
    if len(fs.policy) > MAX_NAME:
        raise SpecError(f"metadata.name is {len(fs.policy)} characters; a policy that "
                        f"expands into Replications needs at most {MAX_NAME} (its name is "
                        f"the value of the label {POLICY_LABEL})")
    if family(source_type) != family(target_type):
        raise SpecError(f"spec.target.server is a {target_type} server and spec.source.server "
                        f"a {source_type} one; a policy replicates between CouchDB-family "
                        f"servers (couchdb, cloudant) or between ReductStores")
    if fs.prefix:
        why = valid_database_name(family(target_type), fs.prefix + "a")
        if why:
            raise SpecError(f"spec.target.databasePrefix {fs.prefix!r} would make invalid "
                            f"target names: {why}")
    if fs.runs and fs.trigger == "scheduled":
        try:
            cron.parse(fs.schedule)
        except cron.CronError as exc:
            raise SpecError(str(exc)) from None
    return compile_patterns(fs.patterns)


def refuse_fanout_fields(spec: Mapping[str, Any], server_type: str) -> None:
    """On Harbor and Eden, refuse what only CouchDB/ReductStore policies have."""
    source, target = spec.get("source") or {}, spec.get("target") or {}
    checks = (
        ("spec.filter", bool(spec.get("filter")), "Harbor filters go in spec.filters"),
        ("spec.target.databasePrefix", bool(target.get("databasePrefix")), ""),
        ("spec.source.tokenRef", "tokenRef" in source, ""),
        ("spec.target.tokenRef", "tokenRef" in target, ""),
        ("spec.suspend", bool(spec.get("suspend", False)), "use spec.enabled: false"),
    )
    for name, present, hint in checks:
        if present:
            raise SpecError(f"{name} is for CouchDB, Cloudant and ReductStore policies; a "
                            f"{server_type} policy has no such setting"
                            + (f" ({hint})" if hint else ""))
    for i, pattern in enumerate(source.get("databases") or []):
        if str(pattern).startswith("!"):
            raise SpecError(f"spec.source.databases[{i}] {pattern!r}: exclusions ('!') are "
                            f"for CouchDB, Cloudant and ReductStore policies")


# -- children ---------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """A child Replication as the policy sees it (from the operator's index)."""

    name: str
    database: str
    spec: dict[str, Any]
    owner_uid: str = ""  # uid of its controller owner reference
    generation: int | None = None
    observed_generation: int | None = None
    phase: str = ""
    ready: bool = False
    stalled: bool = False
    reason: str = ""
    message: str = ""
    pending_records: int | None = None
    deleting: bool = False
    run: str = ""  # annotation: the run it took part in last
    outcome: str = ""  # annotation: Succeeded | Failed (of that run)

    @property
    def current(self) -> bool:
        """Its status describes its current spec."""
        return self.generation is not None and self.observed_generation == self.generation

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Child:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready, stalled = conditions.get(READY) or {}, conditions.get(STALLED) or {}
        bad = stalled if stalled.get("status") == "True" else ready
        owner = next((r.get("uid", "") for r in meta.get("ownerReferences") or []
                      if r.get("controller")), "")
        annotations = meta.get("annotations") or {}
        spec = dict(body.get("spec") or {})
        pending = (status.get("progress") or {}).get("pendingRecords")
        return cls(
            name=str(meta.get("name", "")),
            database=str((spec.get("source") or {}).get("database", "")),
            spec=spec, owner_uid=str(owner), generation=meta.get("generation"),
            observed_generation=status.get("observedGeneration"),
            phase=str(status.get("phase") or ""),
            ready=ready.get("status") == "True", stalled=stalled.get("status") == "True",
            reason=str(bad.get("reason") or ""), message=str(bad.get("message") or ""),
            pending_records=int(pending) if isinstance(pending, int) else None,
            deleting=bool(meta.get("deletionTimestamp")),
            run=str(annotations.get(RUN_ANNOTATION) or ""),
            outcome=str(annotations.get(OUTCOME_ANNOTATION) or ""))


def target_database(fs: FanoutSpec, database: str) -> str:
    return f"{fs.prefix}{database}"


def child_spec(fs: FanoutSpec, database: str, server_family: str, *, run: str = "",
               sending: bool = False) -> dict[str, Any]:
    """The full spec of the child for `database`, defaults written out (so it compares
    equal to what the API server stores).

    `run`: the run the child took part in last (CouchDB: its `runId`); `sending`: a
    ReductStore child that is in the current run and not done yet (enabled).
    """
    source: dict[str, Any] = {"server": fs.source_server, "database": database,
                              "create": False}
    target: dict[str, Any] = {"server": fs.target_server,
                              "database": target_database(fs, database), "create": fs.create}
    if fs.source_token:
        source["tokenRef"] = {"name": fs.source_token}
    if fs.target_token:
        target["tokenRef"] = {"name": fs.target_token}
    suspend = fs.suspend
    continuous = True
    extra: dict[str, Any] = {}
    if fs.runs and server_family == "couchdb":
        continuous = False
        if run:
            extra["runId"] = run
        else:
            suspend = True  # no job before its first run
    elif fs.runs:
        suspend = suspend or not sending
    spec: dict[str, Any] = {"source": source, "target": target, "continuous": continuous,
                            "suspend": suspend, "deletionPolicy": fs.deletion_policy, **extra}
    if fs.job_server:
        spec["server"] = fs.job_server
    if fs.filter:
        spec["filter"] = fs.filter
    if fs.options:
        spec["options"] = fs.options
    return spec


def child_body(fs: FanoutSpec, database: str, server_family: str, owner: Mapping[str, Any],
               *, run: str = "", sending: bool = False, inherit: Iterable[str] = ()
               ) -> dict[str, Any]:
    """A new child Replication, owned by the policy `owner` (its body). It carries the
    policy's labels named in `inherit` (the shard selector's keys: a child belongs to
    its policy's shard), and no other (an Argo CD tracking label would make the child
    look like a resource of the application, missing from Git)."""
    meta = owner["metadata"]
    owner_labels = meta.get("labels") or {}
    labels = {k: owner_labels[k] for k in inherit if k in owner_labels}
    annotations = {RUN_ANNOTATION: run} if run else {}
    return {
        "apiVersion": API_VERSION, "kind": "Replication",
        "metadata": {
            "name": child_name(fs.policy, database),
            "labels": {**labels, POLICY_LABEL: fs.policy},
            **({"annotations": annotations} if annotations else {}),
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": "ReplicationPolicy",
                                 "name": meta["name"], "uid": meta["uid"],
                                 "controller": True, "blockOwnerDeletion": True}]},
        "spec": child_spec(fs, database, server_family, run=run, sending=sending)}


def spec_differences(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """Top-level spec fields that differ (names only)."""
    return sorted(f"spec.{k}" for k in set(stored) | set(desired)
                  if stored.get(k) != desired.get(k))


@dataclass
class ChildChange:
    """Bring one existing child in line: its spec and run annotations."""

    name: str
    spec: dict[str, Any] | None = None  # the full desired spec, if it differs
    differences: list[str] = field(default_factory=list)
    annotations: dict[str, str | None] = field(default_factory=dict)  # None removes


@dataclass
class ChildPlan:
    create: list[dict[str, Any]] = field(default_factory=list)  # bodies
    change: list[ChildChange] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    foreign: list[Child] = field(default_factory=list)  # our label, another owner
    waiting: list[str] = field(default_factory=list)  # being deleted: recreate later


@dataclass(frozen=True)
class RunState:
    """The run in progress (if any) and its decisions for this reconcile."""

    active: str = ""  # id of the run in progress
    starting: bool = False  # the active run starts in this reconcile
    outcomes: Mapping[str, str] = field(default_factory=dict)  # child → outcome decided now


def plan_children(fs: FanoutSpec, server_family: str, databases: Sequence[str],
                  observed: Iterable[Child], owner: Mapping[str, Any], run: RunState,
                  inherit: Iterable[str] = ()) -> ChildPlan:
    """Create, change and delete to make the children exactly one per matched database.

    Children of another owner (same label, other uid) are reported, never touched.
    """
    uid = owner["metadata"]["uid"]
    by_name = {c.name: c for c in observed}
    wanted = {child_name(fs.policy, db): db for db in databases}
    plan = ChildPlan()
    for name, db in sorted(wanted.items()):
        child = by_name.get(name)
        if child is not None and child.owner_uid != uid:
            plan.foreign.append(child)
            continue
        if child is None:
            joins = bool(run.active) and run.starting
            plan.create.append(child_body(fs, db, server_family, owner,
                                          run=run.active if joins else "", sending=joins,
                                          inherit=inherit))
            continue
        if child.deleting:
            plan.waiting.append(name)
            continue
        plan.change += _changes(fs, server_family, child, run)
    for child in sorted(by_name.values(), key=lambda c: c.name):
        if child.name not in wanted and child.owner_uid == uid and not child.deleting:
            plan.delete.append(child.name)
    return plan


def _changes(fs: FanoutSpec, server_family: str, child: Child, run: RunState
             ) -> list[ChildChange]:
    annotations: dict[str, str | None] = {}
    mark, outcome = child.run, child.outcome
    if not fs.runs:
        mark, outcome = "", ""
    elif run.active and run.starting:
        mark, outcome = run.active, ""
    if child.name in run.outcomes:
        outcome = run.outcomes[child.name]
    if mark != child.run:
        annotations[RUN_ANNOTATION] = mark or None
    if outcome != child.outcome:
        annotations[OUTCOME_ANNOTATION] = outcome or None
    sending = bool(run.active) and mark == run.active and not outcome
    desired = child_spec(fs, child.database, server_family, run=mark, sending=sending)
    diff = spec_differences(child.spec, desired)
    if not diff and not annotations:
        return []
    return [ChildChange(child.name, desired if diff else None, diff, annotations)]


# -- runs -------------------------------------------------------------------------


def run_id(when: datetime, *, requested: bool) -> str:
    """Seconds since the epoch times 10, plus 1 for a run on request (as Eden's)."""
    return str(int(when.timestamp()) * 10 + (1 if requested else 0))


def child_outcome(child: Child, server_family: str, run: str) -> tuple[str, str] | None:
    """(outcome, reason) once this child's part of `run` is over, else None."""
    if child.run != run or child.outcome:
        return None
    if child.stalled:
        return FAILED_OUTCOME, f"{child.reason}: {child.message}".strip(": ")
    if not child.current:
        return None
    if server_family == "couchdb":
        if child.spec.get("runId") == run and child.phase == "Completed":
            return SUCCEEDED, ""
        if child.phase == "Failed":
            return FAILED_OUTCOME, f"{child.reason}: {child.message}".strip(": ")
        return None
    if not child.spec.get("suspend") and child.phase == "Running" and \
            child.pending_records == 0:
        return SUCCEEDED, ""
    return None


@dataclass(frozen=True)
class Tally:
    total: int = 0
    succeeded: int = 0
    failed: int = 0

    @property
    def in_progress(self) -> int:
        return self.total - self.succeeded - self.failed


def tally(children: Iterable[Child], run: str, decided: Mapping[str, str]) -> Tally:
    """Counts of `run` over the children that take part in it (`decided`: outcomes
    decided in this reconcile, not yet written)."""
    total = succeeded = failed = 0
    for child in children:
        if child.run != run:
            continue
        total += 1
        outcome = decided.get(child.name, child.outcome)
        succeeded += outcome == SUCCEEDED
        failed += outcome == FAILED_OUTCOME
    return Tally(total, succeeded, failed)


def execution(previous: Mapping[str, Any] | None, *, run: str, trigger: str, start: str,
              counts: Tally, failures: Sequence[tuple[str, str, str]], now: str
              ) -> dict[str, Any]:
    """The status item of a run. `failures`: (database, target database, reason) newly
    failed; the item keeps at most FAILED_SHOWN of them, oldest first."""
    before = dict(previous or {})
    failed_list = list(before.get("failedTasks") or [])
    known = {f["source"] for f in failed_list}
    for db, target, reason in failures:
        if db not in known and len(failed_list) < FAILED_SHOWN:
            failed_list.append({"source": db, "destination": target, "message": reason})
            known.add(db)
    over = counts.in_progress <= 0
    status = (FAILED if counts.failed else SUCCEED) if over else IN_PROGRESS
    item: dict[str, Any] = {
        "id": int(run), "status": status, "trigger": trigger, "startTime": start,
        "total": counts.total, "succeeded": counts.succeeded, "failed": counts.failed,
        "inProgress": max(0, counts.in_progress), "stopped": 0}
    if over:
        item["endTime"] = before.get("endTime") or now
    if failed_list:
        item["failedTasks"] = failed_list
    return item


def finished_message(item: Mapping[str, Any]) -> str:
    text = (f"run {item['id']} ({item.get('trigger') or 'manual'}) {item['status']}: "
            f"{item['succeeded']} of {item['total']} databases replicated")
    if item.get("failed"):
        names = ", ".join(f["source"] for f in item.get("failedTasks") or [])
        text += f", {item['failed']} failed ({names})"
    return text


def history(previous: Sequence[Mapping[str, Any]], current: Mapping[str, Any] | None,
            limit: int) -> list[dict[str, Any]]:
    """Newest first, at most `limit`, the current run replacing its older copy."""
    items = [dict(i) for i in previous if not current or i.get("id") != current.get("id")]
    if current:
        items.append(dict(current))
    return sorted(items, key=lambda i: int(i.get("id", 0)), reverse=True)[:limit]


def next_run_time(schedule: str, now: datetime) -> str:
    when = cron.next_run(cron.parse(schedule), now)
    return when.isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- status -----------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    matched: int
    ready: int
    failed: int
    conditions: list[Condition]


def summarize(fs: FanoutSpec, wanted: Mapping[str, str], children: Iterable[Child],
              foreign: Sequence[Child], source_desc: str) -> Summary:
    """Counts and conditions from the children: Ready only when every child is Ready;
    Stalled when one is stuck for a permanent reason (the first is named) or a name is
    taken by a Replication the policy does not own."""
    by_name = {c.name: c for c in children}
    present = [by_name[n] for n in sorted(wanted) if n in by_name]
    ready = [c for c in present if c.ready and c.current]
    stalled = [c for c in present if c.stalled]
    matched = len(wanted)
    if foreign:
        first = foreign[0]
        message = (f"Replication {first.name} (database {wanted.get(first.name, '?')}) "
                   f"exists and is not owned by this policy; rename or delete it"
                   + (f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""))
        return Summary(matched, len(ready), len(stalled) + len(foreign),
                       _conditions(False, True, "OwnedByAnother", message))
    if stalled:
        first = stalled[0]
        message = (f"Replication {first.name} (database {first.database}) is stalled: "
                   f"{first.reason}: {first.message}"
                   + (f" (and {len(stalled) - 1} more)" if len(stalled) > 1 else ""))
        return Summary(matched, len(ready), len(stalled),
                       _conditions(False, True, "ReplicationStalled", message))
    if matched == 0:
        message = f"no database on {source_desc} matches {', '.join(fs.patterns)} (0 matched)"
        return Summary(0, 0, 0, _conditions(True, False, "NoMatch", message))
    if len(ready) == matched:
        message = f"{matched} of {matched} Replications ready"
        return Summary(matched, matched, 0, _conditions(True, False, "AllReady", message))
    waiting = [c for c in present if not (c.ready and c.current)]
    missing = [n for n in sorted(wanted) if n not in by_name]
    detail = (f"waiting for {waiting[0].name}" + (f" ({waiting[0].reason})"
                                                  if waiting[0].reason else "")
              if waiting else f"creating {missing[0]}")
    message = f"{len(ready)} of {matched} Replications ready; {detail}"
    return Summary(matched, len(ready), 0, _conditions(False, False, "Progressing", message))


def _conditions(ready: bool, stalled: bool, reason: str, message: str) -> list[Condition]:
    reconciling = not ready and not stalled
    return [Condition(READY, ready, reason, message),
            Condition(SYNCED, True, "ReconcileSuccess"),
            Condition(RECONCILING, reconciling, reason if reconciling else "Idle",
                      message if reconciling else ""),
            Condition(STALLED, stalled, reason if stalled else "Idle",
                      message if stalled else "")]


def policy_status(*, previous: Mapping[str, Any] | None, generation: int | None,
                  summary: Summary | None, error: BackendError | None,
                  fields: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The full `.status` of a fan-out policy after one reconcile. `fields` carries
    run bookkeeping (lastExecution, executions, nextRunTime, lastRunRequest)."""
    previous = previous or {}
    if error is not None:
        conditions = error_conditions(error)
    else:
        assert summary is not None
        conditions = summary.conditions
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(previous.get("conditions"), conditions, generation, now),
        "lastError": None,
        **fields,
    }
    if summary is not None:
        status.update(matched=summary.matched, ready=summary.ready, failed=summary.failed)
    else:
        status.setdefault("matched", previous.get("matched", 0))
    if error is not None:
        before = previous.get("lastError") or {}
        same = before.get("message") == error.message
        status["lastError"] = {"code": error.code, "message": error.message,
                               "time": before.get("time") if same else now}
    return status


# -- run bookkeeping --------------------------------------------------------------


@dataclass
class RunStep:
    """What runs do in one reconcile: the child decisions, the status fields
    (lastExecution, executions, nextRunTime, lastRunRequest) and the Events."""

    state: RunState
    fields: dict[str, Any]
    events: list[tuple[str, str, str]]  # (Normal | Warning, reason, message)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def run_step(fs: FanoutSpec, server_family: str, previous: Mapping[str, Any],
             children: Sequence[Child], wanted: Mapping[str, str], *, now: datetime,
             requested: str | None, spec_changed: bool) -> RunStep:
    """Follow the run in progress, start a due one (never two at once), keep history.

    `wanted`: child name → database of every match. A scheduled run is due when
    `status.nextRunTime` has passed (a time missed while the operator was down runs
    once on its return, as a CronJob's); a manual one on a new value of the
    run-requested annotation.
    """
    events: list[tuple[str, str, str]] = []
    fields: dict[str, Any] = {}
    last = dict(previous.get("lastExecution") or {})
    active = str(last["id"]) if last.get("status") == IN_PROGRESS and "id" in last else ""
    current: dict[str, Any] | None = None
    outcomes: dict[str, str] = {}
    if active:
        failures: list[tuple[str, str, str]] = []
        for child in children:
            decided = child_outcome(child, server_family, active)
            if decided is None and child.run == active and not child.outcome and (
                    fs.suspend or not fs.runs):
                why = "spec.suspend" if fs.suspend else "spec.trigger.type continuous"
                decided = (FAILED_OUTCOME, f"stopped: {why} was set during the run")
            if decided is not None:
                outcomes[child.name] = decided[0]
                if decided[0] == FAILED_OUTCOME:
                    failures.append((child.database, target_database(fs, child.database),
                                     decided[1]))
        current = execution(last, run=active, trigger=str(last.get("trigger") or ""),
                            start=str(last.get("startTime") or _iso(now)),
                            counts=tally(children, active, outcomes), failures=failures,
                            now=_iso(now))
        if current["status"] != IN_PROGRESS:
            events.append(("Warning" if current["status"] == FAILED else "Normal",
                           "ExecutionFailed" if current["status"] == FAILED
                           else "ExecutionSucceeded", finished_message(current)))
            active = ""
    starting = ""
    if fs.runs:
        due: list[str] = []
        next_run = str(previous.get("nextRunTime") or "")
        if fs.trigger == "scheduled":
            if not next_run or (spec_changed and parse_time(next_run) > now):
                next_run = next_run_time(fs.schedule, now)
            elif parse_time(next_run) <= now:
                due.append(f"scheduled for {next_run}")
                next_run = next_run_time(fs.schedule, now)
            fields["nextRunTime"] = next_run
        else:
            fields["nextRunTime"] = None
        if requested and requested != previous.get("lastRunRequest"):
            due.append(f"requested ({RUN_REQUESTED}={requested})")
            fields["lastRunRequest"] = requested
        if due:
            why = " and ".join(due)
            if fs.suspend:
                events.append(("Warning", "RunSkipped",
                               f"run {why} not started: the policy is suspended (spec.suspend)"))
            elif active:
                assert current is not None
                events.append(("Warning", "RunSkipped",
                               f"run {why} not started: run {active} is still in progress "
                               f"({current['succeeded'] + current['failed']} of "
                               f"{current['total']} databases done)"))
            else:
                manual = fs.trigger == "manual" or not due[0].startswith("scheduled")
                starting = run_id(now, requested=manual)
                total = len(wanted)
                current = execution(None, run=starting, trigger="manual" if manual
                                    else "scheduled", start=_iso(now),
                                    counts=Tally(total, 0, 0), failures=[], now=_iso(now))
                events.append(("Normal", "RunStarted",
                               f"started run {starting} ({why}) over {total} databases"))
                if current["status"] != IN_PROGRESS:  # nothing matched: over at once
                    events.append(("Normal", "ExecutionSucceeded", finished_message(current)))
                else:
                    active = starting
    else:
        fields["nextRunTime"] = None
    if current is not None:
        fields["lastExecution"] = current
        fields["executions"] = history(previous.get("executions") or [], current,
                                       fs.history_limit)
    return RunStep(RunState(active=active, starting=bool(starting) and active == starting,
                            outcomes=outcomes), fields, events)

