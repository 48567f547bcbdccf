"""The registries (Harbor endpoints) standing for the remote side of policies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from replication_operator.backends.harbor import docs
from replication_operator.backends.harbor.paging import API, id_from_location, list_all
from replication_operator.backends.policies import Remote
from replication_operator.backends.snapshot import Snapshot
from replication_operator.errors import BackendError
from replication_operator.http import ServerConnection


def explain_refusal(exc: BackendError, body: Mapping[str, Any], remote: Remote
                    ) -> BackendError:
    """Say which registry Harbor refused and what to check. Harbor checks a registry's
    health before it stores it: "the registry is unhealthy" (400) means it could not log
    in with the credential (or, for a plain registry, could not reach the URL); a 500
    means a `harbor` registry's URL could not be reached at all."""
    what = f"Harbor registry {body['name']} ({body['type']} at {body['url']})"
    if exc.status == 400 and "unhealthy" in exc.message:
        return exc.reworded(f"{what} refused: Harbor says the registry is unhealthy: it "
                            f"could not reach {body['url']}/v2/ or log in with "
                            f"{remote.credential_hint()}", code="RegistryUnhealthy")
    if not exc.permanent:
        return exc.reworded(f"{what}: Harbor could not check it ({exc.message}); Harbor "
                            f"answers 500 when it cannot reach a Harbor registry; retrying")
    return exc.reworded(f"{what}: {exc.message}")


class HarborRegistries:
    """The registries (endpoints) standing for the other side of policies: remote
    DatabaseServers, and plain registries declared in policies.

    Shared by every policy that replicates with the same remote. Harbor masks
    registry secrets on read, so a credential cannot be compared: this process
    remembers what it wrote and re-applies a credential it has not written itself
    (once after a start, and whenever the DatabaseServer's Secret changes).
    """

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.snapshot = Snapshot(self._fetch)
        self._applied: dict[int, str] = {}  # registry id → fingerprint of what we wrote
        self._done: dict[str, list[str]] = {}  # registry name → actions not yet reported
        self._lock = asyncio.Lock()

    def drain(self, remote: Remote) -> list[str]:
        """What was done to the remote's registry since the last call (whichever path did
        it: observing, creating or updating a policy), for one report each."""
        return self._done.pop(docs.registry_name(remote), [])

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        return {str(r.get("name")): r for r in await list_all(self.conn, "/registries")}

    async def by_id(self, *, max_age: float) -> dict[int, dict[str, Any]]:
        return {int(r["id"]): r for r in (await self.snapshot.get(max_age)).values()}

    @staticmethod
    def _fingerprint(remote: Remote) -> str:
        settings = remote.settings
        return (f"{remote.registry_type}|{settings.url}|{settings.auth_type}|"
                f"{settings.credentials.fingerprint()}")

    async def ensure(self, remote: Remote, *, max_age: float) -> tuple[int, list[str]]:
        """The registry's id, created or put back as needed; and what was done."""
        body = docs.registry_body(remote)
        name = body["name"]
        async with self._lock:  # two policies must not both create the same registry
            found = (await self.snapshot.get(max_age)).get(name)
            if found is None:
                try:
                    response = await self.conn.request("POST", f"{API}/registries", json=body)
                except BackendError as exc:
                    raise explain_refusal(exc, body, remote) from None
                finally:
                    self.snapshot.invalidate()
                registry_id = id_from_location(response)
                self._applied[registry_id] = self._fingerprint(remote)
                return registry_id, self._did(name, f"created registry {name}")
            registry_id = int(found["id"])
            diff = docs.registry_differences(body, found)
            if self._applied.get(registry_id) != self._fingerprint(remote) and \
                    "credential" not in diff:
                diff.append("credential")
            if not diff:
                return registry_id, []
            try:
                await self.conn.request("PUT", f"{API}/registries/{registry_id}",
                                        json=docs.registry_update(body))
            except BackendError as exc:
                raise explain_refusal(exc, body, remote) from None
            finally:
                self.snapshot.invalidate()
            self._applied[registry_id] = self._fingerprint(remote)
            return registry_id, self._did(name, f"updated registry {name} ({', '.join(diff)})")

    async def preview(self, remote: Remote, *, max_age: float) -> tuple[int, list[str]]:
        """What `ensure` would do, without doing it: the registry's id (0 when it would
        be created) and the actions it would take. A changed secret cannot be seen
        (Harbor masks it on read)."""
        body = docs.registry_body(remote)
        name = body["name"]
        found = (await self.snapshot.get(max_age)).get(name)
        if found is None:
            return 0, [f"would create registry {name}"]
        diff = docs.registry_differences(body, found)
        return int(found["id"]), [f"would update registry {name} ({', '.join(diff)})"] \
            if diff else []

    def _did(self, name: str, action: str) -> list[str]:
        self._done.setdefault(name, []).append(action)
        return [action]

    async def remove_unused(self, candidates: Iterable[int],
                            policies: Iterable[Mapping[str, Any]]) -> list[str]:
        """Delete the operator's registries among `candidates` no policy refers to."""
        used = {docs.registry_id(p.get(side)) for p in policies
                for side in ("src_registry", "dest_registry")}
        registries = await self.by_id(max_age=0)
        removed = []
        for registry_id in sorted(set(candidates) - used - {0}):
            registry = registries.get(registry_id)
            if registry is None or docs.owner_of(registry.get("description")) is None:
                continue  # gone already, or not ours
            # 412: Harbor still sees a policy using it (made meanwhile): keep it
            response = await self.conn.request("DELETE", f"{API}/registries/{registry_id}",
                                               allow=(404, 412))
            if response.status_code < 300:
                removed.append(str(registry.get("name")))
            self._applied.pop(registry_id, None)
        self.snapshot.invalidate()
        return removed
