"""ReductStore API tokens as Tokens: `/api/v1/tokens/{name}` with read/write bucket lists
or full access. The value is returned once, at creation or rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

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
    """API tokens: `/api/v1/tokens/{name}` (read/write bucket lists or full access)."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn

    def _path(self, name: str) -> str:
        return f"{API}/tokens/{quote(name, safe='')}"

    @staticmethod
    def _permissions(request: TokenRequest) -> dict[str, Any]:
        return {"full_access": request.full_access, "read": sorted(request.read),
                "write": sorted(request.write)}

    async def observe_token(self, request: TokenRequest) -> TokenObservation:
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
        payload = response.json()
        return IssuedCredential(Credentials(token=str(payload["value"])),
                                created_at=payload.get("created_at"),
                                expires_at=body.get("expires_at"))

    async def update_token(self, request: TokenRequest) -> IssuedCredential | None:
        # Tokens cannot be edited: reissue. The old value stops working at once, so the
        # caller writes the new one into the Secret before returning.
        await self.delete_token(request.external_name)
        return await self.create_token(request)

    async def rotate_token(self, request: TokenRequest) -> IssuedCredential:
        response = await self.conn.request("POST", f"{self._path(request.external_name)}/rotate",
                                           allow=(404, 405))
        if response.status_code in (404, 405):  # older servers: no rotate endpoint
            return await self.update_token(request)  # type: ignore[return-value]
        payload = response.json()
        return IssuedCredential(Credentials(token=str(payload["value"])),
                                created_at=payload.get("created_at"))

    async def delete_token(self, external_name: str) -> None:
        await self.conn.request("DELETE", self._path(external_name), allow=(404,))
