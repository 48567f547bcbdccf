"""ReductStore API tokens as Tokens: `/api/v1/tokens/{name}` with read/write bucket lists
or full access. The value is returned once, at creation or rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from replication_operator.backends.snapshot import Snapshot
from replication_operator.backends.tokens import (
    IssuedCredential,
    TokenObservation,
    TokenRequest,
)
from replication_operator.credentials import Credentials
from replication_operator.errors import PermanentBackendError, SpecError
from replication_operator.http import ServerConnection

API = "/api/v1"


class ReductStoreTokens:
    """API tokens: `/api/v1/tokens/{name}` (read/write bucket lists or full access).

    Observed from one `GET /api/v1/tokens` per server per resync (1.21 lists each token
    with its permissions). Tokens cannot be edited: a permission change issues the other
    slot (make-before-break, see backends/tokens.py).
    """

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self._list = Snapshot(self._fetch)

    def _path(self, name: str) -> str:
        return f"{API}/tokens/{quote(name, safe='')}"

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        response = await self.conn.request("GET", f"{API}/tokens")
        return {str(t["name"]): t for t in response.json().get("tokens", [])}

    @staticmethod
    def _permissions(request: TokenRequest) -> dict[str, Any]:
        return {"full_access": request.full_access, "read": sorted(request.read),
                "write": sorted(request.write)}

    async def observe_token(self, request: TokenRequest, *, max_age: float
                            ) -> TokenObservation:
        body = (await self._list.get(max_age)).get(request.external_name)
        if body is None:
            return TokenObservation(exists=False, up_to_date=False)
        if body.get("permissions") is None:  # a version that lists names only
            response = await self.conn.request("GET", self._path(request.external_name),
                                               allow=(404,))
            if response.status_code == 404:
                return TokenObservation(exists=False, up_to_date=False)
            body = response.json()
        stored = body.get("permissions") or {}
        want = self._permissions(request)
        diff = sorted(k for k in want if (sorted(stored.get(k) or []) if k != "full_access"
                                          else bool(stored.get(k))) != want[k])
        return TokenObservation(exists=True, up_to_date=not diff, differences=diff,
                                created_at=body.get("created_at"),
                                expires_at=body.get("expires_at"),
                                provisioned=bool(body.get("is_provisioned")))

    def _body(self, request: TokenRequest) -> dict[str, Any]:
        """The flat body every version takes; with an expiry, the nested form 1.21 wants
        (it answers 422 to a flat body with expires_at)."""
        permissions = self._permissions(request)
        if not request.expires_in_days:
            return permissions
        expires = datetime.now(UTC) + timedelta(days=request.expires_in_days)
        return {"permissions": permissions,
                "expires_at": expires.replace(microsecond=0).isoformat().replace("+00:00", "Z")}

    async def create_token(self, request: TokenRequest) -> IssuedCredential:
        body = self._body(request)
        try:
            response = await self.conn.request("POST", self._path(request.external_name),
                                               json=body)
        except PermanentBackendError as exc:
            if exc.status == 422 and "expires_at" in body:
                raise SpecError("spec.expiresInDays: this ReductStore version does not "
                                "accept token expiry") from None
            raise
        finally:
            self._list.invalidate()
        payload = response.json()
        return IssuedCredential(Credentials(token=str(payload["value"])),
                                created_at=payload.get("created_at"),
                                expires_at=body.get("expires_at"))

    async def update_token(self, request: TokenRequest) -> bool:
        return False  # a token cannot be edited: the other slot is issued instead

    async def delete_token(self, external_name: str) -> None:
        try:
            await self.conn.request("DELETE", self._path(external_name), allow=(404,))
        finally:
            self._list.invalidate()
