"""When each object is looked at again, and how a change feed wakes it sooner.

Every Replication and ReplicationPolicy has one long-lived task (a kopf daemon) that
reconciles it when its next look is due (the resync interval after its last
reconcile, shorter while the server works on something and no feed reports on it),
or at once when woken. A kopf timer cannot be woken, which is why these are daemons.

A `Waker` is a future and a timer handle while its task waits: no task of its own,
so thousands of idle objects cost little.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Waker:
    """Wakes one waiting task early; a wake while nobody waits is kept for the next wait
    (so a change that arrives during a reconcile is looked at right after it)."""

    __slots__ = ("_future", "_pending")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._pending = False

    def wake(self) -> None:
        self._pending = True
        if self._future is not None:
            _resolve(self._future)

    async def wait(self, timeout: float) -> bool:
        """Wait until woken (True) or for `timeout` seconds (False)."""
        if not self._pending and timeout > 0:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            handle = loop.call_later(timeout, _resolve, future)
            self._future = future
            try:
                await future
            finally:
                handle.cancel()
                self._future = None
        woken, self._pending = self._pending, False
        return woken


class Wakers:
    """The waker of each object (by uid) whose task is running."""

    def __init__(self) -> None:
        self._wakers: dict[str, Waker] = {}

    def add(self, uid: str) -> Waker:
        waker = self._wakers.setdefault(uid, Waker())
        return waker

    def remove(self, uid: str, waker: Waker) -> None:
        if self._wakers.get(uid) is waker:
            del self._wakers[uid]

    async def follow(self, uid: str, *, due: Callable[[], float],
                     look: Callable[[bool], Awaitable[None]]) -> None:
        """An object's daemon: `keep_up` with its own waker, until kopf cancels it
        (deletion, exit: not an error)."""
        waker = self.add(uid)
        try:
            await keep_up(waker, due=due, look=look)
        except asyncio.CancelledError:
            return
        finally:
            self.remove(uid, waker)

    def wake(self, uid: str) -> bool:
        """Wake the object's task; False if it has none (not running here)."""
        waker = self._wakers.get(uid)
        if waker is None:
            return False
        waker.wake()
        return True

    def __len__(self) -> int:
        return len(self._wakers)


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


_running: set[asyncio.Task[None]] = set()


def _finished(task: asyncio.Task[None]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("a background reconcile failed", exc_info=task.exception())


async def keep_up(waker: Waker, *, due: Callable[[], float],
                  look: Callable[[bool], Awaitable[None]], clock: Clock = time.monotonic
                  ) -> None:
    """Call `look(woken)` whenever the clock passes `due()` or the waker is woken;
    until cancelled. A look that is under way when the task is cancelled (the object
    is deleted, the operator stops) runs to its end: its server write and the status
    saying so are not torn apart."""
    while True:
        woken = await waker.wait(max(0.0, due() - clock()))
        if not woken and clock() < due():
            continue  # someone else reconciled meanwhile (a spec change): due later
        task = asyncio.ensure_future(look(woken))
        _running.add(task)
        task.add_done_callback(_finished)  # logs a failure: it must not end this loop
        with contextlib.suppress(Exception):
            await asyncio.shield(task)
