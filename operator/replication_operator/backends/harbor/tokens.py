"""Harbor robot accounts as Tokens: pull (read) / push (write) on the listed projects.

One project → a project-level robot (`robot$<project>+<name>`); several projects or
fullAccess → a system-level robot (`robot$<name>`) with one permission per project
(`*` for fullAccess). Read is pull plus reading the project and listing its
repositories: on a real Harbor a robot with repository pull alone gets 403 from
`GET /projects/<private project>` (BACKENDS.md §2a), so it could not see what it may
pull. Write adds push (a push client reads manifests too). The secret is returned
once, at creation, never by a read; rotations issue another robot (the other slot,
backends/tokens.py) rather than refreshing the secret, which would break its users.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from replication_operator.backends.harbor.docs import owner_marker
from replication_operator.backends.harbor.paging import API, list_all
from replication_operator.backends.snapshot import Snapshot
from replication_operator.backends.tokens import IssuedCredential, TokenObservation, TokenRequest
from replication_operator.credentials import Credentials
from replication_operator.errors import SpecError
from replication_operator.http import ServerConnection

PREFIX = "robot$"  # Harbor's default robot name prefix


def robot_body(request: TokenRequest) -> dict[str, Any]:
    """RobotCreate for the request (also the desired state an observation compares)."""
    projects = sorted(set(request.read) | set(request.write))
    if request.full_access:
        permissions = [{"kind": "project", "namespace": "*",
                        "access": _access(pull=True, push=True)}]
    elif projects:
        permissions = [{"kind": "project", "namespace": p,
                        "access": _access(pull=True, push=p in request.write)}
                       for p in projects]
    else:
        raise SpecError("spec.permissions: list at least one Harbor project in read or write "
                        "(or set fullAccess)")
    level = "project" if len(projects) == 1 and not request.full_access else "system"
    return {"name": request.external_name, "description": owner_marker(request.key),
            "level": level, "disable": False,
            "duration": request.expires_in_days or -1, "permissions": permissions}


READ_ACCESS = (("repository", "pull"), ("project", "read"), ("repository", "list"))


def _access(*, pull: bool, push: bool) -> list[dict[str, str]]:
    pairs = [*(READ_ACCESS if pull else ()), *((("repository", "push"),) if push else ())]
    return [{"resource": r, "action": a, "effect": "allow"} for r, a in pairs]


def full_name(body: Mapping[str, Any]) -> str:
    """The name Harbor gives the robot (and the username it logs in with)."""
    if body["level"] == "project":
        return f"{PREFIX}{body['permissions'][0]['namespace']}+{body['name']}"
    return f"{PREFIX}{body['name']}"


def is_robot_for(name: str, external_name: str) -> bool:
    """Whether a robot's full name belongs to `external_name` at either level."""
    if not name.startswith(PREFIX):
        return False
    bare = name[len(PREFIX):]
    return bare == external_name or bare.endswith(f"+{external_name}")


def _grants(permissions: Any) -> set[tuple[str, str, str]]:
    return {(str(p.get("namespace")), str(a.get("resource")), str(a.get("action")))
            for p in permissions or [] if p.get("kind") == "project"
            for a in p.get("access") or []}


def robot_differences(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> list[str]:
    """Spec field names that differ (never values)."""
    diff = []
    if full_name(desired) != observed.get("name") or desired["level"] != observed.get("level"):
        diff.append("permissions (robot level)")
    elif _grants(desired["permissions"]) != _grants(observed.get("permissions")):
        diff.append("permissions")
    if int(observed.get("duration") or 0) != desired["duration"]:
        diff.append("expiresInDays")
    if observed.get("disable"):
        diff.append("disabled on the server")
    return diff


def _iso_from_unix(value: Any) -> str | None:
    seconds = int(value or 0)
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class HarborRobots:
    """Robot accounts, observed from one paged list of every robot per server per resync
    (`q=Level=system`: without a Level key Harbor lists system robots only)."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self._list = Snapshot(self._fetch)

    async def _fetch(self) -> list[dict[str, Any]]:
        return await list_all(self.conn, "/robots", {"q": "Level=system"})

    async def _find(self, external_name: str, *, max_age: float) -> dict[str, Any] | None:
        items = await self._list.get(max_age)
        return next((r for r in items if is_robot_for(str(r.get("name", "")), external_name)),
                    None)

    async def observe_token(self, request: TokenRequest, *, max_age: float
                            ) -> TokenObservation:
        desired = robot_body(request)
        robot = await self._find(request.external_name, max_age=max_age)
        if robot is None:
            return TokenObservation(exists=False, up_to_date=False)
        diff = robot_differences(desired, robot)
        return TokenObservation(exists=True, up_to_date=not diff, differences=diff,
                                created_at=robot.get("creation_time"),
                                expires_at=_iso_from_unix(robot.get("expires_at")))

    async def create_token(self, request: TokenRequest) -> IssuedCredential:
        try:
            response = await self.conn.request("POST", f"{API}/robots",
                                               json=robot_body(request))
        finally:
            self._list.invalidate()
        created = response.json()
        return IssuedCredential(
            Credentials(username=str(created["name"]), token=str(created["secret"])),
            created_at=created.get("creation_time"),
            expires_at=_iso_from_unix(created.get("expires_at")))

    async def update_token(self, request: TokenRequest) -> bool:
        """Permissions and duration change in place; a change of level changes the
        robot's name, which Harbor cannot do: False (the other slot is issued)."""
        desired = robot_body(request)
        robot = await self._find(request.external_name, max_age=0)
        if robot is None or full_name(desired) != robot.get("name"):
            return False
        update = {key: value for key, value in robot.items() if key != "secret"}
        update.update({k: desired[k] for k in ("description", "disable", "duration",
                                                "permissions")})
        try:
            await self.conn.request("PUT", f"{API}/robots/{robot['id']}", json=update)
        finally:
            self._list.invalidate()
        return True

    async def delete_token(self, external_name: str) -> None:
        robot = await self._find(external_name, max_age=0)
        if robot is not None:
            try:
                await self.conn.request("DELETE", f"{API}/robots/{robot['id']}", allow=(404,))
            finally:
                self._list.invalidate()
