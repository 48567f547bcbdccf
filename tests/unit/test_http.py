"""ServerConnection: auth flows, error classification, retries, 429 handling.

The server side is an in-process httpx transport (a real HTTP exchange through
httpx's stack, without sockets), so each rule is tested fast and deterministically.
"""

from __future__ import annotations

import json

import httpx
import pytest

from replication_operator.credentials import Credentials
from replication_operator.errors import (
    ConflictError,
    NotFoundError,
    PermanentBackendError,
    TransientBackendError,
)
from replication_operator.http import IamAuth, ServerConnection, ServerSettings, redact_url

PASSWORD = "pa55-w0rd-never-shown"


def conn(handler, auth: str = "basic", **kw: object) -> ServerConnection:
    creds = Credentials(username="admin", password=PASSWORD, token="tok-value",
                        apikey="api-key-value")
    settings = ServerSettings(key="ns/s", type="couchdb", url="http://user:pw@couch:5984/",
                              auth_type=auth, credentials=creds, **kw)  # type: ignore[arg-type]
    c = ServerConnection(settings, transport=httpx.MockTransport(handler))
    c.BACKOFF_BASE = 0.001
    return c


async def test_basic_auth_header_is_sent() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers.get("authorization")
        return httpx.Response(200, json={})

    await conn(handler).request("GET", "/")
    assert seen["auth"].startswith("Basic ")


async def test_session_cookie_is_obtained_and_renewed_after_401() -> None:
    logins = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal logins
        if request.url.path == "/_session":
            assert json.loads(request.content) == {"name": "admin", "password": PASSWORD}
            logins += 1
            return httpx.Response(200, json={"ok": True},
                                  headers={"set-cookie": f"AuthSession=c{logins}; Path=/"})
        if request.headers.get("cookie") == "AuthSession=c1" and request.url.path == "/old":
            return httpx.Response(401, json={"error": "unauthorized"})
        return httpx.Response(200, json={"cookie": request.headers.get("cookie")})

    c = conn(handler, auth="session")
    first = await c.request("GET", "/")
    assert first.json()["cookie"] == "AuthSession=c1"
    renewed = await c.request("GET", "/old")
    assert renewed.json()["cookie"] == "AuthSession=c2" and logins == 2


async def test_iam_token_is_exchanged_once_cached_and_renewed_before_expiry() -> None:
    exchanges = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal exchanges
        if request.url.host == "iam.local":
            form = dict(x.split("=") for x in request.content.decode().split("&"))
            assert form["apikey"] == "api-key-value"
            exchanges += 1
            return httpx.Response(200, json={"access_token": f"t{exchanges}",
                                             "expires_in": 100})
        return httpx.Response(200, json={"auth": request.headers["authorization"]})

    now = [0.0]
    c = conn(handler, auth="iam", iam_token_url="http://iam.local/identity/token")
    assert isinstance(c.auth, IamAuth)
    c.auth._clock = lambda: now[0]
    assert (await c.request("GET", "/")).json()["auth"] == "Bearer t1"
    now[0] = 50
    assert (await c.request("GET", "/")).json()["auth"] == "Bearer t1"
    now[0] = 85  # past 80% of the lifetime: renewed before it expires
    assert (await c.request("GET", "/")).json()["auth"] == "Bearer t2"
    assert exchanges == 2


@pytest.mark.parametrize("status, error", [(400, PermanentBackendError),
                                           (401, PermanentBackendError),
                                           (404, NotFoundError), (409, ConflictError)])
async def test_client_errors_are_permanent_and_not_retried(status: int, error: type) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json={"error": "bad", "reason": "because"})

    with pytest.raises(error) as info:
        await conn(handler).request("PUT", "/db/doc")
    assert calls == 1
    assert "bad: because" in str(info.value)


async def test_server_errors_are_retried_then_transient() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, text="busy")

    with pytest.raises(TransientBackendError) as info:
        await conn(handler).request("GET", "/")
    assert calls == ServerConnection.RETRIES + 1
    assert info.value.code == "BackendUnavailable"


async def test_transient_failure_then_success_is_retried_transparently() -> None:
    answers = iter([httpx.Response(502), httpx.Response(200, json={"ok": 1})])
    response = await conn(lambda r: next(answers)).request("GET", "/")
    assert response.json() == {"ok": 1}


async def test_429_honours_retry_after_for_the_whole_server() -> None:
    answers = iter([httpx.Response(429, headers={"retry-after": "0.05"}),
                    httpx.Response(200, json={})])
    c = conn(lambda r: next(answers))
    await c.request("GET", "/")
    assert c._paused_until > 0


async def test_connection_errors_are_transient_and_messages_have_no_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(TransientBackendError) as info:
        await conn(handler).request("GET", "/db?key=x")
    text = str(info.value)
    assert "cannot connect" in text
    assert "pw" not in text and PASSWORD not in text and "key=x" not in text


def test_redact_url_drops_userinfo_and_query() -> None:
    assert redact_url("https://u:p@h:1/x?token=t#f") == "https://h:1/x"


def test_credentials_repr_never_shows_values() -> None:
    creds = Credentials(username="u", password=PASSWORD, token="t0k", apikey="k3y")
    text = repr(creds) + str(creds) + repr([creds])
    assert PASSWORD not in text and "t0k" not in text and "k3y" not in text


async def test_refused_credentials_are_not_used_again() -> None:
    """A 401 (after a fresh login where there is one) blocks the connection: no further
    request carries the refused password, so failed logins cannot lock the account out
    (CouchDB 3.4+ does after a few)."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, json={"error": "unauthorized", "reason": "bad password"})

    c = conn(handler, credential_source="the credentials in Secret 'couch-admin'")
    with pytest.raises(PermanentBackendError) as first:
        await c.request("GET", "/")
    assert first.value.code == "CredentialsRefused" and first.value.status == 401
    assert "Secret 'couch-admin'" in first.value.message and PASSWORD not in str(first.value)
    for _ in range(3):
        with pytest.raises(PermanentBackendError, match="not used again"):
            await c.request("GET", "/other")
    assert calls == 1, "nothing sent after the refusal"


async def test_a_session_is_renewed_once_before_its_credentials_count_as_refused() -> None:
    logins = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal logins
        if request.url.path == "/_session":
            logins += 1
            if logins > 1:
                return httpx.Response(401, json={"error": "unauthorized"})
            return httpx.Response(200, json={"ok": True},
                                  headers={"set-cookie": "AuthSession=c1; Path=/"})
        return httpx.Response(401, json={"error": "unauthorized"})  # the session expired

    c = conn(handler, auth="session")
    with pytest.raises(PermanentBackendError):
        await c.request("GET", "/db")
    assert logins == 2, "one fresh login, then no more"
    with pytest.raises(PermanentBackendError, match="not used again"):
        await c.request("GET", "/db")
    assert logins == 2
