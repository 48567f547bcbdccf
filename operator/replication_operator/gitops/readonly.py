"""Server connections that cannot write, for `plan` and `export`.

They are the operator's own connections (same auth, TLS, retries, error classes) with
one difference: a request that could change a server is refused before it is sent.
Logging in (CouchDB `POST /_session`) changes nothing and is let through; the IAM token
exchange goes to IBM's endpoint, not to the server, and is not affected.
"""

from __future__ import annotations

from typing import Any

import httpx

from replication_operator.errors import PermanentBackendError
from replication_operator.http import ServerConnection, ServerSettings, redact_url
from replication_operator.servers import ServerRegistry

READS = frozenset({"GET", "HEAD"})
LOGINS = frozenset({("POST", "/_session")})


class WriteRefused(PermanentBackendError):
    """A request that would have changed a server (a bug if ever raised: plan and
    export are meant to read only)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ReadOnly")


class ReadOnlyConnection(ServerConnection):
    async def _send(self, method: str, path: str, headers: dict[str, str],
                    kwargs: dict[str, Any]) -> httpx.Response:
        if method.upper() not in READS and (method.upper(), path) not in LOGINS:
            raise WriteRefused(f"{method} {redact_url(self.settings.url)}{path.split('?')[0]} "
                               f"not sent: plan and export never write to a server")
        return await super()._send(method, path, headers, kwargs)


class ReadOnlyServers(ServerRegistry):
    """The operator's registry of DatabaseServers, with read-only connections."""

    def connection_for(self, settings: ServerSettings) -> ServerConnection:
        conn = self._connections.get(settings)
        if conn is None:
            conn = ReadOnlyConnection(settings)
            self._connections[settings] = conn
        return conn
