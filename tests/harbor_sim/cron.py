"""Harbor's cron: 6 fields (second minute hour day-of-month month day-of-week), as parsed
by robfig/cron with `Second | Minute | Hour | Dom | Month | Dow` (Harbor's
`utils.CronParser`). Supports `*`, `?`, numbers, names (JAN, MON), `a-b`, `*/n`, `a-b/n`,
`a/n` and comma lists. Descriptors such as `@every` are refused, as Harbor refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

_MONTHS = {name: i + 1 for i, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
_DAYS = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}

# (min, max, names) per field, in order.
_FIELDS: list[tuple[int, int, dict[str, int]]] = [
    (0, 59, {}), (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS)]


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Field:
    values: frozenset[int]
    star: bool  # "*" or "?" without a step: matters for the day-of-month/day-of-week rule


@dataclass(frozen=True)
class Cron:
    expression: str
    fields: tuple[Field, ...]

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires at this second (robfig's day rule: when neither day
        field is a star, either may match; otherwise both must)."""
        second, minute, hour, dom, month, dow = self.fields
        if moment.second not in second.values or moment.minute not in minute.values:
            return False
        if moment.hour not in hour.values or moment.month not in month.values:
            return False
        dom_ok = moment.day in dom.values
        dow_ok = (moment.isoweekday() % 7) in dow.values
        if dom.star or dow.star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok


def _number(text: str, low: int, high: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise CronError(f"failed to parse int from {text}")
    value = int(text)
    if value < low or value > high:
        raise CronError(f"value {value} out of range [{low}, {high}]")
    return value


def _item(item: str, low: int, high: int, names: dict[str, int]) -> tuple[set[int], bool]:
    range_part, _, step_part = item.partition("/")
    step = 1
    if step_part:
        if not step_part.isdigit() or int(step_part) == 0:
            raise CronError(f"invalid step in {item}")
        step = int(step_part)
    star = False
    if range_part in ("*", "?"):
        start, end, star = low, high, step == 1
    elif "-" in range_part:
        first, _, last = range_part.partition("-")
        start, end = _number(first, low, high, names), _number(last, low, high, names)
    else:
        start = _number(range_part, low, high, names)
        end = high if step_part else start
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {item}")
    return set(range(start, end + 1, step)), star


def parse(expression: str) -> Cron:
    """Parse a 6-field cron or raise CronError with robfig-like wording."""
    parts = expression.split()
    if expression.strip().startswith("@"):
        raise CronError(f"descriptors are not supported: {expression}")
    if len(parts) != 6:
        raise CronError(f"expected exactly 6 fields, found {len(parts)}: {expression}")
    fields = []
    for text, (low, high, names) in zip(parts, _FIELDS, strict=True):
        values: set[int] = set()
        star = False
        for item in text.split(","):
            if not item:
                raise CronError(f"empty item in {text}")
            item_values, item_star = _item(item, low, high, names)
            values |= item_values
            star = star or item_star
        fields.append(Field(frozenset(values), star))
    return Cron(expression, tuple(fields))
