"""Pure ReductStore logic: a request becomes replication settings; list and detail
answers become observations.

ReductStore 1.21 ignores the deprecated `include`, `exclude`, `each_n` and `each_s`
settings, so the operator expresses them in the conditional query `when` (`&label`
`$eq`/`$ne`, `$each_n`, `$each_t`): what the user declared is never dropped.
"""

from __future__ import annotations

from typing import Any

from replication_operator.backends.base import (
    ERROR,
    FAILED,
    RUNNING,
    SUSPENDED,
    Observation,
    Progress,
    ReplicationRequest,
    refuse_outside,
)
from replication_operator.errors import SpecError

REDUCT_FILTERS = {"entries", "include", "exclude", "when", "eachN", "eachS"}
ALLOWED_OPTIONS = frozenset({"dst_prefix", "compression"})
# Settings the server echoes back and the operator manages (dst_token is never echoed).
COMPARED = ("src_bucket", "dst_bucket", "dst_host", "entries", "when", "mode",
            *sorted(ALLOWED_OPTIONS))


def validate(request: ReplicationRequest) -> None:
    refuse_outside(request.filter, REDUCT_FILTERS, "spec.filter",
                   "is not a ReductStore filter (it belongs to CouchDB)")
    refuse_outside(request.options, ALLOWED_OPTIONS, "spec.options",
                   "is not a ReductStore replication option")
    if not request.continuous:
        raise SpecError("spec.continuous: ReductStore replications are always continuous")
    if request.run_id:
        raise SpecError("spec.runId: ReductStore replications are always continuous (a "
                        "ReplicationPolicy runs them by enabling and pausing them)")


def when_condition(flt: dict[str, Any]) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    clauses += [{f"&{k}": {"$eq": v}} for k, v in sorted((flt.get("include") or {}).items())]
    clauses += [{f"&{k}": {"$ne": v}} for k, v in sorted((flt.get("exclude") or {}).items())]
    if flt.get("eachN"):
        clauses.append({"$each_n": int(flt["eachN"])})
    if flt.get("eachS"):
        clauses.append({"$each_t": float(flt["eachS"])})
    if flt.get("when"):
        clauses.append(dict(flt["when"]))
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def desired_settings(request: ReplicationRequest, dst_token: str) -> dict[str, Any]:
    """The body of POST/PUT /api/v1/replications/{name} (always with dst_token)."""
    body: dict[str, Any] = {
        "src_bucket": request.source.database,
        "dst_bucket": request.target.database,
        "dst_host": request.target.server.base_url,
        "dst_token": dst_token,
        "entries": list(request.filter.get("entries") or []),
        "when": when_condition(request.filter),
        "mode": "paused" if request.suspend else "enabled",
    }
    body.update(request.options)
    return body


def differences(stored: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    normal: dict[str, Any] = {"dst_prefix": "", "compression": "none", "entries": [],
                              "when": None}
    return sorted(k for k in COMPARED
                  if stored.get(k, normal.get(k)) != desired.get(k, normal.get(k)))


# What decides which records a replication queues (in the order they were written).
QUEUED = ("src_bucket", "entries", "when")


def same_queue(stored: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether a stored replication queues exactly the records `desired` would."""
    normal: dict[str, Any] = {"entries": [], "when": None}
    return all(stored.get(k, normal.get(k)) == desired.get(k, normal.get(k)) for k in QUEUED)


def backlog_sent(old_pending: int, new_pending: int, queues_alike: bool) -> bool:
    """Whether a replaced replication has sent everything it held when its replacement
    was made (the rest of its queue the replacement holds too).

    Pending 0 says so. Under constant writes it may never be 0; then ReductStore's queue
    is first in, first out: while one record older than the replacement is unsent, every
    record written since is unsent as well, so the old queue is longer than the
    replacement's. A shorter old queue (strictly: a write between the two counts of one
    list could make them equal) means only records the replacement also holds are
    left — provided both queue the same records."""
    return old_pending == 0 or (queues_alike and old_pending < new_pending)


REFUSED_TOKEN = ("401", "403")
ALREADY_THERE = "409"  # the destination has the record: sent twice during a swap


def error_counts(detail: dict[str, Any]) -> dict[str, int]:
    """This hour's failed sends by HTTP code (diagnostics.hourly.errors)."""
    errors = (((detail.get("diagnostics") or {}).get("hourly") or {}).get("errors") or {})
    return {str(code): int((entry or {}).get("count", 0)) for code, entry in errors.items()}


def observe(request: ReplicationRequest, item: dict[str, Any] | None,
            detail: dict[str, Any] | None, desired: dict[str, Any], *,
            errors_before: dict[str, int] | None = None) -> Observation:
    """Combine the list item (state) and, if fetched, the detail (settings, errors).

    ReductStore keeps saying `is_active: true` while the destination refuses its token
    (401/403) — and it drops those records (they leave the queue as errored). So errors
    that rose since the last look (`errors_before`, counts by HTTP code) are news: a
    refused token is Failed (a credential problem: permanent until the token changes),
    other errors are Error; 409 (the record is there already) is no error. Errors
    already counted before are history, not state."""
    if item is None:
        return Observation.absent()
    mode = str(item.get("mode", "enabled"))
    seen = Observation(exists=True, mode=mode, provisioned=bool(item.get("is_provisioned")),
                       progress=Progress(pending_records=int(item.get("pending_records", 0))),
                       owner=None)
    if mode in ("paused", "disabled"):
        seen.phase, seen.reason = SUSPENDED, "Paused"
    elif item.get("is_active"):
        seen.phase, seen.reason = RUNNING, "Running"
    else:
        seen.phase, seen.reason = ERROR, "DestinationUnavailable"
        seen.message = ("replication is not active: the destination does not answer, or "
                        "refuses dst_token (it needs read and write on the destination bucket)")
    if detail is not None:
        seen.differences = differences(detail.get("settings") or {}, desired)
        hourly = ((detail.get("diagnostics") or {}).get("hourly") or {})
        errors = hourly.get("errors") or {}
        last = ""
        if errors:
            code, entry = max(errors.items(), key=lambda kv: kv[1].get("count", 0))
            last = f"HTTP {code}: {entry.get('last_message', '')}"
        seen.diagnostics = {"ok": int(hourly.get("ok", 0)),
                            "errored": int(hourly.get("errored", 0)),
                            **({"lastErrorMessage": last} if last else {})}
        if seen.phase == ERROR and last:
            seen.message = f"replication is not active: {last}"
        counts = error_counts(detail)
        rising = sorted(code for code, count in counts.items() if errors_before is not None
                        and code != ALREADY_THERE and count > errors_before.get(code, 0))
        if rising and seen.phase == RUNNING:
            refused = sorted(set(rising) & set(REFUSED_TOKEN))
            if refused:
                entry = errors[refused[0]]
                seen.phase, seen.reason = FAILED, "DestinationRefusedToken"
                seen.message = (f"the destination refuses dst_token (HTTP {refused[0]}: "
                                f"{entry.get('last_message', '')}); ReductStore drops the "
                                f"records it cannot send: fix the token of the target "
                                f"(tokenRef or the DatabaseServer's Secret)")
            else:
                entry = errors[rising[0]]
                seen.phase, seen.reason = ERROR, "DestinationErrors"
                seen.message = (f"the destination answers errors: HTTP {rising[0]}: "
                                f"{entry.get('last_message', '')}")
    else:
        seen.differences = ["mode"] if mode != desired["mode"] else []
    seen.up_to_date = not seen.differences
    return seen
