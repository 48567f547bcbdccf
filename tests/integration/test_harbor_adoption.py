"""Adopting a hand-made Harbor policy writes nothing when it matches the spec, and the
preview `plan` uses writes nothing at all (two Harbor API simulators, no Kubernetes)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from replication_operator.backends.harbor.backend import HarborBackend
from replication_operator.backends.policies import PolicyFilter, PolicyRequest, Remote
from replication_operator.credentials import Credentials
from replication_operator.http import NoCookies, ServerConnection, ServerSettings

pytestmark = pytest.mark.integration
API = "/api/v2.0"


def settings(sim: Any, name: str) -> ServerSettings:
    return ServerSettings(key=f"it/{name}", type="harbor", url=sim.url, auth_type="basic",
                          credentials=Credentials(username=sim.username, password=sim.password))


def writes(sim: Any) -> list[str]:
    return [f"{r.method} {r.path}" for r in sim.store.requests.list()
            if r.method in ("POST", "PUT", "PATCH", "DELETE")]


@pytest.fixture
async def backend(harbor_a: Any) -> AsyncIterator[HarborBackend]:
    conn = ServerConnection(settings(harbor_a, "harbor-a"))
    yield HarborBackend(conn, lambda s: ServerConnection(s))
    await conn.aclose()


def admin(sim: Any) -> httpx.Client:
    # no cookies: Harbor refuses writes that send its session cookie back (CSRF)
    return httpx.Client(base_url=f"{sim.url}{API}", auth=(sim.username, sim.password),
                        timeout=10, cookies=NoCookies())


def hand_made(harbor_a: Any, harbor_b: Any, name: str) -> tuple[str, int]:
    """A registry and a push policy made by hand on harbor_a (no owner marker)."""
    with admin(harbor_a) as http:
        made = http.post("/registries", json={
            "name": f"by-hand-{name}", "type": "harbor", "url": harbor_b.url,
            "credential": {"type": "basic", "access_key": harbor_b.username,
                           "access_secret": harbor_b.password}})
        made.raise_for_status()
        registry_id = int(made.headers["location"].rsplit("/", 1)[-1])
        created = http.post("/replication/policies", json={
            "name": f"legacy {name}", "description": "made by the platform team",
            "dest_registry": {"id": registry_id}, "dest_namespace": "mirror",
            "trigger": {"type": "manual"}, "enabled": True, "override": True,
            "filters": [{"type": "name", "value": "library/**"},
                        {"type": "tag", "value": "v*"}]})
        created.raise_for_status()
    return created.headers["location"].rsplit("/", 1)[-1], registry_id


def adopting(harbor_b: Any, name: str, policy_id: str, **overrides: Any) -> PolicyRequest:
    values: dict[str, Any] = {
        "key": f"it/{name}", "name": f"it.{name}", "external_id": policy_id, "adopted": True,
        "remote": Remote(settings(harbor_b, "harbor-b")), "push": True,
        "patterns": ("library/**",), "dest_namespace": "mirror",
        "filters": (PolicyFilter("tag", "v*"),)}
    values.update(overrides)
    return PolicyRequest(**values)


async def test_a_matching_hand_made_policy_is_adopted_without_a_write(
        backend: HarborBackend, harbor_a: Any, harbor_b: Any,
        unique_name: Callable[[str], str]) -> None:
    name = unique_name("adopt")
    policy_id, registry_id = hand_made(harbor_a, harbor_b, name)
    harbor_a.store.requests.clear()
    seen = await backend.observe_policy(adopting(harbor_b, name, policy_id), max_age=0)
    assert seen.exists and seen.up_to_date, seen.differences
    assert seen.owner is None
    assert seen.registries == [{"name": f"by-hand-{name}", "id": registry_id,
                                "server": "harbor-b"}], "the policy's own registry is kept"
    assert writes(harbor_a) == [], "no registry of the operator's, no PUT of the policy"

    # a change the spec asks for is written, and the name and description stay
    changed = adopting(harbor_b, name, policy_id, dest_namespace="elsewhere")
    seen = await backend.observe_policy(changed, max_age=0)
    assert seen.differences == ["target.namespace"]
    await backend.update_policy(changed, seen)
    assert [w.split()[0] for w in writes(harbor_a)] == ["PUT"]
    with admin(harbor_a) as http:
        stored = http.get(f"/replication/policies/{policy_id}").json()
    assert stored["name"] == f"legacy {name}"
    assert stored["description"] == "made by the platform team"
    assert stored["dest_registry"]["id"] == registry_id


async def test_preview_never_writes_and_names_what_would_change(
        backend: HarborBackend, harbor_a: Any, harbor_b: Any,
        unique_name: Callable[[str], str]) -> None:
    name = unique_name("preview")
    policy_id, _ = hand_made(harbor_a, harbor_b, name)
    harbor_a.store.requests.clear()
    same = await backend.preview_policy(adopting(harbor_b, name, policy_id), max_age=0)
    assert same.up_to_date and same.registry_actions == []

    # not adopted: the operator would use a registry of its own, not made yet
    other_remote = Remote(dataclasses.replace(settings(harbor_b, "harbor-b"),
                                              key=f"it/{name}-peer"))
    own = dataclasses.replace(adopting(harbor_b, name, policy_id), remote=other_remote,
                              adopted=False, name=f"legacy {name}")
    seen = await backend.preview_policy(own, max_age=0)
    assert seen.registry_actions == [f"would create registry dbops.it.{name}-peer"]
    assert "target.server" in seen.differences and "description" in seen.differences
    assert writes(harbor_a) == [], "a preview writes nothing, not even a registry"
