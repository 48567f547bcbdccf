"""Pure CouchDB logic: a request becomes a `_replicator` doc; server answers become
observations. No I/O here, so all of it is unit- and property-tested.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from replication_operator.backends.base import (
    COMPLETED,
    ERROR,
    FAILED,
    PENDING,
    RUNNING,
    Endpoint,
    Observation,
    Progress,
    ReplicationRequest,
    refuse_outside,
)
from replication_operator.errors import SpecError
from replication_operator.memory import shared_strings

OWNER_FIELD = "dbops_owner"
RUN_FIELD = "dbops_run"
"""spec.runId of a one-shot job: a new value edits the doc, and an edited completed doc
runs again (CouchDB restarts a job whose doc changed; PouchDB Server restarts an
edited completed doc, BACKENDS.md §5). Unknown keys are ignored by the replicator."""
NONCE_FIELD = "dbops_nonce"
"""Changes on every (re)creation: PouchDB Server ignores a doc re-created with exactly
the content of a deleted one, so a restored job must never be byte-identical."""

# Fields of a _replicator doc the operator manages; a hand edit to any of them is drift.
REPLICATION_FIELDS = (
    "source", "target", "continuous", "create_target", "create_target_params", "doc_ids",
    "filter", "query_params", "selector", "since_seq", "use_checkpoints",
    "checkpoint_interval", "worker_processes", "worker_batch_size", "http_connections",
    "connection_timeout", "retries_per_request", "source_proxy", "target_proxy", "proxy",
    "winning_revs_only", "user_ctx",
)
# Options a user may pass through spec.options (everything else is refused).
ALLOWED_OPTIONS = frozenset(REPLICATION_FIELDS) - {
    "source", "target", "continuous", "create_target", "doc_ids", "filter", "query_params",
    "selector"}
COUCH_FILTERS = {"selector", "docIds", "designFilter", "queryParams"}
SELECTOR_DDOC_PREFIX = "dbops_selector_"


def database_url(endpoint: Endpoint) -> str:
    return f"{endpoint.server.base_url}/{quote(endpoint.database, safe='')}"


def endpoint_doc(endpoint: Endpoint) -> str | dict[str, Any]:
    """Source/target as the replicator wants it, credentials in the header form.

    The `headers.Authorization` form works on CouchDB 3 and PouchDB Server alike
    (CouchDB 3.2's `auth.basic` is ignored by PouchDB Server).
    """
    server = endpoint.server
    creds = server.credentials
    url = database_url(endpoint)
    if server.auth_type in ("basic", "session") and creds.username:
        return {"url": url, "headers": {"Authorization": creds.basic_header()}}
    if server.auth_type == "bearer" and creds.token:
        return {"url": url, "headers": {"Authorization": f"Bearer {creds.token}"}}
    if server.auth_type == "iam" and creds.apikey:
        return {"url": url, "auth": {"iam": {"api_key": creds.apikey}}, "headers": {}}
    return url


def validate(request: ReplicationRequest) -> None:
    """Refuse filters and options a CouchDB replication cannot honour."""
    refuse_outside(request.filter, COUCH_FILTERS, "spec.filter",
                   "is not a CouchDB filter (it belongs to ReductStore)")
    refuse_outside(request.options, ALLOWED_OPTIONS, "spec.options",
                   "is not a CouchDB replication option")
    if request.run_id and request.continuous:
        raise SpecError("spec.runId is for one-shot jobs (continuous: false): it runs the job "
                        "again when it changes")


def selector_ddoc_name(selector: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(selector, sort_keys=True).encode()).hexdigest()[:12]
    return f"{SELECTOR_DDOC_PREFIX}{digest}"


def desired_doc(request: ReplicationRequest, *, mango: bool) -> dict[str, Any]:
    """The managed fields of the `_replicator` doc for `request`.

    `mango` says whether the job server can filter by Mango selector; where it cannot,
    the selector is replaced by a JavaScript filter installed on the source.
    """
    doc: dict[str, Any] = {
        "source": endpoint_doc(request.source),
        "target": endpoint_doc(request.target),
        "continuous": request.continuous,
        "create_target": request.create_target,
    }
    flt = request.filter
    if flt.get("docIds"):
        doc["doc_ids"] = list(flt["docIds"])
    if flt.get("selector"):
        if mango:
            doc["selector"] = flt["selector"]
        else:
            doc["filter"] = f"{selector_ddoc_name(flt['selector'])}/selector"
    if flt.get("designFilter"):
        doc["filter"] = flt["designFilter"]
    if flt.get("queryParams"):
        doc["query_params"] = dict(flt["queryParams"])
    doc.update(request.options)
    if request.run_id:
        doc[RUN_FIELD] = request.run_id
    return doc


def new_doc(request: ReplicationRequest, *, mango: bool, now: datetime | None = None
            ) -> dict[str, Any]:
    """A full doc for creation: managed fields plus owner marker and nonce."""
    stamp = (now or datetime.now(UTC)).isoformat(timespec="microseconds")
    return {**desired_doc(request, mango=mango), OWNER_FIELD: request.key, NONCE_FIELD: stamp}


# What the replicator assumes for a field a doc leaves out: a hand-made job without
# `create_target` means the same as the operator's explicit `false`, not drift.
FIELD_DEFAULTS: dict[str, Any] = {"continuous": False, "create_target": False}


@dataclass(frozen=True)
class Fingerprint:
    """A digest standing for a value in a kept doc: equal values, equal fingerprints."""

    digest: bytes

    @classmethod
    def of(cls, value: Any) -> Fingerprint:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return cls(hashlib.blake2b(text.encode(), digest_size=16).digest())

    def __repr__(self) -> str:
        return f"Fingerprint({self.digest.hex()[:8]})"


# What the operator keeps of each `_replicator` doc between lists: the fields observe()
# and differences() read, nothing else (the server's doc also has its id, the nonce,
# the replication id and every replication counter). The endpoints are kept as
# fingerprints: they are the longest values and carry credentials. Keys come from
# these constants, so thousands of kept docs share them instead of one copy each.
KEPT_FIELDS = ("_rev", OWNER_FIELD, "_replication_state", "_replication_state_time",
               "_replication_state_reason", *REPLICATION_FIELDS, RUN_FIELD)
FINGERPRINTED = frozenset({"source", "target"})
STATS_FIELDS = ("docs_read", "docs_written", "doc_write_failures", "changes_pending")
KEPT_ENTRY_FIELDS = ("start_time", "last_updated")


def _kept_stats(stats: Any) -> Any:
    if not isinstance(stats, dict):
        return stats
    return {key: stats[key] for key in (*STATS_FIELDS, "error") if key in stats}


def kept_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The part of a `_replicator` doc the stored state keeps (see KEPT_FIELDS)."""
    kept: dict[str, Any] = {}
    for key in KEPT_FIELDS:
        if key in doc:
            value = doc[key]
            kept[key] = Fingerprint.of(value) if key in FINGERPRINTED else shared_strings(value)
    if "_replication_stats" in doc:
        kept["_replication_stats"] = _kept_stats(doc["_replication_stats"])
    return kept


def kept_scheduler_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The part of a `_scheduler/docs` item observe_scheduler() reads."""
    kept: dict[str, Any] = {"state": shared_strings(entry.get("state"))}
    for key in KEPT_ENTRY_FIELDS:
        if key in entry:
            kept[key] = entry[key]
    if "info" in entry:
        kept["info"] = _kept_stats(entry["info"])
    return kept


def _comparable(key: str, value: Any) -> Any:
    if key in FINGERPRINTED and value is not None and not isinstance(value, Fingerprint):
        return Fingerprint.of(value)
    return value


def differences(stored: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    """Names of managed fields whose stored value differs from the desired one (a kept
    doc's fingerprinted endpoints are compared by fingerprint)."""
    keys = (set(REPLICATION_FIELDS) | set(desired)) - {"user_ctx"}
    return sorted(k for k in keys if _comparable(k, stored.get(k, FIELD_DEFAULTS.get(k)))
                  != _comparable(k, desired.get(k, FIELD_DEFAULTS.get(k))))


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):  # 1.x style: seconds (or ms) since the epoch
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _error_text(info: Any) -> str:
    if isinstance(info, dict):
        error = info.get("error")
        return str(error) if error is not None else ""
    return "" if info is None else str(info)


def _progress(stats: Any) -> Progress:
    if not isinstance(stats, dict):
        return Progress()

    def num(key: str) -> int | None:
        value = stats.get(key)
        return int(value) if isinstance(value, int | float) else None

    return Progress(docs_read=num("docs_read"), docs_written=num("docs_written"),
                    doc_write_failures=num("doc_write_failures"),
                    changes_pending=num("changes_pending"))


def reason_from_error(text: str) -> str:
    """A CamelCase condition reason from a CouchDB error term."""
    lowered = text.lower()
    if "unauthorized" in lowered or "auth_error" in lowered or "forbidden" in lowered:
        return "Unauthorized"
    if "duplicate" in lowered:
        return "DuplicateReplication"
    if "db_not_found" in lowered or "not_found" in lowered:
        return "DatabaseNotFound"
    if "econnrefused" in lowered or "http_request_failed" in lowered or "timeout" in lowered:
        return "BackendUnavailable"
    return "ReplicationError"


def observe_scheduler(entry: dict[str, Any]) -> Observation:
    """State from a `_scheduler/docs` item (CouchDB 2.1+)."""
    state = entry.get("state")
    info = entry.get("info")
    seen = Observation(exists=True, progress=_progress(info),
                       started_at=_iso(entry.get("start_time")),
                       last_sync=_iso(entry.get("last_updated")))
    if state in ("running", "pending"):
        seen.phase, seen.reason = RUNNING, "Running" if state == "running" else "Queued"
        if state == "pending":
            seen.message = "queued by the replication scheduler (more jobs than max_jobs)"
    elif state == "initializing" or state is None:
        seen.phase, seen.reason = PENDING, "Initializing"
    elif state == "completed":
        seen.phase, seen.reason = COMPLETED, "Completed"
        seen.completed_at = seen.last_sync
    elif state == "failed":
        text = _error_text(info) or "the replicator refused this job"
        seen.phase, seen.reason, seen.message = FAILED, reason_from_error(text), text
    else:  # crashing, error: the scheduler keeps retrying
        text = _error_text(info) or f"replication is {state}"
        seen.phase, seen.reason, seen.message = ERROR, reason_from_error(text), text
        if seen.reason == "Unauthorized":
            credential_refused(seen)
    return seen


def credential_refused(seen: Observation) -> None:
    """A job CouchDB retries with credentials the other side refuses is a credential
    error, not a passing one: retrying fixes nothing, and CouchDB 3.4+ locks a user out
    after a few failed logins from one address (BACKENDS.md §6), other clients too."""
    seen.phase = FAILED
    seen.message = (f"{seen.message}: the server refuses the job's credentials; CouchDB "
                    f"keeps retrying them, which can lock the user out. Fix the password in "
                    f"the auth Secret of spec.source.server / spec.target.server (or the "
                    f"Token of their tokenRef)")


NO_COUNTERS = ("not reported by this server for a running continuous job: it writes "
               "replication counters into the job only when a one-shot job completes")


def observe_doc_state(doc: dict[str, Any]) -> Observation:
    """State from the `_replication_*` fields written into the doc (1.x, PouchDB).

    Such servers write `_replication_stats` only when a one-shot job completes: a
    running continuous job says so in `diagnostics.progress` instead of counters."""
    state = doc.get("_replication_state")
    seen = Observation(exists=True, progress=_progress(doc.get("_replication_stats")),
                       last_sync=_iso(doc.get("_replication_state_time")))
    if state == "triggered":
        seen.phase, seen.reason = RUNNING, "Running"
        seen.started_at = seen.last_sync
    elif state == "completed":
        seen.phase, seen.reason = COMPLETED, "Completed"
        seen.completed_at = seen.last_sync
    elif state in ("error", "failed"):
        text = str(doc.get("_replication_state_reason") or f"replication {state}")
        seen.phase = FAILED if state == "failed" else ERROR
        seen.reason, seen.message = reason_from_error(text), text
        if seen.reason == "Unauthorized":
            credential_refused(seen)
    else:
        seen.phase, seen.reason = PENDING, "Initializing"
    if doc.get("continuous") and seen.phase == RUNNING and not seen.progress.as_status():
        seen.diagnostics = {"progress": NO_COUNTERS}
    return seen


def observe(request: ReplicationRequest, doc: dict[str, Any] | None,
            scheduler_entry: dict[str, Any] | None, *, mango: bool) -> Observation:
    """Combine the stored doc and the scheduler's view into one observation."""
    if doc is None:
        return Observation.absent()
    if scheduler_entry is not None:
        seen = observe_scheduler(scheduler_entry)
    else:
        seen = observe_doc_state(doc)
    seen.owner = doc.get(OWNER_FIELD)
    seen.differences = differences(doc, desired_doc(request, mango=mango))
    seen.up_to_date = not seen.differences
    seen.handle = {"rev": doc.get("_rev")}
    return seen
