"""The Harbor backend against two Harbor API simulators, without Kubernetes: policies
and their registries, executions, deletion with a running execution, robot tokens."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from replication_operator.backends.harbor.backend import HarborBackend
from replication_operator.backends.policies import PolicyFilter, PolicyRequest
from replication_operator.backends.tokens import TokenRequest
from replication_operator.credentials import Credentials
from replication_operator.errors import NotFoundError, PermanentBackendError
from replication_operator.http import ServerConnection, ServerSettings

pytestmark = pytest.mark.integration
API = "/api/v2.0"


def settings(sim: Any, name: str) -> ServerSettings:
    return ServerSettings(key=f"it/{name}", type="harbor", url=sim.url, auth_type="basic",
                          credentials=Credentials(username=sim.username, password=sim.password))


async def until(predicate: Callable[[], Any], timeout: float = 30,
                what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def backend(harbor_a: Any) -> AsyncIterator[HarborBackend]:
    conn = ServerConnection(settings(harbor_a, "harbor-a"))
    yield HarborBackend(conn, lambda s: ServerConnection(s))
    await conn.aclose()


def writes(sim: Any) -> list[str]:
    return [f"{r.method} {r.path}" for r in sim.store.requests.list()
            if r.method in ("POST", "PUT", "PATCH", "DELETE")]


def request(harbor_b: Any, name: str, **overrides: Any) -> PolicyRequest:
    values: dict[str, Any] = {
        "key": f"it/{name}", "name": f"it.{name}", "external_id": "", "adopted": False,
        "remote": settings(harbor_b, "harbor-b"), "push": True, "patterns": ("library/*",),
        "dest_namespace": "mirror", "filters": (PolicyFilter("tag", "v*"),)}
    values.update(overrides)
    return PolicyRequest(**values)


async def test_probe_and_wrong_credentials(backend: HarborBackend, harbor_a: Any) -> None:
    info = await backend.probe()
    assert info.flavour == "Harbor" and info.version.startswith("v2.")
    wrong = dataclasses.replace(settings(harbor_a, "x"),
                                credentials=Credentials(username="admin", password="nope"))
    conn = ServerConnection(wrong)
    try:
        with pytest.raises(PermanentBackendError) as caught:
            await HarborBackend(conn, lambda s: conn).probe()
        assert caught.value.code == "Unauthorized"
        assert "nope" not in str(caught.value)
    finally:
        await conn.aclose()


async def test_policy_lifecycle(backend: HarborBackend, harbor_a: Any, harbor_b: Any,
                                unique_name: Callable[[str], str]) -> None:
    name = unique_name("life")
    harbor_a.store.push_artifact("library", "nginx", "v1.25")
    harbor_a.store.push_artifact("library", "redis", "v7.2")
    req = request(harbor_b, name, replicate_deletion=True)
    backend.validate(req)
    assert not (await backend.observe_policy(req, max_age=0)).exists
    policy_id = await backend.create_policy(req)
    req = dataclasses.replace(req, external_id=policy_id)

    harbor_a.store.requests.clear()
    seen = await backend.observe_policy(req, max_age=0)
    assert seen.exists and seen.up_to_date, seen.differences
    assert seen.owner == f"it/{name}"
    assert writes(harbor_a) == [], "observing an untouched policy writes nothing"
    stored = httpx.get(f"{harbor_a.url}{API}/replication/policies/{policy_id}",
                       auth=(harbor_a.username, harbor_a.password)).json()
    assert stored["replicate_deletion"] is True

    changed = dataclasses.replace(req, trigger="scheduled", schedule="@daily", enabled=False)
    seen = await backend.observe_policy(changed, max_age=0)
    assert sorted(seen.differences) == ["enabled", "trigger"]
    await backend.update_policy(changed, seen)
    again = await backend.observe_policy(changed, max_age=0)
    assert again.up_to_date, again.differences
    assert [w.split()[0] for w in writes(harbor_a)] == ["PUT"]

    enabled = dataclasses.replace(changed, enabled=True)
    await backend.update_policy(enabled, await backend.observe_policy(enabled, max_age=0))
    execution_id = await backend.run_policy(policy_id)
    finished = await until(lambda: _finished(backend, enabled, execution_id), what="run done")
    assert finished.status == "Succeed" and finished.total == 2 and finished.succeeded == 2

    harbor_a.store.add_failure_pattern("library/redis")
    try:
        failing = await backend.run_policy(policy_id)
        failed = await until(lambda: _finished(backend, enabled, failing), what="failed run")
    finally:
        harbor_a.store.clear_failure_patterns()
    assert failed.status == "Failed" and failed.failed == 1
    tasks = await backend.failed_tasks(failing, 3)
    assert len(tasks) == 1 and "library/redis" in tasks[0].source and tasks[0].message

    removed = await backend.delete_policy(f"it.{name}", policy_id)
    assert removed == ["dbops.it.harbor-b"], "its registry goes with the last policy"
    assert not (await backend.observe_policy(req, max_age=0)).exists


async def _finished(backend: HarborBackend, req: PolicyRequest, execution_id: int) -> Any:
    seen = await backend.observe_policy(req, max_age=0, follow=[execution_id])
    found = next((e for e in seen.executions if e.id == execution_id), None)
    return found if found is not None and not found.running else None


async def test_shared_registry_removed_with_its_last_policy(
        backend: HarborBackend, harbor_a: Any, harbor_b: Any,
        unique_name: Callable[[str], str]) -> None:
    first, second = request(harbor_b, unique_name("one")), request(harbor_b, unique_name("two"))
    ids = [await backend.create_policy(first), await backend.create_policy(second)]
    registries = await backend.registries.by_id(max_age=0)
    mine = [r for r in registries.values() if r["name"] == "dbops.it.harbor-b"]
    assert len(mine) == 1, "one registry for both policies"
    assert await backend.delete_policy(first.name, ids[0]) == []
    assert await backend.delete_policy(second.name, ids[1]) == ["dbops.it.harbor-b"]


async def test_deletion_stops_a_running_execution(
        backend: HarborBackend, harbor_a: Any, harbor_b: Any,
        unique_name: Callable[[str], str]) -> None:
    harbor_a.store.push_artifact("library", "nginx", "v1.25")
    req = request(harbor_b, unique_name("slow"))
    policy_id = await backend.create_policy(req)
    harbor_a.store.set_task_seconds(600)
    try:
        execution_id = await backend.run_policy(policy_id)
        harbor_a.store.requests.clear()
        await backend.delete_policy(req.name, policy_id)
    finally:
        harbor_a.store.set_task_seconds(2.0)
    order = writes(harbor_a)
    assert order.index(f"PUT {API}/replication/executions/{execution_id}") < \
        order.index(f"DELETE {API}/replication/policies/{policy_id}")


async def test_a_repeated_create_finds_its_own_policy(
        backend: HarborBackend, harbor_b: Any, unique_name: Callable[[str], str]) -> None:
    req = request(harbor_b, unique_name("twice"))
    first = await backend.create_policy(req)
    assert await backend.create_policy(req) == first, "a lost answer must not fail"
    stranger = dataclasses.replace(req, key="it/someone-else")
    with pytest.raises(PermanentBackendError, match=r"spec\.externalName"):
        await backend.create_policy(stranger)
    await backend.delete_policy(req.name, first)


async def test_adoption_of_a_missing_id_is_refused(backend: HarborBackend,
                                                   harbor_b: Any) -> None:
    req = request(harbor_b, "ghost", external_id="987654", adopted=True)
    with pytest.raises(NotFoundError, match=r"spec\.externalName"):
        await backend.observe_policy(req, max_age=0)


async def test_robot_tokens(backend: HarborBackend, harbor_a: Any,
                            unique_name: Callable[[str], str]) -> None:
    harbor_a.store.push_artifact("team", "app", "v1")
    robots = backend.tokens()
    name = unique_name("bot")
    req = TokenRequest(key=f"it/{name}", external_name=name, read=("team",),
                       expires_in_days=7)
    assert not (await robots.observe_token(req)).exists
    issued = await robots.create_token(req)
    user, first = issued.credentials.username, issued.credentials.token
    assert user == f"robot$team+{name}" and issued.expires_at

    def code(secret: str) -> int:
        return httpx.get(f"{harbor_a.url}{API}/projects/team/repositories",
                         auth=(user, secret)).status_code

    assert code(first) == 200
    seen = await robots.observe_token(req)
    assert seen.exists and seen.up_to_date, seen.differences
    rotated = await robots.rotate_token(req)
    assert rotated.credentials.username == user
    assert code(rotated.credentials.token) == 200 and code(first) == 401

    wider = dataclasses.replace(req, write=("team",))
    assert (await robots.observe_token(wider)).differences == ["permissions"]
    assert await robots.update_token(wider) is None
    assert (await robots.observe_token(wider)).up_to_date

    two_projects = dataclasses.replace(req, read=("team", "library"))
    reissued = await robots.update_token(two_projects)
    assert reissued is not None and reissued.credentials.username == f"robot${name}"
    assert (await robots.observe_token(two_projects)).up_to_date
    await robots.delete_token(name)
    assert not (await robots.observe_token(two_projects)).exists
