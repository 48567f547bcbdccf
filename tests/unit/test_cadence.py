"""When objects are looked at again, how old a list they may decide on, and the Pacer
that looks at them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from replication_operator.backends.snapshot import Snapshot
from replication_operator.pacing import Pace, Pacer
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


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll with a deadline (the Pacer runs in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


class Recorder:
    """Looks that record themselves, each held until released when `hold` is set."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self.looks: list[tuple[str, bool]] = []
        self.running = 0
        self.most_at_once = 0
        self.hold: asyncio.Event | None = None

    def look(self, uid: str) -> Callable[[bool], Coroutine[Any, Any, None]]:
        async def look(woken: bool) -> None:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            try:
                if self.hold is not None:
                    await self.hold.wait()
                self.looks.append((uid, woken))
            finally:
                self.running -= 1
                self.pace.done(uid)
        return look


async def test_the_pacer_looks_when_due_and_when_woken() -> None:
    pace, pacer = Pace(), Pacer()
    rec = Recorder(pace)
    begun = pace.clock()
    pacer.follow("x", due=lambda: (pace.last("x") or begun) + (0.05 if not rec.looks else 60),
                 look=rec.look("x"))
    await until(lambda: len(rec.looks) == 1)  # due after 0.05 s
    assert pacer.wake("x") is True
    await until(lambda: len(rec.looks) == 2)
    assert rec.looks == [("x", False), ("x", True)]
    assert pacer.wake("unknown") is False
    await pacer.stop()


async def test_a_wake_during_a_look_is_looked_at_right_after_it() -> None:
    pace, pacer = Pace(), Pacer()
    rec = Recorder(pace)
    rec.hold = asyncio.Event()
    pacer.follow("x", due=lambda: 1e18, look=rec.look("x"))
    pacer.wake("x")
    await until(lambda: rec.running == 1)
    pacer.wake("x")
    pacer.wake("x")  # two wakes during one look: one more look
    rec.hold.set()
    await until(lambda: len(rec.looks) == 2)
    await asyncio.sleep(0.05)
    assert rec.looks == [("x", True), ("x", True)]
    await pacer.stop()


async def test_a_due_moved_later_by_another_reconcile_is_not_looked_at_early() -> None:
    pace, pacer = Pace(), Pacer()
    rec = Recorder(pace)
    begun = pace.clock()
    pacer.follow("x", due=lambda: (pace.last("x") or begun) + 0.1, look=rec.look("x"))
    await asyncio.sleep(0.05)
    pace.done("x")  # a spec change reconciled it: due 0.1 s from now
    await asyncio.sleep(0.08)
    assert rec.looks == []
    await until(lambda: len(rec.looks) == 1)
    await pacer.stop()


async def test_reschedule_brings_a_look_forward() -> None:
    pace, pacer = Pace(), Pacer()
    rec = Recorder(pace)
    every = [60.0]
    begun = pace.clock()
    pacer.follow("x", due=lambda: (pace.last("x") or begun) + every[0], look=rec.look("x"))
    await asyncio.sleep(0.02)
    every[0] = 0.01  # its status says busy now
    pacer.reschedule("x")
    await until(lambda: len(rec.looks) == 1)
    await pacer.stop()


async def test_at_most_limit_looks_at_once_and_every_object_gets_its_look() -> None:
    pace, pacer = Pace(), Pacer(limit=3)
    rec = Recorder(pace)
    rec.hold = asyncio.Event()
    for i in range(10):
        uid = f"u{i}"
        pacer.follow(uid, due=lambda uid=uid: 0.0 if pace.last(uid) is None else 1e18,
                     look=rec.look(uid))
    await until(lambda: rec.running == 3)
    await asyncio.sleep(0.05)
    assert rec.running == 3
    rec.hold.set()
    await until(lambda: len(rec.looks) == 10)
    assert rec.most_at_once == 3
    assert sorted(uid for uid, _ in rec.looks) == sorted(f"u{i}" for i in range(10))
    await pacer.stop()


async def test_a_failing_look_does_not_stop_the_pacer() -> None:
    pacer = Pacer()
    calls: list[str] = []

    async def failing(woken: bool) -> None:
        calls.append("bad")
        raise RuntimeError("boom")

    async def fine(woken: bool) -> None:
        calls.append("good")

    pacer.follow("bad", due=lambda: 1e18, look=failing)
    pacer.follow("good", due=lambda: 1e18, look=fine)
    pacer.wake("bad")
    await until(lambda: calls == ["bad"])
    pacer.wake("good")
    await until(lambda: calls == ["bad", "good"])
    await pacer.stop()


async def test_unfollowed_objects_are_not_looked_at_and_a_look_under_way_finishes() -> None:
    pace, pacer = Pace(), Pacer()
    rec = Recorder(pace)
    rec.hold = asyncio.Event()
    pacer.follow("x", due=lambda: 1e18, look=rec.look("x"))
    due_soon = pace.clock() + 0.05
    pacer.follow("y", due=lambda: due_soon, look=rec.look("y"))
    pacer.wake("x")
    await until(lambda: rec.running == 1)
    pacer.unfollow("x")
    pacer.unfollow("y")
    await asyncio.sleep(0.1)  # y's time passes
    assert "x" not in pacer and len(pacer) == 0
    assert pacer.wake("x") is False
    stopping = asyncio.ensure_future(pacer.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the look under way
    rec.hold.set()
    await asyncio.wait_for(stopping, 5)
    assert rec.looks == [("x", True)]  # and y, unfollowed before it was due, never


async def test_stop_gives_up_on_a_look_that_does_not_end() -> None:
    pacer = Pacer()
    forever = asyncio.Event()

    async def look(woken: bool) -> None:
        await forever.wait()

    pacer.follow("x", due=lambda: 0.0, look=look)
    await until(lambda: pacer.looking == 1)
    await asyncio.wait_for(pacer.stop(wait=0.05), 5)
    forever.set()
