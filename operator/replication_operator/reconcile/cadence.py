"""When to look at an object again, and how old a server list it may decide on.

Pure functions: the daemons of handlers/replication.py and handlers/policy.py call
them with the clock and the status this process wrote last.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from replication_operator.reconcile.policy import previous_history

CLOSE_WAIT = 60.0
"""Seconds a Harbor execution whose tasks have all ended is still polled for: Harbor
closes it 20-30 s after its last task, and sometimes never (BACKENDS.md §2a; the status
says `tasksFinished` and the outcome from the task counts meanwhile)."""

FAST_POLL = 3.0
"""Seconds between looks while the server works on something the user waits for and
no change feed reports on it: a running Harbor execution, a ReductStore replication
with records still to send. Lists are shared per server, so this is one list request
per server per FAST_POLL however many resources are busy."""


def fresh_enough(now: float, last_end: float | None, interval: float) -> float:
    """The `max_age` of a scheduled look: only a list taken after this object's previous
    reconcile ended, which cannot have seen it, and never one older than `interval`.

    With `max_age = interval` alone, the list the previous reconcile read may still
    count as fresh: a one-shot job created at t is observed from a list taken at t+d;
    its first resync at t+interval (kopf timers count from the object's first event)
    finds that list younger than the interval and decides on it again, so a job that
    completed meanwhile showed only a second interval later (58.6 s on CouchDB 3.5
    with the 30 s resync)."""
    if last_end is None:
        return interval
    return max(0.0, min(interval, now - last_end))


def replication_busy(status: Mapping[str, Any]) -> bool:
    """A replication still sending what the server queued (ReductStore reports
    `pendingRecords`; CouchDB jobs are followed through the change feed instead)."""
    pending = (status.get("progress") or {}).get("pendingRecords")
    return isinstance(pending, int) and pending > 0


def policy_busy(status: Mapping[str, Any], closing: MutableMapping[int, float],
                now: float) -> bool:
    """A policy with an execution the server still runs: tasks under way, or all ended
    less than CLOSE_WAIT ago (`closing` keeps when each was first seen so; entries of
    executions no longer running are dropped)."""
    busy = False
    running = set()
    for execution in previous_history(status):
        if not execution.running:
            continue
        running.add(execution.id)
        closing_for = 0.0 if not execution.tasks_finished else \
            now - closing.setdefault(execution.id, now)
        busy = busy or closing_for < CLOSE_WAIT
    for gone in set(closing) - running:
        del closing[gone]
    return busy


def interval(*, busy: bool, resync: float, fast: float = FAST_POLL) -> float:
    """Seconds from one look to the next."""
    return min(fast, resync) if busy else resync
