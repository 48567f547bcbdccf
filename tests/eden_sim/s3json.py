"""S3JSON as Eden's importer reads it: `{"$_<table>": [record, ...]}`, records with
`@uuid` / `@tuid`, field values plain or as `{"@value": ...}` (a list:string field as a
JSON text inside `@value`), components nested as `$_<component table>`, references as
`$k_<field>: {"@resource": table, "@tuid" | "@uuid": ...}`. Pure: values in, values or
error texts out; the store decides what to write."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .times import parse

APITYPES = ("eden", "ccrm", "wrike", "mcb", "adashi", "ftp", "filesync")
STRATEGIES = ("create", "update", "delete", "merge")
POLICIES = ("THIS", "OTHER", "NEWER", "MASTER")
MODES = (1, 2, 3, 4)
SCHEDULER_STATUSES = ("QUEUED", "ASSIGNED", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT",
                      "STOPPED", "EXPIRED")
REQUIRED = "value(s) required"  # BACKENDS.md §4: "a missing name says name: value(s) required"
NOT_ALLOWED = "Value not allowed"  # BACKENDS.md §4: "apitype: Value not allowed"


class Invalid(ValueError):
    """A field value the validator refuses; the text goes into the tree's @error."""


def raw_value(value: Any) -> Any:
    """`{"@value": v}` → v; anything else as it is."""
    if isinstance(value, Mapping) and "@value" in value:
        return value["@value"]
    return value


def as_text(value: Any) -> str | None:
    value = raw_value(value)
    return None if value is None else str(value)


def as_bool(value: Any) -> bool:
    value = raw_value(value)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "t", "1", "yes", "on"):
        return True
    if text in ("false", "f", "0", "no", "off", "", "none"):
        return False
    raise Invalid(NOT_ALLOWED)


def as_int(value: Any, allowed: tuple[int, ...] | None = None, minimum: int | None = None
           ) -> int:
    value = raw_value(value)
    if isinstance(value, bool):
        raise Invalid("Enter an integer")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise Invalid("Enter an integer") from None
    if allowed is not None and number not in allowed:
        raise Invalid(NOT_ALLOWED)
    if minimum is not None and number < minimum:
        raise Invalid(f"Enter an integer greater than or equal to {minimum}")
    return number


def as_list(value: Any, allowed: tuple[str, ...]) -> list[str]:
    """A list:string field: a JSON list, a JSON text of one (`{"@value": "[...]"}`), or a
    comma- or pipe-separated text."""
    value = raw_value(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise Invalid(NOT_ALLOWED) from None
        else:
            value = [p for p in text.replace("|", ",").split(",") if p.strip()]
    if not isinstance(value, list):
        raise Invalid(NOT_ALLOWED)
    items = [str(v).strip() for v in value]
    if any(item not in allowed for item in items):
        raise Invalid(NOT_ALLOWED)
    return items


def as_choice(value: Any, allowed: tuple[str, ...]) -> str:
    text = as_text(value)
    if text is None or text not in allowed:
        raise Invalid(NOT_ALLOWED)
    return text


def as_time(value: Any) -> datetime:
    parsed = parse(as_text(value))
    if parsed is None:
        raise Invalid("Enter date and time")
    return parsed


Converter = Callable[[Any], Any]

REPOSITORY_FIELDS: dict[str, Converter] = {
    "name": as_text, "apitype": lambda v: as_choice(v, APITYPES), "url": as_text,
    "username": as_text, "password": as_text, "proxy": as_text,
    "synchronise_uuids": as_bool, "keep_source": as_bool,
}
TASK_FIELDS: dict[str, Converter] = {
    "resource_name": as_text, "mode": lambda v: as_int(v, MODES),
    "strategy": lambda v: as_list(v, STRATEGIES),
    "update_policy": lambda v: as_choice(v, POLICIES),
    "conflict_policy": lambda v: as_choice(v, POLICIES),
    "components": as_bool,
}
SCHEDULER_FIELDS: dict[str, Converter] = {
    "task_name": as_text, "function_name": as_text, "application_name": as_text,
    "group_name": as_text, "args": as_text, "vars": as_text,
    "period": lambda v: as_int(v, minimum=0), "repeats": lambda v: as_int(v, minimum=0),
    "timeout": lambda v: as_int(v, minimum=1), "enabled": as_bool,
    "status": lambda v: as_choice(v, SCHEDULER_STATUSES),
    "start_time": as_time, "next_run_time": as_time,
}


@dataclass
class Item:
    """One record of an import body, converted; `errors` per field."""

    raw: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    uuid: str | None = None
    tuid: str | None = None

    @property
    def error_text(self) -> str:
        return ", ".join(f"{name}: {text}" for name, text in self.errors.items())


def convert(raw: Mapping[str, Any], fields: Mapping[str, Converter]) -> Item:
    """Known fields converted (unknown fields silently ignored, as Eden does)."""
    item = Item(raw=dict(raw), uuid=as_text(raw.get("@uuid")), tuid=as_text(raw.get("@tuid")))
    for name, converter in fields.items():
        if name not in raw:
            continue
        try:
            item.values[name] = converter(raw[name])
        except Invalid as exc:
            item.errors[name] = str(exc)
    return item


def records(body: Mapping[str, Any], table: str) -> list[dict[str, Any]] | None:
    """The records of `table` in an import body; None when the body has no such key
    (Eden then imports nothing and says success)."""
    items = body.get(f"$_{table}")
    if items is None:
        return None
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        return []
    return [dict(i) for i in items if isinstance(i, Mapping)]


def tree(table: str, items: list[Item]) -> dict[str, Any]:
    """The error tree of a failed import: the records as submitted (everything, the
    password too, as Eden echoes them), with `@error` where validation failed."""
    out = []
    for item in items:
        record = dict(item.raw)
        if item.errors:
            record["@error"] = item.error_text
        out.append(record)
    return {f"$_{table}": out}
