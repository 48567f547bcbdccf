"""Cron schedules: parsing, Harbor's 6-field form, next run time (UTC only, no DST)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication_operator.cron import CronError, CronSchedule, next_run, parse, to_six_fields

ALL_DAYS = frozenset(range(7))


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
       ) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def r(a: int, b: int, step: int = 1) -> frozenset[int]:
    return frozenset(range(a, b + 1, step))


# --- parsing ---------------------------------------------------------------------------

def test_five_fields_put_second_zero() -> None:
    s = parse("*/15 3 * * *")
    assert s == CronSchedule(frozenset({0}), frozenset({0, 15, 30, 45}), frozenset({3}),
                             r(1, 31), r(1, 12), ALL_DAYS, True, True)


def test_six_fields_have_second_first() -> None:
    s = parse("30 0 12 * * *")
    assert (s.second, s.minute, s.hour) == ({30}, {0}, {12})


@pytest.mark.parametrize(("field", "expected"), [
    ("7", {7}),
    ("1-4", {1, 2, 3, 4}),
    ("*/20", {0, 20, 40}),
    ("10-30/10", {10, 20, 30}),
    ("50/3", {50, 53, 56, 59}),
    ("1,5,7-8", {1, 5, 7, 8}),
    ("*/100", {0}),
    ("05", {5}),
])
def test_minute_syntax(field: str, expected: set[int]) -> None:
    assert parse(f"{field} * * * *").minute == expected


@pytest.mark.parametrize(("field", "expected"), [
    ("JAN", {1}), ("dec", {12}), ("Mar-May", {3, 4, 5}), ("jan,JUL", {1, 7}),
    ("FEB/4", {2, 6, 10}), ("*/3", {1, 4, 7, 10}),
])
def test_month_names(field: str, expected: set[int]) -> None:
    assert parse(f"0 0 1 {field} *").month == expected


@pytest.mark.parametrize(("field", "expected"), [
    ("SUN", {0}), ("sat", {6}), ("Mon-Fri", {1, 2, 3, 4, 5}), ("7", {0}), ("0", {0}),
    ("5-7", {5, 6, 0}), ("*/2", {0, 2, 4, 6}), ("1/2", {1, 3, 5}), ("0-7/7", {0}),
])
def test_weekday_names_and_seven(field: str, expected: set[int]) -> None:
    assert parse(f"0 0 * * {field}").dow == expected


@pytest.mark.parametrize(("dom", "dow", "dom_star", "dow_star"), [
    ("*", "*", True, True),
    ("?", "MON", True, False),
    ("1", "?", False, True),
    ("*/1", "1", True, False),
    ("*/2", "1", False, False),  # robfig v3: a step > 1 restricts
    ("1,*", "1", True, False),
    ("1-31", "0-6", False, False),
])
def test_star_flags(dom: str, dow: str, dom_star: bool, dow_star: bool) -> None:
    s = parse(f"0 0 {dom} * {dow}")
    assert (s.dom_star, s.dow_star) == (dom_star, dow_star)


@pytest.mark.parametrize("expr", ["@yearly", "@annually", "@monthly", "@weekly", "@daily",
                                  "@midnight", "@hourly", "@DAILY"])
def test_macros(expr: str) -> None:
    assert parse(expr) == parse(to_six_fields(expr))


@pytest.mark.parametrize(("expr", "needles"), [
    ("0 25 * * *", ["field 'hour'", "'25'", "out of range 0-23"]),
    ("60 * * * * *", ["field 'second'", "'60'", "0-59"]),
    ("0 0 0 0 * *", ["field 'day-of-month'", "'0'", "1-31"]),
    ("0 0 1 13 *", ["field 'month'", "'13'", "1-12"]),
    ("0 0 * * 8", ["field 'day-of-week'", "'8'", "0-7"]),
    ("0 0-24 * * *", ["field 'hour'", "'24'", "out of range"]),
    ("*/0 * * * *", ["field 'minute'", "'*/0'", "step 0"]),
    ("0 1-5/0 * * *", ["field 'hour'", "step 0"]),
    ("*/x * * * *", ["field 'minute'", "step 'x'"]),
    ("1/2/3 * * * *", ["field 'minute'", "not a positive number"]),
    ("5-1 * * * *", ["field 'minute'", "'5-1'", "reversed"]),
    ("0 0 * * FRI-MON", ["field 'day-of-week'", "reversed"]),
    ("0 0 1 FOO *", ["field 'month'", "'FOO'", "JAN-DEC"]),
    ("0 0 * * FUN", ["field 'day-of-week'", "'FUN'", "SUN-SAT"]),
    ("0 0 * JANUARY *", ["field 'month'", "'JANUARY'"]),
    ("MON * * * *", ["field 'minute'", "'MON'", "not a number"]),
    ("1,,2 * * * *", ["field 'minute'", "empty list item"]),
    (",1 * * * *", ["field 'minute'", "empty list item"]),
    ("0 0 1, * *", ["field 'day-of-month'", "empty list item"]),
    ("1- * * * *", ["field 'minute'", "'1-'", "malformed"]),
    ("-5 * * * *", ["field 'minute'", "'-5'"]),
    ("/5 * * * *", ["field 'minute'", "'/5'"]),
    ("+5 * * * *", ["field 'minute'", "'+5'"]),
    ("1-2-3 * * * *", ["field 'minute'", "'1-2-3'"]),
    ("? * * * *", ["field 'minute'", "'?'"]),
    ("0 ? * * *", ["field 'hour'", "'?'"]),
    ("0 0 * ? *", ["field 'month'", "'?'"]),
    ("* * * *", ["4 fields", "expected 5"]),
    ("0 0 0 1 1 * 2030", ["7 fields"]),
    ("", ["is empty"]),
    ("   ", ["is empty"]),
    ("@every 5m", ["'@every 5m'", "not supported", "@daily"]),
    ("@reboot", ["'@reboot'", "not supported"]),
    ("@daily extra", ["not supported"]),
])
def test_errors_name_the_field(expr: str, needles: list[str]) -> None:
    with pytest.raises(CronError) as err:
        parse(expr)
    message = str(err.value)
    assert message.startswith("spec.trigger.schedule: ")
    for needle in needles:
        assert needle in message
    with pytest.raises(CronError):
        to_six_fields(expr)


def test_error_message_matches_the_documented_form() -> None:
    with pytest.raises(CronError, match=r"^spec\.trigger\.schedule: field 'hour' value '25' "
                                        r"is out of range 0-23$"):
        parse("0 25 * * *")


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)


def test_non_string_is_rejected() -> None:
    with pytest.raises(CronError, match="must be a string"):
        parse(None)  # type: ignore[arg-type]


# --- to_six_fields ---------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "six"), [
    ("*/5 * * * *", "0 */5 * * * *"),
    ("0 3 * * *", "0 0 3 * * *"),
    ("  0\t3  *  * \n *  ", "0 0 3 * * *"),
    ("15 0 3 * * *", "15 0 3 * * *"),
    ("0  0  3 ? * MON-FRI", "0 0 3 ? * MON-FRI"),
    ("0 0 1 jan,Jul *", "0 0 0 1 jan,Jul *"),
    ("0 0 * * 7", "0 0 0 * * 0"),
    ("0 0 * * 5-7", "0 0 0 * * 0,5-6"),
    ("0 0 * * 1-7", "0 0 0 * * 0-6"),
    ("0 0 * * *,7", "0 0 0 * * *"),
    ("0 0 * * */7", "0 0 0 * * */7"),  # 7 as a step is fine for robfig
    ("0 0 * * 07", "0 0 0 * * 0"),
    ("@daily", "0 0 0 * * *"),
    ("@weekly", "0 0 0 * * 0"),
    ("@hourly", "0 0 * * * *"),
    ("@monthly", "0 0 0 1 * *"),
    ("@yearly", "0 0 0 1 1 *"),
])
def test_to_six_fields(expr: str, six: str) -> None:
    assert to_six_fields(expr) == six
    assert parse(six) == parse(expr)


def test_rewritten_weekday_keeps_or_rule() -> None:
    # dom restricted and dow restricted before and after the rewrite of 7
    assert parse(to_six_fields("0 0 1 * 1-7")).dow_star is False


# --- next_run examples ------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("*/5 * * * *", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 5)),  # strictly after
    ("*/5 * * * *", at(2024, 1, 1, 0, 4, 59), at(2024, 1, 1, 0, 5)),
    ("* * * * * *", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 0, 1)),
    ("0 0 * * *", at(2023, 12, 31, 12), at(2024, 1, 1)),  # year rollover
    ("0 0 31 * *", at(2024, 4, 1), at(2024, 5, 31)),  # April has no 31st
    ("0 12 1 * *", at(2024, 1, 31, 13), at(2024, 2, 1, 12)),  # month end
    ("0 0 29 2 *", at(2021, 3, 1), at(2024, 2, 29)),  # leap year
    ("0 0 29 2 *", at(2024, 2, 29), at(2028, 2, 29)),
    ("0 0 29 2 *", at(2099, 1, 1), at(2104, 2, 29)),  # 2100 is no leap year
    ("0 0 29 2 *", at(2098, 3, 1), None),  # 2104 is past 2098 + 5, as in robfig
    ("0 0 30 2 *", at(2024, 1, 1), None),
    ("0 0 0 30 2 *", at(2024, 1, 1), None),
    ("0 0 31 4,6,9,11 *", at(2024, 1, 1), None),
    ("0 0 * * MON", at(2024, 5, 1), at(2024, 5, 6)),  # 2024-05-01 is a Wednesday
    ("0 0 * * 7", at(2024, 5, 1), at(2024, 5, 5)),
    ("0 0 13 * FRI", at(2024, 1, 1), at(2024, 1, 5)),  # both restricted: either
    ("0 0 13 * FRI", at(2024, 1, 12, 1), at(2024, 1, 13)),
    ("0 0 ? * FRI", at(2024, 1, 1), at(2024, 1, 5)),
    ("0 0 13 * ?", at(2024, 1, 1), at(2024, 1, 13)),
    ("0 0 */2 * MON", at(2024, 5, 1, 1), at(2024, 5, 3)),  # */2 restricts: either
    ("0 0 */1 * MON", at(2024, 5, 1, 1), at(2024, 5, 6)),  # */1 is '*': both
    ("30 59 23 31 12 *", at(2024, 12, 31, 23, 59, 30), at(2025, 12, 31, 23, 59, 30)),
    ("0 0 0 1 1 *", at(2024, 6, 1), at(2025, 1, 1)),
    ("0 0 0 29 2 1", at(2024, 1, 1), at(2024, 2, 5)),  # Mondays of February, or the 29th
    ("@hourly", at(2024, 2, 29, 23, 30), at(2024, 3, 1)),
])
def test_next_run_examples(expr: str, after: datetime, expected: datetime | None) -> None:
    schedule = parse(expr)
    if expected is None:
        with pytest.raises(CronError, match=r"^spec\.trigger\.schedule: no run time within 5"):
            next_run(schedule, after)
    else:
        assert next_run(schedule, after) == expected


def test_next_run_drops_sub_seconds_but_stays_strictly_after() -> None:
    s = parse("* * * * * *")
    assert next_run(s, at(2024, 1, 1, 0, 0, 0).replace(microsecond=999_999)) == \
        at(2024, 1, 1, 0, 0, 1)


def test_next_run_takes_any_aware_time_and_answers_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    result = next_run(parse("0 0 * * *"), datetime(2024, 3, 31, 1, 30, tzinfo=plus_two))
    assert result == at(2024, 3, 31)  # 2024-03-30T23:30Z
    assert result.tzinfo is UTC


def test_next_run_has_no_dst() -> None:
    # 02:30 does not exist in much of Europe on 2024-03-31; in UTC it always does
    assert next_run(parse("30 2 * * *"), at(2024, 3, 31)) == at(2024, 3, 31, 2, 30)
    assert next_run(parse("30 1 * * *"), at(2024, 10, 27, 1, 30)) == at(2024, 10, 28, 1, 30)


def test_next_run_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(parse("* * * * *"), datetime(2024, 1, 1))


def test_next_run_skips_by_field_not_by_second() -> None:
    # a second-by-second search would need ~1.3e8 steps for these
    s = parse("59 59 23 29 2 *")
    assert next_run(s, at(2000, 3, 1)) == at(2004, 2, 29, 23, 59, 59)
    with pytest.raises(CronError):
        next_run(parse("0 0 0 31 2 *"), at(2000, 1, 1))


# --- properties -------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """What the test expects an expression to mean, built alongside its text."""

    second: frozenset[int]
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]
    dom_star: bool
    dow_star: bool


MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
               "DEC"]
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@st.composite
def field(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None = None,
          question: bool = False, top: int | None = None) -> tuple[str, frozenset[int], bool]:
    """(text, values, unrestricted) of a random field between lo and hi."""
    top = hi if top is None else top
    name_base = lo if names is None else (1 if len(names) == 12 else 0)

    def show(v: int) -> str:
        if names is not None and 0 <= v - name_base < len(names) and draw(st.booleans()):
            name = names[v - name_base]
            return draw(st.sampled_from([name, name.lower(), name.capitalize()]))
        return str(v)

    def one() -> tuple[str, set[int], bool]:
        kinds = ["star", "value", "range", "star_step", "range_step", "start_step"]
        kind = draw(st.sampled_from([*kinds, "question"] if question else kinds))
        value = st.integers(lo, top)
        step = draw(st.integers(1, hi - lo + 2))
        if kind in ("star", "question"):
            return ("*" if kind == "star" else "?"), set(range(lo, hi + 1)), True
        if kind == "value":
            v = draw(value)
            return show(v), {v}, False
        if kind == "star_step":
            return f"*/{step}", set(range(lo, hi + 1, step)), step == 1
        if kind == "start_step":
            a = draw(st.integers(lo, hi))
            return f"{show(a)}/{step}", set(range(a, hi + 1, step)), False
        a, b = sorted((draw(value), draw(value)))
        if kind == "range":
            return f"{show(a)}-{show(b)}", set(range(a, b + 1)), False
        return f"{show(a)}-{show(b)}/{step}", set(range(a, b + 1, step)), False

    items = [one() for _ in range(draw(st.integers(1, 3)))]
    values = frozenset(0 if v == 7 and top == 7 else v for _, vs, _ in items for v in vs)
    return ",".join(t for t, _, _ in items), values, any(star for _, _, star in items)


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, Spec]:
    """A random valid expression and what it means; the second field is kept small."""
    six = draw(st.booleans())
    second = (draw(st.sampled_from([("0", {0}), ("*/20", {0, 20, 40}), ("15,45", {15, 45}),
                                    ("59", {59})])) if six else ("", {0}))
    minute, hour = draw(field(0, 59)), draw(field(0, 23))
    dom = draw(field(1, 31, question=True))
    month = draw(field(1, 12, MONTH_NAMES))
    dow = draw(field(0, 6, DAY_NAMES, question=True, top=7))
    texts = [second[0]] if six else []
    texts += [minute[0], hour[0], dom[0], month[0], dow[0]]
    spec = Spec(frozenset(second[1]), minute[1], hour[1], dom[1], month[1], dow[1],
                dom[2], dow[2])
    return " ".join(texts), spec


afters = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31, 23, 59),
                      timezones=st.just(UTC))


def day_ok(spec: Spec, day: date) -> bool:
    if day.month not in spec.month:
        return False
    dom_ok, dow_ok = day.day in spec.dom, day.isoweekday() % 7 in spec.dow
    return (dom_ok and dow_ok) if spec.dom_star or spec.dow_star else (dom_ok or dow_ok)


def matches(spec: Spec, t: datetime) -> bool:
    return (day_ok(spec, t.date()) and t.hour in spec.hour and t.minute in spec.minute
            and t.second in spec.second)


def assert_nothing_between(spec: Spec, after: datetime, result: datetime) -> None:
    """Brute force: no matching instant in (after, result). Days between the two ends
    must not match at all (any matching day has a matching time); the end days are
    scanned minute by minute, checking the few allowed seconds of each minute."""
    day = after.date()
    while day <= result.date():
        if day_ok(spec, day):
            assert day in (after.date(), result.date()), f"{day} matches but was skipped"
            t = max(datetime.combine(day, time(), UTC), after.replace(second=0, microsecond=0))
            end = min(datetime.combine(day, time(23, 59), UTC), result)
            while t <= end:
                if t.hour in spec.hour and t.minute in spec.minute:
                    for s in spec.second:
                        assert not after < t.replace(second=s) < result, t.replace(second=s)
                t += timedelta(minutes=1)
        day += timedelta(days=1)


@settings(max_examples=200)
@given(expressions(), afters)
def test_next_run_is_the_first_match_after(case: tuple[str, Spec], after: datetime) -> None:
    expr, spec = case
    schedule = parse(expr)
    assert schedule == CronSchedule(spec.second, spec.minute, spec.hour, spec.dom, spec.month,
                                    spec.dow, spec.dom_star, spec.dow_star)
    try:
        result = next_run(schedule, after)
    except CronError:
        # no matching day in the five years searched
        day, last = after.date() + timedelta(days=1), date(after.year + 5, 12, 31)
        while day <= last:
            assert not day_ok(spec, day), f"{expr!r} matches on {day}"
            day += timedelta(days=1)
        return
    assert result.tzinfo is UTC
    assert result > after
    assert result.microsecond == 0
    assert matches(spec, result)
    assert_nothing_between(spec, after, result)


@given(expressions())
def test_to_six_fields_keeps_the_meaning(case: tuple[str, Spec]) -> None:
    expr, _ = case
    six = to_six_fields(expr)
    assert len(six.split(" ")) == 6
    assert parse(six) == parse(expr)
    assert to_six_fields(six) == six
    # robfig (Harbor) accepts day-of-week 0-6 only
    dow_numbers = [t for item in six.split(" ")[5].split(",")
                   for t in item.partition("/")[0].split("-") if t.isdigit()]
    assert all(int(t) <= 6 for t in dow_numbers)
