"""When each object is looked at again, and how a change feed wakes it sooner.

Every Replication and ReplicationPolicy is followed by one `Pacer` for the whole
operator: it looks at an object (reconciles it) when its next look is due (the resync
interval after its last reconcile, shorter while the server works on something and no
feed reports on it), or at once when woken. A kopf timer cannot be woken, and a kopf
daemon per object (how this began) kept a task, its coroutines and kopf's invocation
state for each object: about 25 KiB apiece, measured with 1,000 Replications. The
Pacer keeps a heap entry and two callbacks per object, and runs at most `limit` looks
at once, so a resync of thousands neither floods the servers nor the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Due = Callable[[], float]
Look = Callable[[bool], Coroutine[Any, Any, None]]

NEVER = float("inf")
LOOKS_AT_ONCE = 32  # per operator; a look waits for its server, rarely for the CPU
STOP_WAIT = 10.0  # seconds the looks under way get to finish when the operator stops


@dataclass(slots=True)
class _Followed:
    due: Due
    look: Look
    woken: bool = False  # a wake not looked at yet
    running: bool = False
    scheduled: float = NEVER  # when its live heap entry is due


@dataclass
class Pacer:
    """Looks at each followed object (by uid) when due or woken; one look per object at
    a time, a wake during a look is looked at right after it."""

    limit: int = LOOKS_AT_ONCE
    clock: Clock = time.monotonic
    _objects: dict[str, _Followed] = field(default_factory=dict)
    _heap: list[tuple[float, int, str]] = field(default_factory=list)
    _ready: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _looks: set[asyncio.Task[None]] = field(default_factory=set)
    _kick: asyncio.Event | None = None
    _loop_task: asyncio.Task[None] | None = None
    _stopped: bool = False

    def follow(self, uid: str, *, due: Due, look: Look) -> None:
        """Follow an object (again: its callbacks are replaced), first look when due."""
        followed = self._objects.get(uid)
        if followed is None:
            self._objects[uid] = followed = _Followed(due, look)
        else:
            followed.due, followed.look = due, look
        self._schedule(uid, followed)
        self._start()

    def reschedule(self, uid: str) -> None:
        """Its due time may have moved earlier (a status another writer changed)."""
        followed = self._objects.get(uid)
        if followed is not None:
            self._schedule(uid, followed)

    def unfollow(self, uid: str) -> None:
        """No more looks (a look under way finishes)."""
        self._objects.pop(uid, None)
        self._ready.pop(uid, None)

    def wake(self, uid: str) -> bool:
        """Look at the object now (after its look under way); False if not followed."""
        followed = self._objects.get(uid)
        if followed is None:
            return False
        followed.woken = True
        if not followed.running:
            self._enqueue(uid)
        return True

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, uid: object) -> bool:
        return uid in self._objects

    @property
    def looking(self) -> int:
        """Looks under way."""
        return len(self._looks)

    async def stop(self, wait: float = STOP_WAIT) -> None:
        """No new looks; those under way get `wait` seconds to finish (a server write
        and the status saying so are not torn apart)."""
        self._stopped = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._looks:
            await asyncio.wait(set(self._looks), timeout=wait)

    # --- the loop ---------------------------------------------------------------------

    def _start(self) -> None:
        if self._loop_task is None and not self._stopped:
            self._kick = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    def _poke(self) -> None:
        if self._kick is not None:
            self._kick.set()

    def _schedule(self, uid: str, followed: _Followed) -> None:
        when = followed.due()
        if when < followed.scheduled:
            followed.scheduled = when
            heapq.heappush(self._heap, (when, next(self._order), uid))
            if self._heap[0][2] == uid:
                self._poke()  # sooner than what the loop sleeps for

    def _enqueue(self, uid: str) -> None:
        if uid not in self._ready:
            self._ready[uid] = None
            self._poke()

    async def _run(self) -> None:
        assert self._kick is not None
        while True:
            self._kick.clear()
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, uid = heapq.heappop(self._heap)
                followed = self._objects.get(uid)
                if followed is not None and followed.scheduled == when:
                    followed.scheduled = NEVER
                    self._enqueue(uid)
            while self._ready and len(self._looks) < self.limit:
                uid = next(iter(self._ready))
                del self._ready[uid]
                self._begin(uid)
            wait = None if self._ready or not self._heap else max(0.0, self._heap[0][0] - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), wait)

    def _begin(self, uid: str) -> None:
        followed = self._objects.get(uid)
        if followed is None:
            return
        if followed.running:
            return  # looked at again when this look ends (it is woken or rescheduled)
        woken, followed.woken = followed.woken, False
        if not woken and self.clock() < followed.due():
            self._schedule(uid, followed)  # someone else reconciled meanwhile: due later
            return
        followed.running = True
        task = asyncio.get_running_loop().create_task(followed.look(woken))
        self._looks.add(task)
        task.add_done_callback(lambda done: self._ended(uid, followed, done))

    def _ended(self, uid: str, followed: _Followed, task: asyncio.Task[None]) -> None:
        self._looks.discard(task)
        followed.running = False
        if not task.cancelled() and task.exception() is not None:
            log.error("a background reconcile failed", exc_info=task.exception())
        if self._objects.get(uid) is followed:
            if followed.woken:
                self._enqueue(uid)
            else:
                self._schedule(uid, followed)
        self._poke()  # a slot is free


class Pace:
    """When each object's last reconcile ended (monotonic clock), whoever ran it."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._ended: dict[str, float] = {}

    def done(self, uid: str) -> None:
        self._ended[uid] = self.clock()

    def last(self, uid: str) -> float | None:
        return self._ended.get(uid)

    def forget(self, uid: str) -> None:
        self._ended.pop(uid, None)
