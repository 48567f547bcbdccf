"""One pooled HTTP connection per DatabaseServer: auth, timeouts, retries, caps.

Every backend request goes through `ServerConnection.request`, which
- authenticates (none, basic, session cookie renewed on 401, bearer, IAM API-key
  exchange cached and renewed before expiry),
- limits concurrency per server (shared by every resource using the server),
- honours 429 / Retry-After by pausing the whole server, not one request,
- retries transient failures a few times with capped exponential backoff,
- turns every failure into a classified `BackendError` with a credential-free message.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from replication_operator.credentials import Credentials
from replication_operator.errors import (
    BackendError,
    PermanentBackendError,
    TransientBackendError,
    classify_status,
)

log = logging.getLogger(__name__)

RequestObserver = Callable[[str, str, str, float], None]
"""Called as (server, method, status-or-error, seconds) after every request."""

MAX_RETRY_AFTER = 30.0
DEFAULT_IAM_TOKEN_URL = "https://iam.cloud.ibm.com/identity/token"


def redact_url(url: str) -> str:
    """The URL without userinfo, query or fragment: safe for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class ServerSettings:
    """Everything needed to talk to one server, resolved from a DatabaseServer."""

    key: str  # "namespace/name", used for metrics and logs
    type: str
    url: str
    auth_type: str = "none"
    credentials: Credentials = field(default_factory=Credentials)
    timeout: float = 30.0
    max_concurrent: int = 8
    insecure_skip_verify: bool = False
    ca_pem: str = field(default="", repr=False)
    iam_token_url: str = DEFAULT_IAM_TOKEN_URL
    credential_source: str = ""  # where the credentials come from, for messages

    @property
    def base_url(self) -> str:
        """The URL without userinfo: credentials come from the Secret only (the CRD
        refuses userinfo in spec.url, so nothing declared is dropped here)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, "")).rstrip("/")


class Authenticator(Protocol):
    async def headers(self, conn: ServerConnection) -> dict[str, str]: ...

    async def invalidate(self) -> bool:
        """Forget cached credentials after a 401; True if retrying may help."""
        ...


class NoAuth:
    async def headers(self, conn: ServerConnection) -> dict[str, str]:
        return {}

    async def invalidate(self) -> bool:
        return False


class StaticHeaderAuth:
    """Basic or bearer: a header computed once from the Secret."""

    def __init__(self, value: str) -> None:
        self._value = value

    async def headers(self, conn: ServerConnection) -> dict[str, str]:
        return {"Authorization": self._value}

    async def invalidate(self) -> bool:
        return False


class SessionAuth:
    """CouchDB cookie session: POST /_session once, again when the cookie expires."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._cookie: str | None = None
        self._lock = asyncio.Lock()

    async def headers(self, conn: ServerConnection) -> dict[str, str]:
        async with self._lock:
            if self._cookie is None:
                self._cookie = await self._login(conn)
        return {"Cookie": f"AuthSession={self._cookie}"}

    async def _login(self, conn: ServerConnection) -> str:
        body = {"name": self._credentials.username, "password": self._credentials.password}
        response = await conn.raw_send("POST", "/_session", json=body)
        if response.status_code != 200:
            raise classify_status(response.status_code, f"session login to "
                                  f"{redact_url(conn.settings.url)} refused "
                                  f"(HTTP {response.status_code}): check the username "
                                  f"and password in the auth Secret")
        cookie = response.cookies.get("AuthSession")
        if not cookie:
            raise PermanentBackendError("session login answered without an AuthSession cookie",
                                        code="AuthFailed")
        return cookie

    async def invalidate(self) -> bool:
        async with self._lock:
            had_cookie = self._cookie is not None
            self._cookie = None
        return had_cookie


