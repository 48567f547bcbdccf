"""Access credentials on a server (the Token kind), for every backend that has them.

A token's secret value is returned by the server once, at creation or rotation; the
caller must store it (in a Kubernetes Secret) before anything else can fail.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Protocol

from replication_operator.credentials import Credentials


@dataclass(frozen=True)
class TokenRequest:
    key: str  # "namespace/name" of the Token resource
    external_name: str
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
    async def observe_token(self, request: TokenRequest) -> TokenObservation: ...

    async def create_token(self, request: TokenRequest) -> IssuedCredential: ...

    async def update_token(self, request: TokenRequest) -> IssuedCredential | None:
        """Apply changed permissions; a new credential if the server had to reissue it."""
        ...

    async def rotate_token(self, request: TokenRequest) -> IssuedCredential: ...

    async def delete_token(self, external_name: str) -> None: ...


def random_password() -> str:
    return secrets.token_urlsafe(24)
