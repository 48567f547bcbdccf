"""Cron → Eden's fixed job period: evenly spaced schedules map, the others are refused
with the reason; the first run is the schedule's next time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication_operator import cron
from replication_operator.backends.eden.schedule import fixed_schedule
from replication_operator.errors import SpecError

NOW = datetime(2025, 3, 4, 10, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(("expr", "period", "first"), [
    ("*/5 * * * *", 300, datetime(2025, 3, 4, 10, 10, tzinfo=UTC)),
    ("0 */6 * * *", 6 * 3600, datetime(2025, 3, 4, 12, 0, tzinfo=UTC)),
    ("@hourly", 3600, datetime(2025, 3, 4, 11, 0, tzinfo=UTC)),
    ("@daily", 86400, datetime(2025, 3, 5, 0, 0, tzinfo=UTC)),
    ("@weekly", 7 * 86400, datetime(2025, 3, 9, 0, 0, tzinfo=UTC)),
    ("30 2 * * *", 86400, datetime(2025, 3, 5, 2, 30, tzinfo=UTC)),
    ("15,45 * * * *", 1800, datetime(2025, 3, 4, 10, 15, tzinfo=UTC)),
    ("0 0 */2 * * *", 7200, datetime(2025, 3, 4, 12, 0, tzinfo=UTC)),
])
def test_evenly_spaced_schedules_map_to_a_period(expr: str, period: int,
                                                 first: datetime) -> None:
    schedule = fixed_schedule(expr, NOW, minimum=10)
    assert (schedule.period, schedule.first_run) == (period, first)


@pytest.mark.parametrize(("expr", "why"), [
    ("*/7 * * * *", "gaps between its runs differ"),
    ("0 */5 * * *", "gaps between its runs differ"),
    ("0 9 * * 1-5", "days of the week"),
    ("0 0 1 * *", "days of the month"),
    ("@monthly", "days of the month"),
    ("0 0 * 6 *", "months"),
    ("*/5 * * * * *", "every 5 s"),
    ("61 * * * *", "out of range"),
])
def test_other_schedules_are_refused_with_the_reason(expr: str, why: str) -> None:
    with pytest.raises(SpecError) as caught:
        fixed_schedule(expr, NOW, minimum=10)
    assert "spec.trigger.schedule" in str(caught.value) and why in str(caught.value)


@given(st.sampled_from([1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30]),
       st.integers(min_value=0, max_value=10**7))
def test_a_mapped_schedule_runs_exactly_when_cron_does(step: int, offset: int) -> None:
    """Eden's runs (first run + k times period) are the cron's next runs, one after another."""
    expr = f"*/{step} * * * *"
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)
    schedule = fixed_schedule(expr, now, minimum=10)
    parsed = cron.parse(expr)
    expected, when = [], now
    for _ in range(5):
        when = cron.next_run(parsed, when)
        expected.append(when)
    assert [schedule.first_run + timedelta(seconds=k * schedule.period)
            for k in range(5)] == expected
