"""Which resources this operator process handles: a label selector, for sharding one
namespace between several operator Deployments (`--selector`), and the kopf filters
that express it.

Syntax (a subset of Kubernetes' equality-based selectors): `key=value`, `key!=value`,
`key` (present), `!key` (absent), comma-separated, all must hold. kopf filters on the
client side: each shard still receives every watch event, but handles only its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import kopf

_KEY = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*"
                  r"[a-z0-9A-Z])?$")
_VALUE = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$")


def _not_equal(unwanted: str) -> Callable[..., bool]:
    def check(value: Any, **_: Any) -> bool:
        return bool(value != unwanted)
    return check


def parse_selector(text: str) -> dict[str, Any]:
    """kopf `labels=` filters for a selector; ValueError naming the bad term."""
    filters: dict[str, Any] = {}
    for raw in (t.strip() for t in text.split(",")):
        if not raw:
            continue
        if "!=" in raw:
            key, value = (p.strip() for p in raw.split("!=", 1))
            matcher: Any = _not_equal(value)
        elif "=" in raw:
            key, value = (p.strip() for p in raw.split("=", 1))
            key, value = key.rstrip("="), value.lstrip("=")  # `==` is `=`
            matcher = value
        elif raw.startswith("!"):
            key, value, matcher = raw[1:].strip(), "", kopf.ABSENT
        else:
            key, value, matcher = raw, "", kopf.PRESENT
        if not _KEY.match(key) or not _VALUE.match(value):
            raise ValueError(f"--selector: {raw!r} is not a label requirement (key=value, "
                             f"key!=value, key or !key)")
        if key in filters:
            raise ValueError(f"--selector: {key!r} appears twice")
        filters[key] = matcher
    return filters


def matches(filters: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether labels satisfy parsed filters (as kopf decides; used by tests and `check`)."""
    for key, want in filters.items():
        if want is kopf.ABSENT:
            if key in labels:
                return False
        elif want is kopf.PRESENT:
            if key not in labels:
                return False
        elif callable(want):
            if not want(labels.get(key)):
                return False
        elif labels.get(key) != want:
            return False
    return True
