"""The Harbor simulator served on loopback (see simkit.server)."""

from __future__ import annotations

import secrets

from simkit.server import ThreadedServer

from .app import create_app
from .store import Store


class HarborSimulator(ThreadedServer):
    """A simulated Harbor on `url` (no /api/v2.0 suffix). `store` is the in-process
    handle on its state and controls. `stop()` then `start()` brings it back on the
    same port with the same state (a Harbor that was down for a while)."""

    name = "harbor-sim"

    def __init__(self, username: str = "admin", password: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, task_seconds: float = 2.0,
                 status_refresh_seconds: float = 30.0) -> None:
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.store = Store(self.username, self.password)
        self.store.set_task_seconds(task_seconds)
        self.store.set_status_refresh_seconds(status_refresh_seconds)
        super().__init__(create_app(self.store), host, port)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v2.0"

    def bound(self) -> None:
        self.store.url = self.url

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"HarborSimulator({self.url}, user {self.username}, {state})"
