"""CouchDB / Cloudant / PouchDB Server tokens: a user in `_users` with a random
password, made a member of the listed databases.

CouchDB has no write-only or read-only membership: `read` and `write` both make the
user a member (`_security.members.names`), which lets it read and write documents
(not design documents). Note that a database whose members list was empty was open to
every user; once it has a member it is restricted to members and admins.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any
from urllib.parse import quote

from replication_operator.backends.snapshot import Snapshot
from replication_operator.backends.tokens import (
    IssuedCredential,
    TokenObservation,
    TokenRequest,
    random_password,
)
from replication_operator.credentials import Credentials
from replication_operator.errors import SpecError
from replication_operator.http import ServerConnection

USERS = "_users"
DATABASES_FIELD = "dbops_databases"

# `_security` has no revision: a read-modify-write that overlaps another one (two Tokens
# granting the same database at once) silently undoes it. One at a time per server URL
# and database, whichever DatabaseServer (namespace) the Token goes through.
_SECURITY_LOCKS: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


def user_doc_id(name: str) -> str:
    return f"org.couchdb.user:{name}"


class CouchDBTokens:
    """Users as Tokens. Observed from one `_users` listing per server per resync; the
    databases' `_security` memberships are checked when a user is created or changed,
    and otherwise every `SECURITY_EVERY` observations (a hand edit is found within a
    bounded time without a request per database per resync)."""

    SECURITY_EVERY = 10

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self._users = Snapshot(self._fetch)
        self._observations: dict[str, int] = {}

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        response = await self.conn.request("GET", f"/{USERS}/_all_docs", params={
            "include_docs": "true", "startkey": json.dumps(user_doc_id("")),
            "endkey": json.dumps(user_doc_id("\ufff0"))})
        return {str(row["doc"].get("name")): row["doc"]
                for row in response.json().get("rows", []) if row.get("doc")}

    @staticmethod
    def _databases(request: TokenRequest) -> list[str]:
        if request.full_access:
            raise SpecError("spec.permissions.fullAccess is not available on CouchDB: list "
                            "the databases in spec.permissions.read / write")
        return sorted(set(request.read) | set(request.write))

    def _user_path(self, name: str) -> str:
        return f"/{USERS}/{quote(user_doc_id(name), safe='')}"

    async def _user(self, name: str) -> dict[str, Any] | None:
        response = await self.conn.request("GET", self._user_path(name), allow=(404,))
        return response.json() if response.status_code == 200 else None

    async def _members(self, db: str) -> tuple[dict[str, Any], list[str]]:
        response = await self.conn.request("GET", f"/{quote(db, safe='')}/_security")
        security = response.json() or {}
        names = list(((security.get("members") or {}).get("names")) or [])
        return security, names

    async def _set_membership(self, db: str, name: str, member: bool) -> None:
        async with _SECURITY_LOCKS[(self.conn.settings.base_url, db)]:
            security, names = await self._members(db)
            if (name in names) == member:
                return
            names = [*names, name] if member else [n for n in names if n != name]
            members = {**(security.get("members") or {}), "names": names}
            await self.conn.request("PUT", f"/{quote(db, safe='')}/_security",
                                    json={**security, "members": members})

    async def observe_token(self, request: TokenRequest, *, max_age: float
                            ) -> TokenObservation:
        wanted = self._databases(request)
        name = request.external_name
        user = (await self._users.get(max_age)).get(name)
        if user is None:
            self._observations.pop(name, None)
            return TokenObservation(exists=False, up_to_date=False)
        count = self._observations.get(name, 0)
        self._observations[name] = count + 1
        diff = []
        if sorted(user.get(DATABASES_FIELD) or []) != wanted:
            diff.append("permissions")
        elif count % self.SECURITY_EVERY == 0 or max_age < 2:
            for db in wanted:
                if name not in (await self._members(db))[1]:
                    diff.append(f"permissions ({db} membership)")
                    break
        return TokenObservation(exists=True, up_to_date=not diff, differences=diff)

    async def create_token(self, request: TokenRequest) -> IssuedCredential:
        databases = self._databases(request)
        password = random_password()
        body = {"_id": user_doc_id(request.external_name), "name": request.external_name,
                "type": "user", "roles": [], "password": password,
                "dbops_owner": request.key, DATABASES_FIELD: databases}
        try:
            existing = await self._user(request.external_name)
            if existing is not None:  # value lost (no Secret): take the user over
                body["_rev"] = existing["_rev"]
            await self.conn.request("PUT", self._user_path(request.external_name), json=body)
            for db in databases:
                await self._set_membership(db, request.external_name, True)
        finally:
            self._users.invalidate()
            self._observations.pop(request.external_name, None)
        return IssuedCredential(Credentials(username=request.external_name, password=password))

    async def update_token(self, request: TokenRequest) -> bool:
        wanted = self._databases(request)
        try:
            user = await self._user(request.external_name) or {}
            for db in sorted(set(user.get(DATABASES_FIELD) or []) - set(wanted)):
                await self._set_membership(db, request.external_name, False)
            for db in wanted:
                await self._set_membership(db, request.external_name, True)
            if user and sorted(user.get(DATABASES_FIELD) or []) != wanted:
                await self.conn.request("PUT", self._user_path(request.external_name),
                                        json={**user, DATABASES_FIELD: wanted})
        finally:
            self._users.invalidate()
            self._observations.pop(request.external_name, None)
        return True

    async def delete_token(self, external_name: str) -> None:
        user = await self._user(external_name)
        if user is None:
            return
        try:
            for db in user.get(DATABASES_FIELD) or []:
                response = await self.conn.request("GET", f"/{quote(db, safe='')}",
                                                   allow=(404,))
                if response.status_code == 200:
                    await self._set_membership(db, external_name, False)
            await self.conn.request("DELETE", self._user_path(external_name),
                                    params={"rev": user["_rev"]}, allow=(404,))
        finally:
            self._users.invalidate()
            self._observations.pop(external_name, None)
