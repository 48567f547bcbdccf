"""A single-flight, age-bounded cache for per-server list calls.

Every resource on a server asks the same question ("what jobs exist?"). Whoever asks
first triggers one list call; everyone asking meanwhile awaits that same call; later
askers get the stored answer until it is older than they accept. That keeps the
number of backend requests per resync proportional to servers, not resources.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Snapshot(Generic[T]):
    def __init__(self, fetch: Callable[[], Awaitable[T]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._value: T | None = None
        self._taken_at = float("-inf")
        self._inflight: asyncio.Future[T] | None = None
        # Bumped by every invalidate(): a fetch that began before a write may not show
        # it, so it is neither joined nor stored by anyone asking after the write.
        self._generation = 0
        self._inflight_generation = -1
        # Changes applied by update() while a fetch is in flight, numbered: a fetch that
        # lands gets those made after it began applied to its answer as well.
        self._changes: list[tuple[int, Callable[[T], T]]] = []
        self._changed = 0
        self.fetches = 0

    def invalidate(self) -> None:
        """Forget the stored answer (after a write that changed the server)."""
        self._taken_at = float("-inf")
        self._generation += 1

    @property
    def value(self) -> T | None:
        """The stored answer, whatever its age (None before the first fetch)."""
        return self._value

    def update(self, change: Callable[[T], T]) -> bool:
        """Apply a known change of the server (a change feed's, or a write's own answer)
        to the stored answer, keeping its age: the next list is due when it would have
        been. A fetch in flight gets it too when it lands (it may have begun before the
        change), so `change` must be safe to apply to an answer that already shows it.
        False when nothing is stored (the next ask fetches, and sees the change)."""
        self._changed += 1
        if self._inflight is not None and not self._inflight.done():
            self._changes.append((self._changed, change))
        if self._value is None:
            return False
        self._value = change(self._value)
        return True

    async def get(self, max_age: float) -> T:
        if self._value is not None and self._clock() - self._taken_at <= max_age:
            return self._value
        if self._inflight is None or self._inflight_generation != self._generation:
            self._inflight_generation = self._generation
            self._inflight = asyncio.ensure_future(self._refresh(self._generation))
        # shield: one waiter being cancelled must not cancel the shared fetch
        return await asyncio.shield(self._inflight)

    async def _refresh(self, generation: int) -> T:
        started, changed = self._clock(), self._changed
        try:
            value = await self._fetch()
            self.fetches += 1
            for number, change in self._changes:
                if number > changed:  # known after the fetch began: maybe not in it
                    value = change(value)
            if generation == self._generation:  # nothing invalidated since it began
                self._value, self._taken_at = value, started
            return value
        finally:
            if self._inflight_generation == generation:
                self._inflight = None
                self._changes.clear()
