"""Decide what to do about one Token, and what its status says (pure)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from replication_operator.backends.tokens import TokenObservation
from replication_operator.errors import BackendError
from replication_operator.status import error_conditions, healthy_conditions, merge_conditions


class TokenVerb(enum.Enum):
    NOTHING = "nothing"
    CREATE = "create"
    UPDATE = "update"
    ROTATE = "rotate"


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def rotation_due(*, every_days: int | None, last_rotation: str | None, created_at: str | None,
                 now: datetime) -> bool:
    if not every_days:
        return False
    since = _parse(last_rotation) or _parse(created_at)
    return since is not None and now - since >= timedelta(days=every_days)


def plan_token(*, seen: TokenObservation, secret_has_value: bool, rotate_due: bool,
               rotate_requested: bool) -> tuple[TokenVerb, str]:
    """The action, and the Event reason that explains it."""
    if not seen.exists:
        return TokenVerb.CREATE, "Created"
    if seen.provisioned:
        return TokenVerb.NOTHING, ""
    if not secret_has_value:
        return TokenVerb.ROTATE, "CredentialRecovered"
    if not seen.up_to_date:
        return TokenVerb.UPDATE, "Updated"
    if rotate_requested:
        return TokenVerb.ROTATE, "RotatedOnRequest"
    if rotate_due:
        return TokenVerb.ROTATE, "Rotated"
    return TokenVerb.NOTHING, ""


def token_status(*, previous: Mapping[str, Any] | None, generation: int | None,
                 error: BackendError | None, fields: Mapping[str, Any], now: str
                 ) -> dict[str, Any]:
    previous = previous or {}
    conditions = (healthy_conditions("Issued", "credential in the Secret") if error is None
                  else error_conditions(error))
    return {"observedGeneration": generation, **fields,
            "conditions": merge_conditions(previous.get("conditions"), conditions, generation,
                                           now)}
