"""Run the simulator on loopback in a background thread (uvicorn with its own loop)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType

import uvicorn

from .app import BASE, create_app
from .store import DEFAULT_TABLES, Store

START_TIMEOUT = 30.0


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EdenSimulator:
    """A simulated Eden whose base URL is `url` (`http://host:port/eden`). `store` is the
    in-process handle on its state and controls. `stop()` then `start()` brings it back
    on the same port with the same state (an Eden that was down for a while)."""

    def __init__(self, email: str = "admin@example.com", password: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, tick_seconds: float = 0.25,
                 tables: Iterable[str] = DEFAULT_TABLES) -> None:
        self.host = host
        self.port = port
        self.email = email
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.store = Store(self.email, self.password, tables=tables)
        self.app = create_app(self.store, tick_seconds=tick_seconds)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The instance's base URL, as a DatabaseServer's spec.url names it."""
        return f"{self.root}{BASE}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> EdenSimulator:
        """Bind (a free port the first time unless one was given), serve, and return
        once the port answers."""
        if self.running:
            return self
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.store.url = self.url
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=2,
                                timeout_keep_alive=5)
        server = uvicorn.Server(config)
        self._server = server
        self._errors = []

        def serve() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start()
                self._errors.append(exc)
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name=f"eden-sim-{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not (server.started and _answers(self.host, self.port)):
            if self._errors or not self._thread.is_alive():
                raise RuntimeError(f"eden-sim failed to start on {self.url}: "
                                   f"{self._errors or 'server thread ended'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"eden-sim did not answer on {self.url} within "
                                   f"{START_TIMEOUT:.0f} s")
            time.sleep(0.02)  # poll interval of the deadline loop above
        return self

    def stop(self) -> None:
        """Stop serving (connections refused from now on); the state is kept."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> EdenSimulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EdenSimulator({self.url}, user {self.email}, {state})"
