"""One clock and one time format for the simulator.

Eden (web2py) keeps datetimes to the second, in UTC, without a zone: the simulator
truncates to seconds too, which matters for `last_pull` (the newest pulled record's
modification time + 1 s) and `msince` (modified_on >= msince)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%S"
LISTED = "%Y-%m-%d %H:%M:%S"  # how `.json` lists show datetimes (web2py's represent)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(value: datetime) -> str:
    """`2024-05-01T10:00:00` (UTC, no zone)."""
    return value.astimezone(UTC).strftime(FORMAT)


def fmt(value: datetime | None) -> str | None:
    """A datetime as `.json` lists show it, `2024-05-01 10:00:00` (UTC, a space, no zone;
    seen on Eden built here), or None. S3XML and `.s3json` use `iso` (with a T)."""
    return None if value is None else value.astimezone(UTC).strftime(LISTED)


def parse_msince(text: str | None) -> datetime | None:
    """`msince` as Eden's sync.xml reads it: a naive ISO time (UTC); one with a zone
    (`Z`, `+00:00`) does not parse there and is ignored (seen on Eden built here: then
    everything is exported)."""
    if not text:
        return None
    raw = text.strip()
    if raw.endswith("Z") or re.search(r"[+-]\d\d:?\d\d$", raw[10:]):
        return None
    return parse(raw)


def parse(text: str | None) -> datetime | None:
    """Accepts `2024-05-01T10:00:00`, with a space instead of T, with Z or an offset."""
    if not text:
        return None
    raw = text.strip().replace(" ", "T")
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)
