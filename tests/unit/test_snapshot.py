"""The per-server list cache: one fetch for many concurrent askers, bounded age."""

from __future__ import annotations

import asyncio

import pytest

from replication_operator.backends.snapshot import Snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_askers_share_one_fetch() -> None:
    gate = asyncio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    snap = Snapshot(fetch)
    waiters = [asyncio.ensure_future(snap.get(max_age=10)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [1] * 50
    assert calls == 1


async def test_age_bound_and_invalidate() -> None:
    clock = Clock()
    counter = iter(range(100))

    async def fetch() -> int:
        return next(counter)

    snap = Snapshot(fetch, clock=clock)
    assert await snap.get(max_age=30) == 0
    clock.now = 29
    assert await snap.get(max_age=30) == 0
    clock.now = 31
    assert await snap.get(max_age=30) == 1
    snap.invalidate()
    assert await snap.get(max_age=30) == 2


async def test_a_failed_fetch_is_not_cached() -> None:
    attempts = 0

    async def fetch() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("down")
        return 7

    snap = Snapshot(fetch)
    with pytest.raises(RuntimeError):
        await snap.get(max_age=10)
    assert await snap.get(max_age=10) == 7


async def test_a_write_during_a_fetch_is_not_hidden_by_it() -> None:
    """A list call that began before a write must not answer for after the write: the
    operator would miss what it just created and create it again (409)."""
    server = {"items": 0}
    gates: list[asyncio.Event] = []

    async def fetch() -> int:
        seen = server["items"]  # the server answers with its state when asked
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()
        return seen

    snap = Snapshot(fetch)
    before = asyncio.ensure_future(snap.get(max_age=10))
    while not gates:  # until the first list call is on the wire
        await asyncio.sleep(0)
    server["items"] = 1  # a write lands while that list call is in flight...
    snap.invalidate()  # ...and the writer says so
    after = asyncio.ensure_future(snap.get(max_age=10))
    for _ in range(100):  # a second call: the first cannot answer for after the write
        if len(gates) == 2:
            break
        await asyncio.sleep(0)
    for gate in gates:
        gate.set()
    assert await before == 0
    assert await after == 1, "an asker after the write got the list from before it"
    assert await snap.get(max_age=10) == 1, "the older answer was stored as fresh"


async def test_update_applies_a_change_and_keeps_the_age() -> None:
    clock = Clock()
    counter = iter(range(100))

    async def fetch() -> list[int]:
        return [next(counter)]

    snap: Snapshot[list[int]] = Snapshot(fetch, clock=clock)
    assert snap.update(lambda v: [*v, 99]) is False  # nothing stored yet
    assert await snap.get(max_age=30) == [0]
    clock.now = 10
    assert snap.update(lambda v: [*v, 99]) is True
    assert await snap.get(max_age=30) == [0, 99]  # no fetch: the change is in the value
    clock.now = 31
    assert await snap.get(max_age=30) == [1]  # the list is due as before the change


async def test_a_fetch_in_flight_gets_the_changes_made_meanwhile() -> None:
    gate, begun = asyncio.Event(), asyncio.Event()
    answers = iter([["listed"], ["listed-2"]])

    async def fetch() -> list[str]:
        begun.set()
        await gate.wait()
        return next(answers)

    snap: Snapshot[list[str]] = Snapshot(fetch)
    first = asyncio.ensure_future(snap.get(max_age=30))
    await begun.wait()
    assert snap.update(lambda v: [*v, "new"]) is False  # nothing stored: only recorded
    gate.set()
    assert await first == ["listed", "new"]  # the fetch may predate the change
    assert snap.value == ["listed", "new"]
    snap.update(lambda v: [*v, "later"])  # no fetch in flight: the stored value only
    assert snap.value == ["listed", "new", "later"]
    snap.invalidate()
    assert await snap.get(max_age=30) == ["listed-2"]  # the log went with its fetch
