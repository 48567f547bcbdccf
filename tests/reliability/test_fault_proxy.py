"""The fault proxy itself (tests/fault_proxy.py), in front of a small local HTTP server:
each mode does to an HTTP client what it says, and requests are counted."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from fault_proxy import FaultProxy, Mode


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the operator's clients use it

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = f"{self.command} {self.path} {len(body)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def upstream() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: http.server.ThreadingHTTPServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", upstream.server_address[1]) as proxy:
        yield proxy


def test_pass_forwards_and_counts_requests_on_keep_alive_connections(
        proxy: FaultProxy) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=proxy.url, timeout=5,
                      headers={"User-Agent": "probe/1"}) as client:
        assert client.get("/a").text == "GET /a 0"
        assert client.post("/b", content=b"x" * 100_000).text == "POST /b 100000"
        assert client.put("/c?q=1", json={"k": "v"}).text == "PUT /c?q=1 9"
    seen = proxy.requests_since(started)
    assert [(r.method, r.path) for r in seen] == [("GET", "/a"), ("POST", "/b"),
                                                  ("PUT", "/c?q=1")]
    assert {r.user_agent for r in seen} == {"probe/1"}
    assert proxy.connections == 1, "one keep-alive connection carried all three"


def test_refuse_reset_delay_blackhole_and_back(proxy: FaultProxy) -> None:
    def get(timeout: float = 5) -> str:
        with httpx.Client(base_url=proxy.url, timeout=timeout) as client:
            return client.get("/x").text

    with httpx.Client(base_url=proxy.url, timeout=5) as kept:
        assert kept.get("/kept").status_code == 200
        proxy.refuse()
        with pytest.raises(httpx.ConnectError):
            get()
        with pytest.raises(httpx.TransportError):  # the kept connection was closed too
            kept.get("/kept")

    proxy.reset()
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError)):
        get()

    proxy.delay(1.5)
    with pytest.raises(httpx.TimeoutException):
        get(timeout=0.5)
    assert get(timeout=10) == "GET /x 0"

    proxy.blackhole()
    before = len(proxy.requests())
    with pytest.raises(httpx.ReadTimeout):
        get(timeout=1)
    blackholed = proxy.requests()[before:]
    assert [(r.method, r.mode) for r in blackholed] == [("GET", Mode.BLACKHOLE)], \
        "a swallowed request is still counted"

    proxy.pass_through()
    assert get() == "GET /x 0"
    assert proxy.mode is Mode.PASS


def test_upstream_down_is_a_reset(proxy: FaultProxy,
                                  upstream: http.server.ThreadingHTTPServer) -> None:
    upstream.shutdown()
    upstream.server_close()
    # The proxy accepts, fails to reach the upstream and resets the client. The
    # reset can land while httpcore is still setting up the socket it just
    # connected (setsockopt then fails with ECONNRESET), which httpx calls a
    # ConnectError; either way it must be a reset, not a hang or an answer.
    started = time.monotonic()
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError,
                        httpx.ConnectError)) as raised, \
            httpx.Client(base_url=proxy.url, timeout=5) as client:
        client.get("/")
    assert time.monotonic() - started < 4, "the client was not reset at once"
    if isinstance(raised.value, httpx.ConnectError):
        assert "reset" in str(raised.value).lower(), raised.value
