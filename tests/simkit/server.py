"""Run a simulator's ASGI app on loopback in a background thread (uvicorn, own loop)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

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


class ThreadedServer:
    """Serves `app` on `host:port` (a free port the first time when 0). `stop()` then
    `start()` serves again on the same port: state lives in the app, so a restarted
    simulator is a server that was down for a while. Subclasses name themselves
    (`name`, for threads and errors) and may react to the bound port (`bound`)."""

    name = "sim"

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL a DatabaseServer's spec.url names."""
        return self.root

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def bound(self) -> None:
        """Called once the port is known, before serving."""

    def start(self) -> Self:
        """Bind, serve, and return once the port answers."""
        if self.running:
            return self
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.bound()
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

        self._thread = threading.Thread(target=serve, name=f"{self.name}-{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not (server.started and _answers(self.host, self.port)):
            if self._errors or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} failed to start on {self.url}: "
                                   f"{self._errors or 'server thread ended'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer on {self.url} within "
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
