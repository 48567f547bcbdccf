"""Access credentials on a server (the Token kind), for every backend that has them.

A token's secret value is returned by the server once, at creation; the caller must
store it (in a Kubernetes Secret) before anything else can fail.

Rotation is make-before-break: a Token owns up to two credentials on the server, its
current one and, during a rotation, the one it replaces. They live in two slots with
deterministic names (`<name>` and `<name>-b`): a rotation issues the other slot, hands
its value to every dependent, and only then revokes the old one. Drivers therefore
never rotate a credential in place (that would break every job using it at once).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Protocol

from replication_operator.credentials import Credentials

SECOND_SLOT_SUFFIX = "-b"


def other_slot(base: str, current: str) -> str:
    """The slot a rotation issues next: the base name and `<base>-b` take turns."""
    return f"{base}{SECOND_SLOT_SUFFIX}" if current == base else base


@dataclass(frozen=True)
class TokenRequest:
    key: str  # "namespace/name" of the Token resource
    external_name: str  # the slot this request is about
    full_access: bool = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    expires_in_days: int = 0


@dataclass
class TokenObservation:
    exists: bool
    up_to_date: bool = True
    differences: list[str] = field(default_factory=list)
    created_at: str | None = None
    expires_at: str | None = None
    provisioned: bool = False


@dataclass(frozen=True)
class IssuedCredential:
    """What the server handed out; `credentials` must go into the Secret at once."""

    credentials: Credentials = field(repr=False)
    created_at: str | None = None
    expires_at: str | None = None


class TokenDriver(Protocol):
    async def observe_token(self, request: TokenRequest, *, max_age: float
                            ) -> TokenObservation:
        """The credential in `request.external_name`'s slot. Drivers answer from one
        list call per server shared by every Token (at most `max_age` seconds old)."""
        ...

    async def create_token(self, request: TokenRequest) -> IssuedCredential: ...

    async def update_token(self, request: TokenRequest) -> bool:
        """Apply changed permissions in place; False where the server cannot (the
        caller then issues the other slot with the new permissions)."""
        ...

    async def delete_token(self, external_name: str) -> None: ...


def random_password() -> str:
    return secrets.token_urlsafe(24)
