"""Pure: a ReplicationPolicy's cron schedule as an Eden scheduler job.

Eden's scheduler (web2py) repeats a job every `period` seconds from its `start_time`;
it has no cron. A schedule maps to a job only where its runs are evenly spaced:
`*/N * * * *` (N dividing 60), `0 */N * * *` (N dividing 24), `@hourly`, `@daily`,
`@weekly`, `M H * * *`, ... The first run is the schedule's next time (UTC); the
period is the constant gap. Anything else (`*/7 * * * *`, `0 9 * * 1-5`, a day of the
month) is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from replication_operator import cron
from replication_operator.errors import SpecError

FIELD = "spec.trigger.schedule"
DAY, WEEK = 86400, 7 * 86400
ALL_MONTHS = frozenset(range(1, 13))


@dataclass(frozen=True)
class FixedSchedule:
    period: int  # seconds between runs
    first_run: datetime  # UTC


def _refuse(expr: str, why: str) -> SpecError:
    return SpecError(f"{FIELD} {expr.strip()!r} cannot be an Eden job: Eden repeats a job at "
                     f"a fixed period, and {why} (fixed periods: */N minutes with N dividing "
                     f"60, every N hours with N dividing 24, hourly, daily, weekly)")


def fixed_schedule(expr: str, now: datetime, minimum: int = 1) -> FixedSchedule:
    """The period and first run of `expr`, or a SpecError saying why it has none."""
    try:
        parsed = cron.parse(expr)
    except cron.CronError as exc:
        raise SpecError(str(exc)) from None
    if parsed.month != ALL_MONTHS or not parsed.dom_star:
        raise _refuse(expr, "runs on some days of the month or months only")
    times = sorted(h * 3600 + m * 60 + s for h in parsed.hour for m in parsed.minute
                   for s in parsed.second)
    if parsed.dow_star:
        span = DAY
    elif len(parsed.dow) == 1 and len(times) == 1:
        span = WEEK
    else:
        raise _refuse(expr, "runs on some days of the week only")
    gaps = {b - a for a, b in pairwise(times)} | \
        {span - times[-1] + times[0]}
    if len(gaps) != 1:
        raise _refuse(expr, "the gaps between its runs differ")
    period = gaps.pop()
    if period < minimum:
        raise SpecError(f"{FIELD} {expr.strip()!r} runs every {period} s; Eden jobs here run at "
                        f"most every {minimum} s")
    return FixedSchedule(period=period, first_run=cron.next_run(parsed, now))
