"""The Eden simulator served on loopback (see simkit.server)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from simkit.server import ThreadedServer

from .app import BASE, create_app
from .store import DEFAULT_TABLES, Store


class EdenSimulator(ThreadedServer):
    """A simulated Eden whose base URL is `url` (`http://host:port/eden`). `store` is the
    in-process handle on its state and controls. `stop()` then `start()` brings it back
    on the same port with the same state (an Eden that was down for a while)."""

    name = "eden-sim"

    def __init__(self, email: str = "admin@example.com", password: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, tick_seconds: float = 0.25,
                 tables: Iterable[str] = DEFAULT_TABLES) -> None:
        self.email = email
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.store = Store(self.email, self.password, tables=tables)
        super().__init__(create_app(self.store, tick_seconds=tick_seconds), host, port)

    @property
    def url(self) -> str:
        """The instance's base URL, as a DatabaseServer's spec.url names it."""
        return f"{self.root}{BASE}"

    def bound(self) -> None:
        self.store.url = self.url

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EdenSimulator({self.url}, user {self.email}, {state})"
