"""The operator's view of every DatabaseServer: settings, credentials, backends.

Entries are refreshed by the DatabaseServer handlers (every probe re-reads the auth
Secret, so a changed password takes effect without a restart) and built on demand
when a Replication needs a server the operator has not seen yet (e.g. after a
restart). A connection is shared by every resource that uses the same server.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from replication_operator.backends.base import Backend
from replication_operator.credentials import Credentials
from replication_operator.errors import MissingReferenceError, SpecError
from replication_operator.http import (
    DEFAULT_IAM_TOKEN_URL,
    RequestObserver,
    ServerConnection,
    ServerSettings,
)

SecretReader = Callable[[str, str], Awaitable[dict[str, str] | None]]
ObjectReader = Callable[[str, str], Awaitable[dict[str, Any] | None]]
BackendFactory = Callable[[str, ServerConnection, Callable[[ServerSettings], ServerConnection]],
                          Backend]


@dataclass
class ServerEntry:
    settings: ServerSettings
    backend: Backend


async def read_credentials(namespace: str, auth: Mapping[str, Any],
                           read_secret: SecretReader) -> Credentials:
    """Credentials named by `spec.auth`; errors name the Secret and key, never values."""
    auth_type = auth.get("type", "none")
    if auth_type == "none":
        return Credentials()
    ref = auth.get("secretRef") or {}
    secret_name = ref.get("name")
    if not secret_name:
        raise MissingReferenceError(f"spec.auth.secretRef is required for auth type {auth_type}")
    data = await read_secret(namespace, secret_name)
    if data is None:
        raise MissingReferenceError(f"Secret {secret_name!r} (spec.auth.secretRef) not found")

    def key(field: str, default: str, required: bool) -> str:
        name = auth.get(field) or default
        value = data.get(name, "")
        if required and not value:
            raise MissingReferenceError(f"Secret {secret_name!r} has no key {name!r} "
                                  f"(needed for auth type {auth_type})")
        return value

    if auth_type in ("basic", "session"):
        return Credentials(username=key("usernameKey", "username", True),
                           password=key("passwordKey", "password", True))
    if auth_type == "bearer":
        return Credentials(token=key("tokenKey", "token", True))
    if auth_type == "iam":
        return Credentials(apikey=key("apiKeyKey", "apikey", True))
    raise SpecError(f"spec.auth.type {auth_type!r} is not known")


async def settings_from_spec(namespace: str, name: str, spec: Mapping[str, Any],
                             read_secret: SecretReader) -> ServerSettings:
    auth = spec.get("auth") or {}
    tls = spec.get("tls") or {}
    ca_pem = ""
    ca_ref = tls.get("caSecretRef")
    if ca_ref:
        data = await read_secret(namespace, ca_ref["name"])
        ca_key = ca_ref.get("key", "ca.crt")
        if data is None or not data.get(ca_key):
            raise MissingReferenceError(f"spec.tls.caSecretRef: Secret {ca_ref['name']!r} with key "
                                  f"{ca_key!r} not found")
        ca_pem = data[ca_key]
    return ServerSettings(
        key=f"{namespace}/{name}",
        type=str(spec.get("type", "")),
        url=str(spec.get("url", "")),
        auth_type=str(auth.get("type", "none")),
        credentials=await read_credentials(namespace, auth, read_secret),
        timeout=float(spec.get("requestTimeoutSeconds", 30)),
        max_concurrent=int(spec.get("maxConcurrentRequests", 8)),
        insecure_skip_verify=bool(tls.get("insecureSkipVerify", False)),
        ca_pem=ca_pem,
        iam_token_url=str(auth.get("iamTokenURL") or DEFAULT_IAM_TOKEN_URL),
        credential_source=(f"the credentials in Secret {ref_name!r} (DatabaseServer {name!r}"
                           f" spec.auth.secretRef)" if (ref_name := str(
                               (auth.get("secretRef") or {}).get("name") or "")) else ""),
    )


class ServerRegistry:
    def __init__(self, *, read_secret: SecretReader, read_server: ObjectReader,
                 backend_factory: BackendFactory, observer: RequestObserver | None = None
                 ) -> None:
        self._read_secret = read_secret
        self._read_server = read_server
        self._backend_factory = backend_factory
        self._observer = observer
        self._entries: dict[str, ServerEntry] = {}
        self._connections: dict[ServerSettings, ServerConnection] = {}
        self._lock = asyncio.Lock()

    def connection_for(self, settings: ServerSettings) -> ServerConnection:
        """The shared connection for these exact settings (URL, credentials, limits)."""
        conn = self._connections.get(settings)
        if conn is None:
            conn = ServerConnection(settings, observer=self._observer)
            self._connections[settings] = conn
        return conn

    async def refresh(self, namespace: str, name: str, spec: Mapping[str, Any]) -> ServerEntry:
        """Re-read the spec and its Secrets; keep the backend if nothing changed."""
        settings = await settings_from_spec(namespace, name, spec, self._read_secret)
        key = f"{namespace}/{name}"
        async with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.settings == settings:
                return entry
            if entry is not None:
                await self._drop_connection(entry.settings)
            conn = self.connection_for(settings)
            backend = self._backend_factory(settings.type, conn, self.connection_for)
            entry = ServerEntry(settings, backend)
            self._entries[key] = entry
            return entry

    def cached(self, namespace: str, name: str) -> ServerEntry | None:
        """The entry if it is known already (no API read)."""
        return self._entries.get(f"{namespace}/{name}")

    async def get(self, namespace: str, name: str) -> ServerEntry:
        entry = self._entries.get(f"{namespace}/{name}")
        if entry is not None:
            return entry
        body = await self._read_server(namespace, name)
        if body is None:
            raise MissingReferenceError(
                f"DatabaseServer {name!r} not found in namespace {namespace}")
        return await self.refresh(namespace, name, body.get("spec") or {})

    async def forget(self, namespace: str, name: str) -> None:
        async with self._lock:
            entry = self._entries.pop(f"{namespace}/{name}", None)
            if entry is not None:
                await self._drop_connection(entry.settings)

    def invalidate(self, namespace: str, name: str) -> None:
        """Drop the cached entry so the next use re-reads spec and Secret (after a 401)."""
        self._entries.pop(f"{namespace}/{name}", None)

    async def _drop_connection(self, settings: ServerSettings) -> None:
        still_used = any(e.settings == settings for e in self._entries.values())
        conn = None if still_used else self._connections.pop(settings, None)
        if conn is not None:
            await conn.aclose()

    async def aclose(self) -> None:
        for conn in self._connections.values():
            await conn.aclose()
        self._connections.clear()
        self._entries.clear()


def with_credentials(settings: ServerSettings, credentials: Credentials, auth_type: str,
                     source: str = "") -> ServerSettings:
    """The same server, reached with other credentials (a Token's)."""
    return dataclasses.replace(settings, credentials=credentials, auth_type=auth_type,
                               credential_source=source)