class IamAuth:
    """IBM Cloud IAM: exchange an API key for a bearer token, renew before expiry."""

    RENEW_MARGIN = 0.2  # renew when less than 20% of the lifetime is left

    def __init__(self, credentials: Credentials, token_url: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._apikey = credentials.apikey
        self._token_url = token_url
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self.exchanges = 0

    async def headers(self, conn: ServerConnection) -> dict[str, str]:
        async with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                await self._exchange(conn)
        return {"Authorization": f"Bearer {self._token}"}

    async def _exchange(self, conn: ServerConnection) -> None:
        form = {"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": self._apikey}
        try:
            response = await conn.client.post(self._token_url, data=form,
                                              headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise TransientBackendError(
                f"IAM token endpoint {redact_url(self._token_url)} unreachable: "
                f"{type(exc).__name__}") from None
        if response.status_code != 200:
            raise classify_status(response.status_code,
                                  f"IAM token exchange refused (HTTP {response.status_code}): "
                                  f"check the API key in the auth Secret")
        payload = response.json()
        lifetime = float(payload.get("expires_in", 3600))
        self._token = str(payload["access_token"])
        self._renew_at = self._clock() + lifetime * (1 - self.RENEW_MARGIN)
        self.exchanges += 1

    async def invalidate(self) -> bool:
        async with self._lock:
            had_token = self._token is not None
            self._token = None
        return had_token


def make_authenticator(settings: ServerSettings) -> Authenticator:
    creds = settings.credentials
    match settings.auth_type:
        case "basic":
            return StaticHeaderAuth(creds.basic_header())
        case "bearer":
            return StaticHeaderAuth(f"Bearer {creds.token}")
        case "session":
            return SessionAuth(creds)
        case "iam":
            return IamAuth(creds, settings.iam_token_url)
        case _:
            return NoAuth()


def _ssl_context(settings: ServerSettings) -> ssl.SSLContext | bool:
    if settings.insecure_skip_verify:
        return False
    if settings.ca_pem:
        return ssl.create_default_context(cadata=settings.ca_pem)
    return True


def error_text(response: httpx.Response) -> str:
    """The server's own explanation, whichever convention it uses."""
    header = response.headers.get("x-reduct-error")
    if header:
        return header
    try:
        payload: Any = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
        if "error" in payload or "reason" in payload:
            return f"{payload.get('error', '')}: {payload.get('reason', '')}".strip(": ")
        if "message" in payload:
            return str(payload["message"])
        if "detail" in payload:
            return str(payload["detail"])
    return str(payload)[:300]


class NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing, so no server cookie comes back on a later request.

    Harbor sets a session cookie (`sid`) on every answer, and a write that carries it is
    treated as a browser session that must send a CSRF token: a client that kept it
    would see every write refused (403). CouchDB's session cookie is sent explicitly by
    `SessionAuth`, never through the jar.
    """

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class ServerConnection:
    """A pooled client for one server; cheap to share, rebuilt when settings change."""

    RETRIES = 2
    BACKOFF_BASE = 0.2
    BACKOFF_CAP = 2.0

    def __init__(self, settings: ServerSettings, *, observer: RequestObserver | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=httpx.Timeout(settings.timeout),
            verify=_ssl_context(settings),
            limits=httpx.Limits(max_connections=settings.max_concurrent,
                                max_keepalive_connections=settings.max_concurrent),
            transport=transport,
            follow_redirects=False,
            cookies=NoCookies(),
        )
        self.auth = make_authenticator(settings)
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._paused_until = 0.0
        self._observer = observer
        self._transport = transport
        self._stream_client: httpx.AsyncClient | None = None  # see stream_lines()
        self.refused: PermanentBackendError | None = None  # see request()

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._stream_client is not None:
            await self._stream_client.aclose()

    @contextlib.asynccontextmanager
    async def stream_lines(self, path: str, *, params: Mapping[str, Any],
                           read_timeout: float) -> AsyncIterator[AsyncIterator[str]]:
        """A long-lived GET read line by line (a change feed), counted as one request.

        It has a client of its own, outside the per-server cap: it stays open for hours
        and must not take a slot from the requests of every resource. Same auth and the
        same error classes as `request` (a refused credential is not used again); no
        retry here: the caller reconnects. A break while reading, or no byte for
        `read_timeout` (the server's heartbeat keeps a healthy feed talking), raises
        TransientBackendError."""
        if self.refused is not None:
            raise self.refused
        if self._stream_client is None:
            self._stream_client = httpx.AsyncClient(
                base_url=self.settings.base_url, verify=_ssl_context(self.settings),
                transport=self._transport, follow_redirects=False, cookies=NoCookies(),
                timeout=httpx.Timeout(self.settings.timeout))
        client = self._stream_client
        try:
            headers = await self.auth.headers(self)
        except BackendError as exc:
            if exc.status == 401:
                self.refused = self._refusal(exc)
                raise self.refused from None
            raise
        # identity: a compressing server (PouchDB Server's express) holds gzip output back
        # until enough has gathered, so neither changes nor heartbeats would come through
        request = client.build_request(
            "GET", path, params=params, headers={**headers, "Accept-Encoding": "identity"},
            timeout=httpx.Timeout(self.settings.timeout, read=read_timeout))
        started, outcome = time.monotonic(), "error"
        try:
            response = await client.send(request, stream=True)
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"GET {self._where(path)} failed: cannot connect "
                                        f"({type(exc).__name__})") from None
        finally:
            if self._observer is not None:
                self._observer(self.settings.key, "GET", outcome, time.monotonic() - started)
        try:
            status = response.status_code
            if status >= 300:
                await response.aread()
                failure = classify_status(
                    status, f"GET {self._where(path)}: HTTP {status} {error_text(response)}")
                if status == 401 and not await self.auth.invalidate() and \
                        self.settings.auth_type != "none":
                    self.refused = self._refusal(failure)
                    raise self.refused
                raise failure
            yield self._lines(response, path)
        finally:
            await response.aclose()

    async def _lines(self, response: httpx.Response, path: str) -> AsyncIterator[str]:
        try:
            async for line in response.aiter_lines():
                yield line
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"GET {self._where(path)} broke off "
                                        f"({type(exc).__name__})") from None

    async def raw_send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with no auth, retry or classification (used by auth flows)."""
        return await self._send(method, path, {}, kwargs)

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: Mapping[str, Any] | None = None, content: bytes | None = None,
                      headers: Mapping[str, str] | None = None,
                      allow: Iterable[int] = ()) -> httpx.Response:
        """Send with auth and retries; 2xx and `allow`-ed statuses come back, others raise.

        Once the server refuses these credentials (401, also after a fresh login), the
        connection stops using them: every later request fails at once with the same
        error, without a request. Retrying a wrong password gains nothing and locks the
        account out on servers that count failed logins (CouchDB 3.4+). The connection
        belongs to these exact credentials: a changed Secret makes a new one."""
        if self.refused is not None:
            raise self.refused
        allowed = set(allow)
        kwargs: dict[str, Any] = {"params": params}
        if json is not None:
            kwargs["json"] = json
        if content is not None:
            kwargs["content"] = content
        reauthenticated = False
        attempt = 0
        while True:
            try:
                try:
                    auth_headers = await self.auth.headers(self)
                except BackendError as exc:  # a login (session, IAM) refused
                    if exc.status == 401:
                        self.refused = self._refusal(exc)
                        raise self.refused from None
                    raise
                response = await self._send(method, path, {**auth_headers, **(headers or {})},
                                            kwargs)
            except httpx.TimeoutException:
                failure: BackendError = TransientBackendError(
                    f"{method} {self._where(path)} timed out after {self.settings.timeout:g}s")
            except httpx.HTTPError as exc:
                if _is_certificate_error(exc):
                    raise PermanentBackendError(
                        f"TLS verification of {redact_url(self.settings.url)} failed: the "
                        f"server certificate is not trusted; set spec.tls.caSecretRef",
                        code="TLSVerificationFailed") from None
                failure = TransientBackendError(
                    f"{method} {self._where(path)} failed: cannot connect "
                    f"({type(exc).__name__})")
            else:
                status = response.status_code
                if status < 300 or status in allowed:
                    return response
                if status == 401 and not reauthenticated and await self.auth.invalidate():
                    reauthenticated = True
                    continue
                failure = classify_status(
                    status, f"{method} {self._where(path)}: HTTP {status} {error_text(response)}")
                if status == 401 and self.settings.auth_type != "none":
                    self.refused = self._refusal(failure)
                    raise self.refused
                if status == 429 or status == 503:
                    retry_after = _retry_after(response)
                    if retry_after is not None and isinstance(failure, TransientBackendError):
                        failure.retry_after = retry_after
                        self._paused_until = max(self._paused_until,
                                                 time.monotonic() + retry_after)
            if failure.permanent or attempt >= self.RETRIES:
                raise failure
            attempt += 1
            await asyncio.sleep(self._backoff(attempt))

    def _refusal(self, failure: BackendError) -> PermanentBackendError:
        source = self.settings.credential_source or "the credentials"
        return PermanentBackendError(
            f"{redact_url(self.settings.url)} refuses {source} ({failure.message}); they "
            f"are not used again until they change, so that failed logins do not lock "
            f"the account out", code="CredentialsRefused", status=401)

    def _where(self, path: str) -> str:
        return f"{redact_url(self.settings.url)}{path.split('?')[0]}"

    def _backoff(self, attempt: int) -> float:
        delay = min(self.BACKOFF_CAP, self.BACKOFF_BASE * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)

    async def _send(self, method: str, path: str, headers: dict[str, str],
                    kwargs: dict[str, Any]) -> httpx.Response:
        async with self._slots:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            started = time.monotonic()
            outcome = "error"
            try:
                response = await self.client.request(method, path, headers=headers, **kwargs)
                outcome = str(response.status_code)
                return response
            finally:
                if self._observer is not None:
                    self._observer(self.settings.key, method, outcome,
                                   time.monotonic() - started)


def _is_certificate_error(exc: BaseException) -> bool:
    """An untrusted certificate: retrying cannot help until the spec changes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        return None
