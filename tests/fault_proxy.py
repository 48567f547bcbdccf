"""A small TCP fault proxy for reliability tests: a data server as seen through a bad
network.

It listens on a loopback port and forwards every connection to one upstream server
(a DatabaseServer's URL points at `proxy.url` instead of the server's). Its mode says
what a client sees:

- `pass`: the server as it is.
- `refuse`: the listening socket is closed, so connecting fails at once
  (ECONNREFUSED), like a server that is down.
- `reset`: connections are accepted and then reset (RST), like a crashing server or a
  load balancer without backends.
- `delay`: every chunk of the server's answers is held for N seconds before it is sent
  on, like an overloaded server (a delay beyond the client's timeout is a timeout).
- `blackhole`: connections are accepted and whatever is sent is swallowed; nothing
  ever comes back, like a dropped route.

Every change of mode closes the connections that are open (reset ones with an RST), so
no keep-alive connection carries on from the old mode into the new one.

The proxy counts accepted connections and, reading the HTTP/1.1 request heads that go
upstream, the requests (method, path, User-Agent) in every mode but `refuse` (the
kernel refuses those before anyone sees them). That is what the no-hot-loop checks
count. It runs on its own event loop in a thread, so synchronous tests drive it::

    with FaultProxy("127.0.0.1", couch.port) as proxy:
        proxy.refuse()
        ...
        proxy.pass_through()
        proxy.requests_since(t0)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

MAX_HEAD = 64 * 1024  # a request head longer than this is not HTTP we can follow


class Mode(enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"
    RESET = "reset"
    DELAY = "delay"
    BLACKHOLE = "blackhole"


@dataclass(frozen=True)
class Request:
    """One HTTP request head seen on its way upstream."""

    at: float  # time.monotonic()
    method: str
    path: str
    user_agent: str
    mode: Mode


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range, so that no outgoing
    connection takes it as its source port while the proxy refuses (not listening)."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = random.randint(10000, max(10001, low - 1))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Sniffer:
    """Follows the HTTP/1.1 requests in one client-to-server byte stream (heads and
    Content-Length bodies). Anything else (chunked bodies, upgrades, garbage) ends the
    following for that connection; the bytes are forwarded all the same."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0
        self.following = True

    def feed(self, data: bytes) -> list[tuple[str, str, str]]:
        """The (method, path, user agent) of every request head completed by `data`."""
        if not self.following:
            return []
        self._buf += data
        heads: list[tuple[str, str, str]] = []
        while self.following:
            if self._skip:
                taken = min(self._skip, len(self._buf))
                del self._buf[:taken]
                self._skip -= taken
                if self._skip:
                    break
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    self.following = False
                break
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[:end + 4]
            parsed = self._parse(head)
            if parsed is None:
                self.following = False
                break
            method, path, user_agent, length = parsed
            heads.append((method, path, user_agent))
            if length < 0:  # chunked or unknown: stop following, keep forwarding
                self.following = False
                break
            self._skip = length
        if not self.following:
            self._buf.clear()
        return heads

    @staticmethod
    def _parse(head: str) -> tuple[str, str, str, int] | None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = 0
        if "chunked" in headers.get("transfer-encoding", "").lower():
            length = -1
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                length = -1
        return parts[0], parts[1], headers.get("user-agent", ""), length


class _Connection:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.sniffer = _Sniffer()

    def close(self, *, reset: bool) -> None:
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            if reset:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):  # linger 0: close sends an RST
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultProxy:
    """Forwards 127.0.0.1:`port` to `upstream_host`:`upstream_port`, with faults on
    demand (see the module docstring). `stop()` then `start()` keeps the port."""

    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port or free_port()
        self.mode = Mode.PASS
        self.delay_seconds = 0.0
        self.connections = 0  # accepted, every mode
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._open: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the test's side (any thread) ----------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        if self._thread is not None:
            return self
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fault-proxy-{self.port}",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop, self._thread = None, None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        """Switch mode; returns once it is in effect (open connections closed)."""
        self._call(self._switch(mode, delay))

    def pass_through(self) -> None:
        self.set_mode(Mode.PASS)

    def refuse(self) -> None:
        self.set_mode(Mode.REFUSE)

    def reset(self) -> None:
        self.set_mode(Mode.RESET)

    def delay(self, seconds: float) -> None:
        self.set_mode(Mode.DELAY, seconds)

    def blackhole(self) -> None:
        self.set_mode(Mode.BLACKHOLE)

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def requests_since(self, since: float, until: float | None = None) -> list[Request]:
        """Requests whose head arrived in [since, until) (time.monotonic())."""
        end = float("inf") if until is None else until
        return [r for r in self.requests() if since <= r.at < end]

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the proxy is not started")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(timeout=15)

    # -- the proxy's loop ------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._accepted, sock=sock)

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()  # the listening socket: connecting is refused now
            self._server = None

    def _close_all(self, *, reset: bool) -> None:
        for conn in list(self._open):
            conn.close(reset=reset)
        self._open.clear()

    async def _switch(self, mode: Mode, delay: float) -> None:
        self.mode, self.delay_seconds = mode, delay
        self._close_all(reset=mode is Mode.RESET)
        if mode is Mode.REFUSE:
            await self._unlisten()
        else:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._unlisten()
        self._close_all(reset=False)
        for task in list(self._tasks):
            task.cancel()

    def _record(self, conn: _Connection, data: bytes) -> None:
        heads = conn.sniffer.feed(data)
        if heads:
            now = time.monotonic()
            with self._lock:
                self._requests.extend(Request(now, m, p, ua, self.mode) for m, p, ua in heads)

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = _Connection(writer)
        self._open.add(conn)
        self.connections += 1
        try:
            await self._serve(conn, reader)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(conn)
            conn.close(reset=False)
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        if self.mode is Mode.RESET:
            conn.close(reset=True)
            return
        if self.mode is Mode.BLACKHOLE:
            while data := await reader.read(65536):
                self._record(conn, data)  # swallowed: nothing goes up, nothing comes back
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:  # the server behind is down: the client sees a reset
            conn.close(reset=True)
            return
        conn.upstream = up_writer
        await asyncio.gather(self._pump(conn, reader, up_writer, upward=True),
                             self._pump(conn, up_reader, conn.client, upward=False))

    async def _pump(self, conn: _Connection, source: asyncio.StreamReader,
                    sink: asyncio.StreamWriter, *, upward: bool) -> None:
        try:
            while data := await source.read(65536):
                if upward:
                    self._record(conn, data)
                if self.mode is Mode.BLACKHOLE:
                    continue
                if self.mode is Mode.DELAY and not upward:
                    await asyncio.sleep(self.delay_seconds)  # the fault, not synchronisation
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (OSError, RuntimeError):
            conn.close(reset=False)
