"""Decide what to do about one Token, and what its status says (pure).

Rotation is make-before-break: the other slot is issued and delivered into the Secret,
every dependent Replication switches to it, and only then is the previous credential
revoked, as soon as every dependent uses the new one, at the latest when
`spec.rotation.graceSeconds` have passed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from replication_operator.backends.tokens import TokenObservation
from replication_operator.errors import BackendError
from replication_operator.status import error_conditions, healthy_conditions, merge_conditions

DEFAULT_GRACE_SECONDS = 300


class TokenVerb(enum.Enum):
    NOTHING = "nothing"
    CREATE = "create"  # the current slot, where nothing exists yet
    UPDATE = "update"  # permissions in place (the driver may refuse: then ROTATE)
    ROTATE = "rotate"  # issue the other slot, deliver it, revoke the old one later
    WAIT = "wait"  # a rotation is wanted, but the previous one is still in its grace


@dataclass(frozen=True)
class TokenPlan:
    verb: TokenVerb
    reason: str = ""  # Event reason
    urgent: bool = False  # a credential must be issued now, even before a revocation


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def rotation_due(*, every_days: int | None, last_rotation: str | None, created_at: str | None,
                 now: datetime) -> bool:
    if not every_days:
        return False
    since = _parse(last_rotation) or _parse(created_at)
    return since is not None and now - since >= timedelta(days=every_days)


def plan_token(*, seen: TokenObservation, secret_has_value: bool, rotate_due: bool,
               rotate_requested: bool, revocation_pending: bool) -> TokenPlan:
    """The action, and the Event reason that explains it."""
    if not seen.exists:
        return TokenPlan(TokenVerb.CREATE, "Created", urgent=True)
    if seen.provisioned:
        return TokenPlan(TokenVerb.NOTHING)
    if not secret_has_value:
        return TokenPlan(TokenVerb.ROTATE, "CredentialRecovered", urgent=True)
    if not seen.up_to_date:
        return TokenPlan(TokenVerb.UPDATE, "Updated", urgent=True)
    if rotate_requested or rotate_due:
        if revocation_pending:
            return TokenPlan(TokenVerb.WAIT)
        return TokenPlan(TokenVerb.ROTATE, "RotatedOnRequest" if rotate_requested else "Rotated")
    return TokenPlan(TokenVerb.NOTHING)


@dataclass(frozen=True)
class Revocation:
    due: bool
    message: str = ""


def revocation(*, previous: Mapping[str, Any] | None, generation: str,
               dependents: Iterable[tuple[str, str | None]], now: datetime) -> Revocation:
    """Whether the previous credential may go now: once every dependent (name, the
    credential generation it last applied) uses `generation`, else when its grace ends."""
    if not previous or not previous.get("externalName"):
        return Revocation(False)
    lagging = sorted(name for name, applied in dependents if applied != generation)
    if not lagging:
        return Revocation(True, "every dependent uses the new credential")
    deadline = _parse(previous.get("revokeAfter"))
    if deadline is not None and now >= deadline:
        return Revocation(True, f"the grace period ended; still on the old credential: "
                                f"{', '.join(lagging)}")
    return Revocation(False, f"waiting for {', '.join(lagging)} to use the new credential")


def delivered(status: Mapping[str, Any], annotations: Mapping[str, str], *,
              credential_key: str, generation_key: str) -> dict[str, Any]:
    """Status fields that catch up with the Secret after a crash between writing the
    Secret and writing the status: the Secret's annotations say which credential (slot
    and generation) it holds, and that is the truth."""
    slot, generation = annotations.get(credential_key), annotations.get(generation_key)
    if not slot or not generation or generation == str(status.get("generation") or ""):
        return {}
    fields: dict[str, Any] = {"externalName": slot, "generation": generation}
    current = status.get("externalName")
    if current and current != slot:
        fields["previousCredential"] = {"externalName": current}  # revoke after grace
    return fields


def token_status(*, previous: Mapping[str, Any] | None, generation: int | None,
                 error: BackendError | None, fields: Mapping[str, Any], now: str,
                 note: str = "") -> dict[str, Any]:
    previous = previous or {}
    conditions = (healthy_conditions("Issued", "credential in the Secret" +
                                     (f"; {note}" if note else ""))
                  if error is None else error_conditions(error))
    return {"observedGeneration": generation, **fields,
            "conditions": merge_conditions(previous.get("conditions"), conditions, generation,
                                           now)}
