"""When objects are looked at again, how old a list they may decide on, and wakers."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from replication_operator.backends.snapshot import Snapshot
from replication_operator.pacing import Pace, Waker, Wakers, keep_up
from replication_operator.reconcile.cadence import (
    CLOSE_WAIT,
    FAST_POLL,
    fresh_enough,
    interval,
    policy_busy,
    replication_busy,
)


def test_a_scheduled_look_never_decides_on_the_list_its_previous_reconcile_saw() -> None:
    """The 58.6 s on CouchDB 3.5: created at 0, listed at 0.4 (after the create), the
    first resync 30 s after the object's first event found that list 29.6 s old —
    younger than the 30 s interval — and decided on it again."""
    last_end = 0.5  # the create handler's reconcile ended after its list (taken at 0.4)
    max_age = fresh_enough(now=30.0, last_end=last_end, interval=30.0)
    assert max_age < 30.0 - 0.4  # that list is too old now: the resync lists again
    assert fresh_enough(now=40.0, last_end=5.0, interval=30.0) == 30.0  # never older
    assert fresh_enough(now=40.0, last_end=None, interval=30.0) == 30.0
    assert fresh_enough(now=1.0, last_end=2.0, interval=30.0) == 0.0


@given(st.floats(0, 1e6), st.floats(0.001, 100), st.floats(0, 100), st.floats(1, 600))
def test_a_list_is_accepted_only_if_taken_after_the_previous_reconcile(
        last_end: float, taken_after: float, wait: float, every: float) -> None:
    now = last_end + wait
    max_age = fresh_enough(now, last_end, every)
    assert max_age <= every
    taken = last_end - taken_after  # a list taken before the previous reconcile ended
    assert now - taken > max_age


async def test_one_list_per_interval_for_many_objects_with_spread_phases() -> None:
    """Requests per resync do not grow with the number of objects: each looks at its own
    pace, and a list one of them took serves every other whose previous reconcile
    ended before it."""
    clock = [0.0]
    fetches = 0

    async def fetch() -> int:
        nonlocal fetches
        fetches += 1
        return fetches

    snap = Snapshot(fetch, clock=lambda: clock[0])
    every = 30.0
    last = {i: i * every / 100 for i in range(100)}  # 100 objects, spread phases
    while clock[0] < 10 * every:
        uid = min(last, key=lambda u: last[u])
        clock[0] = last[uid] + every
        await snap.get(fresh_enough(clock[0], last[uid], every))
        last[uid] = clock[0]
    assert fetches <= 12  # about one per interval (10 intervals), not one per object


def test_busy() -> None:
    assert replication_busy({"progress": {"pendingRecords": 3}})
    assert not replication_busy({"progress": {"pendingRecords": 0}})
    assert not replication_busy({"progress": {"docsWritten": 3}})
    assert not replication_busy({})
    assert not policy_busy({}, {}, 0.0)
    assert interval(busy=True, resync=30) == FAST_POLL
    assert interval(busy=True, resync=1) == 1
    assert interval(busy=False, resync=30) == 30


def test_a_harbor_execution_is_polled_until_closed_or_for_a_while_after_its_tasks() -> None:
    closing: dict[int, float] = {}
    running = {"lastExecution": {"id": 7, "status": "InProgress", "total": 2,
                                 "succeeded": 1, "inProgress": 1}}
    assert policy_busy(running, closing, 0.0) and closing == {}
    tasks_done = {"lastExecution": {"id": 7, "status": "InProgress", "total": 2,
                                    "succeeded": 2, "inProgress": 0, "tasksFinished": True}}
    assert policy_busy(tasks_done, closing, 10.0)  # Harbor closes it 20-30 s later
    assert policy_busy(tasks_done, closing, 10.0 + CLOSE_WAIT - 1)
    assert not policy_busy(tasks_done, closing, 10.0 + CLOSE_WAIT)  # and sometimes never
    closed = {"lastExecution": {"id": 7, "status": "Succeed", "total": 2, "succeeded": 2}}
    assert not policy_busy(closed, closing, 100.0) and closing == {}


async def test_a_waker_wakes_a_waiting_task_and_keeps_an_early_wake() -> None:
    waker = Waker()
    waiting = asyncio.ensure_future(waker.wait(60))
    await asyncio.sleep(0)
    waker.wake()
    assert await asyncio.wait_for(waiting, 5) is True
    waker.wake()  # nobody waits: kept for the next wait
    assert await waker.wait(60) is True
    assert await waker.wait(0.01) is False


async def test_wakers_by_uid() -> None:
    wakers = Wakers()
    assert wakers.wake("u") is False
    mine = wakers.add("u")
    assert wakers.wake("u") is True
    assert await mine.wait(60) is True
    wakers.remove("u", Waker())  # not the registered one: kept
    assert len(wakers) == 1
    wakers.remove("u", mine)
    assert len(wakers) == 0


async def test_keep_up_looks_when_due_and_when_woken() -> None:
    clock = Pace()
    waker = Waker()
    looks: list[bool] = []
    seen = asyncio.Event()

    async def look(woken: bool) -> None:
        looks.append(woken)
        clock.done("x")
        seen.set()

    last = clock.clock()
    task = asyncio.ensure_future(keep_up(
        waker, due=lambda: (clock.last("x") or last) + (0.05 if not looks else 60),
        look=look))
    await asyncio.wait_for(seen.wait(), 5)  # due after 0.05 s
    seen.clear()
    waker.wake()
    await asyncio.wait_for(seen.wait(), 5)
    task.cancel()
    assert looks == [False, True]


async def test_a_look_under_way_finishes_when_its_task_is_cancelled() -> None:
    waker = Waker()
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def look(woken: bool) -> None:
        started.set()
        await release.wait()
        finished.set()

    task = asyncio.ensure_future(keep_up(waker, due=lambda: 0.0, look=look))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    release.set()
    await asyncio.wait_for(finished.wait(), 5)


async def test_a_failing_look_does_not_end_the_loop() -> None:
    waker = Waker()
    calls = 0
    first, second = asyncio.Event(), asyncio.Event()

    async def look(woken: bool) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            first.set()
            raise RuntimeError("boom")
        second.set()

    task = asyncio.ensure_future(keep_up(waker, due=lambda: 1e18, look=look))
    waker.wake()
    await asyncio.wait_for(first.wait(), 5)
    waker.wake()
    await asyncio.wait_for(second.wait(), 5)
    task.cancel()
    assert calls == 2
