"""Cron expressions of `spec.trigger.schedule`: parse, convert to Harbor's form, next run.

Accepted: 5 fields (minute hour day-of-month month day-of-week, as in a Kubernetes
CronJob; the second is 0) or 6 fields (second first, as Harbor stores them), or one of
the macros @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly (any
case). Per field: `*`, `?` (day-of-month and day-of-week only), `N`, `A-B`, `*/S`,
`A-B/S`, `A/S` (A to the field's maximum), comma lists of these, month names JAN-DEC
and day names SUN-SAT (any case); day-of-week 0-6 with 7 also meaning Sunday.

Semantics are those of robfig/cron v3, which both Harbor and Kubernetes run: when
day-of-month and day-of-week are both restricted a day matches if either matches,
otherwise both must. A field counts as unrestricted when one of its list items is
`*` or `?` without a step (or with step 1), so `*/2` is a restriction. Only UTC is
used; there is no daylight saving time. Like robfig, a schedule with no run within
five years (e.g. 30 February) has no next run.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PATH = "spec.trigger.schedule"
SEARCH_YEARS = 5

_MACROS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_NUMBER = re.compile(r"[0-9]+")
_MONTHS = {name: i + 1 for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


class CronError(ValueError):
    """An expression that cannot be understood; the message says where and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{PATH}: {detail}")


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression: the allowed values of each field (dow: 0 = Sunday)."""

    second: frozenset[int]
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]
    dom_star: bool  # day-of-month unrestricted (`*` or `?`)
    dow_star: bool  # day-of-week unrestricted (`*` or `?`)


@dataclass(frozen=True, eq=False)
class _Field:
    name: str
    lo: int
    hi: int  # the maximum `*` and `A/S` reach
    top: int  # the largest value that may be written (7 for day-of-week)
    names: Mapping[str, int] | None = None
    hint: str = ""
    question: bool = False


_FIELDS = (
    _Field("second", 0, 59, 59),
    _Field("minute", 0, 59, 59),
    _Field("hour", 0, 23, 23),
    _Field("day-of-month", 1, 31, 31, question=True),
    _Field("month", 1, 12, 12, _MONTHS, "JAN-DEC"),
    _Field("day-of-week", 0, 6, 7, _DAYS, "SUN-SAT", question=True),
)


def _fields(expr: str) -> list[str]:
    """The six field texts of an expression (macro expanded, second 0 prepended)."""
    if not isinstance(expr, str):
        raise CronError(f"must be a string, got {type(expr).__name__}")
    parts = expr.split()
    if not parts:
        raise CronError("is empty; expected a cron expression such as '0 3 * * *'")
    if parts[0].startswith("@"):
        macro = _MACROS.get(parts[0].lower())
        if macro is None or len(parts) != 1:
            raise CronError(f"macro {expr.strip()!r} is not supported; use 5 or 6 fields "
                            f"or one of {', '.join(_MACROS)}")
        parts = macro.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise CronError(f"{expr.strip()!r} has {len(parts)} fields; expected 5 (minute hour "
                        "day-of-month month day-of-week) or 6 (second first)")
    return parts


def _value(field: _Field, token: str, item: str) -> int:
    where = "" if token == item else f" in {item!r}"
    if _NUMBER.fullmatch(token):
        value = int(token)
        if not field.lo <= value <= field.top:
            raise CronError(f"field {field.name!r} value {token!r}{where} is out of range "
                            f"{field.lo}-{field.top}")
        return value
    if field.names is not None and token.lower() in field.names:
        return field.names[token.lower()]
    if not token:
        raise CronError(f"field {field.name!r} value {item!r} is malformed")
    kind = f"a number or a name {field.hint}" if field.names is not None else "a number"
    raise CronError(f"field {field.name!r} value {token!r}{where} is not {kind}")


def _item(field: _Field, item: str, text: str) -> tuple[set[int], bool]:
    """Values of one list item and whether it leaves the field unrestricted."""
    if not item:
        raise CronError(f"field {field.name!r} value {text!r} has an empty list item")
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_text):
            raise CronError(f"field {field.name!r} value {item!r} has step {step_text!r}, "
                            "which is not a positive number")
        step = int(step_text)
        if step == 0:
            raise CronError(f"field {field.name!r} value {item!r} has step 0; "
                            "the step must be at least 1")
    if base in ("*", "?"):
        if base == "?" and not field.question:
            raise CronError(f"field {field.name!r} value {item!r}: '?' is allowed only in "
                            "day-of-month and day-of-week")
        start, end, star = field.lo, field.hi, step == 1
    else:
        first, dash, last = base.partition("-")
        start = _value(field, first, item)
        if dash:
            end = _value(field, last, item)
        elif slash:
            end = max(field.hi, start)
        else:
            end = start
        if start > end:
            raise CronError(f"field {field.name!r} value {item!r} is a reversed range "
                            "(start after end)")
        star = False
    values = set(range(start, end + 1, step))
    if field.top > field.hi:  # day-of-week: 7 is Sunday
        values = {0 if v == 7 else v for v in values}
    return values, star


def _field(field: _Field, text: str) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for item in text.split(","):
        item_values, item_star = _item(field, item, text)
        values |= item_values
        star = star or item_star
    return frozenset(values), star


def _schedule(parts: Sequence[str]) -> CronSchedule:
    parsed = [_field(field, text) for field, text in zip(_FIELDS, parts, strict=True)]
    (second, _), (minute, _), (hour, _), (dom, dom_star), (month, _), (dow, dow_star) = parsed
    return CronSchedule(second, minute, hour, dom, month, dow, dom_star, dow_star)


def parse(expr: str) -> CronSchedule:
    """Parse a 5- or 6-field expression (or a macro); raises CronError."""
    return _schedule(_fields(expr))


def _compact(values: frozenset[int]) -> str:
    """`0,2-4,6` for {0, 2, 3, 4, 6}."""
    runs: list[list[int]] = []
    for v in sorted(values):
        if runs and runs[-1][1] == v - 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def to_six_fields(expr: str) -> str:
    """The 6-field form Harbor accepts, single-spaced; validates via parse.

    Macros are expanded. A day-of-week field that writes 7 for Sunday (robfig rejects 7)
    is rewritten as an equivalent list of 0-6; every other field is kept as written.
    """
    parts = _fields(expr)
    schedule = _schedule(parts)
    dow_tokens = (t for item in parts[5].split(",") for t in item.partition("/")[0].split("-"))
    if any(_NUMBER.fullmatch(t) and int(t) == 7 for t in dow_tokens):
        parts[5] = "*" if schedule.dow_star else _compact(schedule.dow)
    return " ".join(parts)


def _day_matches(schedule: CronSchedule, year: int, month: int, day: int) -> bool:
    dom_ok = day in schedule.dom
    dow_ok = (calendar.weekday(year, month, day) + 1) % 7 in schedule.dow
    if schedule.dom_star or schedule.dow_star:
        return dom_ok and dow_ok
    return dom_ok or dow_ok


def _first_from(values: Sequence[int], start: int) -> int | None:
    """The smallest of the sorted `values` that is >= start, or None."""
    i = bisect_left(values, start)
    return values[i] if i < len(values) else None


def next_run(schedule: CronSchedule, after: datetime) -> datetime:
    """The first matching instant strictly after `after` (aware; the result is UTC).

    Searches field by field (month, day, hour, minute, second); raises CronError when
    nothing matches within five years.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("next_run needs a timezone-aware datetime")
    start = after.astimezone(UTC).replace(microsecond=0, tzinfo=None) + timedelta(seconds=1)
    months, hours = sorted(schedule.month), sorted(schedule.hour)
    minutes, seconds = sorted(schedule.minute), sorted(schedule.second)
    y, mo, d, h, mi, s = start.year, start.month, start.day, start.hour, start.minute, start.second
    limit = min(y + SEARCH_YEARS, datetime.max.year)
    # A field that overflows (mo 13, d past the month's end, h 24, mi 60) finds no value
    # and carries into the field above it, resetting those below.
    while y <= limit:
        found = _first_from(months, mo)
        if found is None:
            y, mo, d, h, mi, s = y + 1, months[0], 1, 0, 0, 0
            continue
        if found != mo:
            mo, d, h, mi, s = found, 1, 0, 0, 0
        last = calendar.monthrange(y, mo)[1]
        found = next((x for x in range(d, last + 1) if _day_matches(schedule, y, mo, x)), None)
        if found is None:
            mo, d, h, mi, s = mo + 1, 1, 0, 0, 0
            continue
        if found != d:
            d, h, mi, s = found, 0, 0, 0
        found = _first_from(hours, h)
        if found is None:
            d, h, mi, s = d + 1, 0, 0, 0
            continue
        if found != h:
            h, mi, s = found, 0, 0
        found = _first_from(minutes, mi)
        if found is None:
            h, mi, s = h + 1, 0, 0
            continue
        if found != mi:
            mi, s = found, 0
        found = _first_from(seconds, s)
        if found is None:
            mi, s = mi + 1, 0
            continue
        return datetime(y, mo, d, h, mi, found, tzinfo=UTC)
    raise CronError(f"no run time within {SEARCH_YEARS} years after "
                    f"{after.astimezone(UTC).isoformat()}; does the day exist in those months?")
