"""Cloudant-style IAM auth against a small local token endpoint on a real socket:
the API key is exchanged once, the bearer token cached, and renewed before expiry."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from replication_operator.credentials import Credentials
from replication_operator.errors import PermanentBackendError
from replication_operator.http import IamAuth, ServerConnection, ServerSettings

pytestmark = pytest.mark.integration
API_KEY = "iam-api-key-value"


class Endpoint(BaseHTTPRequestHandler):
    exchanges = 0
    lifetime = 3600

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        if form.get("grant_type") != ["urn:ibm:params:oauth:grant-type:apikey"] or \
                form.get("apikey") != [API_KEY]:
            self._json(400, {"errorMessage": "Provided API key could not be found"})
            return
        type(self).exchanges += 1
        self._json(200, {"access_token": f"token-{self.exchanges}",
                         "expires_in": self.lifetime, "token_type": "Bearer"})

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer token-"):
            self._json(401, {"error": "unauthorized"})
            return
        self._json(200, {"couchdb": "Welcome", "version": "3.5.0", "auth": auth,
                         "vendor": {"name": "IBM Cloudant"}})


@pytest.fixture
def server() -> Iterator[str]:
    Endpoint.exchanges = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def connection(url: str, apikey: str = API_KEY) -> ServerConnection:
    return ServerConnection(ServerSettings(
        key="test/cloudant", type="cloudant", url=url, auth_type="iam",
        credentials=Credentials(apikey=apikey), iam_token_url=f"{url}/identity/token"))


async def test_key_exchanged_once_and_renewed_before_expiry(server: str) -> None:
    conn = connection(server)
    assert isinstance(conn.auth, IamAuth)
    now = [1000.0]
    conn.auth._clock = lambda: now[0]
    for _ in range(3):
        assert (await conn.request("GET", "/")).json()["auth"] == "Bearer token-1"
    assert Endpoint.exchanges == 1
    now[0] += 3600 * 0.85  # past 80 % of the lifetime, before expiry
    assert (await conn.request("GET", "/")).json()["auth"] == "Bearer token-2"
    assert Endpoint.exchanges == 2
    await conn.aclose()


async def test_a_bad_key_is_permanent_and_never_echoed(server: str) -> None:
    conn = connection(server, apikey="wrong-key-value")
    with pytest.raises(PermanentBackendError) as info:
        await conn.request("GET", "/")
    assert "wrong-key-value" not in str(info.value)
    assert "API key" in str(info.value)
    await conn.aclose()
