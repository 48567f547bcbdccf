"""What every handler shares: settings, the server registry, metrics, locks, and the
pacer that looks at the objects again."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from replication_operator.config import OperatorConfig
from replication_operator.metrics import ResourceTally
from replication_operator.pacing import Pace, Pacer
from replication_operator.servers import ServerRegistry
from replication_operator.status import StatusMemory


@dataclass
class OperatorContext:
    config: OperatorConfig
    servers: ServerRegistry
    tally: ResourceTally = field(default_factory=ResourceTally)
    statuses: StatusMemory = field(default_factory=StatusMemory)
    pacer: Pacer = field(default_factory=Pacer)
    pace: Pace = field(default_factory=Pace)
    _locks: defaultdict[str, asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock))
    _deleting: dict[str, None] = field(default_factory=dict)  # insertion-ordered set

    def lock(self, uid: str) -> asyncio.Lock:
        """One reconcile at a time per object (change handlers and timers overlap)."""
        return self._locks[uid]

    def release(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self.statuses.forget(uid)
        self.pace.forget(uid)
        self.pacer.unfollow(uid)

    def begin_deletion(self, uid: str) -> None:
        """From now on a reconcile of this object writes nothing: kopf runs deletion
        handlers while a timer's reconcile may still be in flight (it waits for timers
        only before removing the finalizer), and that reconcile would put back what the
        deletion removed. Remembered after release() (a late reconcile may come
        after it), for the last DELETIONS_REMEMBERED objects."""
        self._deleting[uid] = None
        while len(self._deleting) > DELETIONS_REMEMBERED:
            self._deleting.pop(next(iter(self._deleting)))

    def deleting(self, uid: str) -> bool:
        return uid in self._deleting


DELETIONS_REMEMBERED = 10_000
