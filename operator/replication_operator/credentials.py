"""Credentials read from Secrets, shaped so they cannot leak by accident.

Secret fields are excluded from `repr`, so a credential object that ends up in a log
line or an exception shows only which fields are set, never their values.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credentials:
    """What a server needs to authenticate us (any subset may be empty)."""

    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    apikey: str = field(default="", repr=False)

    def __repr__(self) -> str:
        present = [n for n in ("password", "token", "apikey") if getattr(self, n)]
        return f"Credentials(username={self.username!r}, set={present})"

    __str__ = __repr__

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.token or self.apikey)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def fingerprint(self) -> str:
        """A stable digest that changes when any credential changes (safe to log)."""
        digest = hashlib.sha256()
        for part in (self.username, self.password, self.token, self.apikey):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:16]
