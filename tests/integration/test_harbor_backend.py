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

from replication_operator.backends.harbor import docs
from replication_operator.backends.harbor.backend import HarborBackend
from replication_operator.backends.policies import PolicyFilter, PolicyRequest, Remote
from replication_operator.backends.tokens import TokenRequest
from replication_operator.credentials import Credentials
from replication_operator.errors import (
    NotFoundError,
    PermanentBackendError,
    TransientBackendError,
)
from replication_operator.http import ServerConnection, ServerSettings
from replication_operator.reconcile.policy import declared_registry

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
        "remote": Remote(settings(harbor_b, "harbor-b")), "push": True, "patterns": ("library/*",),
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
        assert caught.value.code == "CredentialsRefused"
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
        # the stopped execution closes at Harbor's next status refresh: until then the
        # deletion is refused (412) and retried, as the operator's finalizer does
        await until(lambda: _deleted(backend, req.name, policy_id), what="the deletion")
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
    assert not (await robots.observe_token(req, max_age=0)).exists
    issued = await robots.create_token(req)
    user, first = issued.credentials.username, issued.credentials.token
    assert user == f"robot$team+{name}" and issued.expires_at

    def code(username: str, secret: str) -> int:
        return httpx.get(f"{harbor_a.url}{API}/projects/team/repositories",
                         auth=(username, secret)).status_code

    assert code(user, first) == 200
    seen = await robots.observe_token(req, max_age=0)
    assert seen.exists and seen.up_to_date, seen.differences

    # make-before-break: the other slot is a second robot; both work until one goes
    second = await robots.create_token(dataclasses.replace(req, external_name=f"{name}-b"))
    assert second.credentials.username == f"robot$team+{name}-b"
    assert code(user, first) == 200 and code(second.credentials.username,
                                             second.credentials.token) == 200
    await robots.delete_token(name)
    assert code(user, first) == 401
    assert not (await robots.observe_token(req, max_age=0)).exists, "slot b is another robot"

    wider = dataclasses.replace(req, external_name=f"{name}-b", write=("team",))
    assert (await robots.observe_token(wider, max_age=0)).differences == ["permissions"]
    assert await robots.update_token(wider) is True
    assert (await robots.observe_token(wider, max_age=0)).up_to_date

    two_projects = dataclasses.replace(wider, read=("team", "library"))
    assert await robots.update_token(two_projects) is False, "a new level: a new robot"
    await robots.delete_token(f"{name}-b")
    assert not (await robots.observe_token(two_projects, max_age=0)).exists


async def test_writes_after_reads_carry_no_session_cookie(harbor_a: Any, harbor_b: Any,
                                                          unique_name: Callable[[str], str]
                                                          ) -> None:
    """Harbor sets `sid` on every answer and refuses writes that send it back without a
    CSRF token (BACKENDS.md §2a): every write of a fresh connection after its first read
    must still be accepted, and no request may carry the cookie."""
    conn = ServerConnection(settings(harbor_a, "fresh"))
    backend = HarborBackend(conn, lambda s: ServerConnection(s))
    harbor_a.store.requests.clear()
    try:
        await backend.probe()
        req = request(harbor_b, unique_name("fresh"))
        assert not (await backend.observe_policy(req, max_age=0)).exists
        policy_id = await backend.create_policy(req)
        await backend.delete_policy(req.name, policy_id)
    finally:
        await conn.aclose()
    logged = harbor_a.store.requests.list()
    assert [r for r in logged if r.method == "POST"], "the test must have written"
    assert not [f"{r.method} {r.path}" for r in logged if r.session]
    assert all(r.status != 403 for r in logged)


async def test_registry_refusals_say_which_registry_and_what_to_check(
        backend: HarborBackend, harbor_b: Any, unique_name: Callable[[str], str]) -> None:
    wrong = Remote(ServerSettings(
        key=f"it/{unique_name('wrong')}", type="harbor", url=harbor_b.url, auth_type="basic",
        credentials=Credentials(username=harbor_b.username, password="not-the-password")))
    with pytest.raises(PermanentBackendError) as refused:
        await backend.registries.ensure(wrong, max_age=0)
    message = refused.value.message
    assert refused.value.code == "RegistryUnhealthy"
    assert docs.registry_name(wrong) in message and "auth Secret of DatabaseServer" in message
    assert "not-the-password" not in message

    down = Remote(ServerSettings(key=f"it/{unique_name('down')}", type="harbor",
                                 url="http://127.0.0.1:9"))
    with pytest.raises(TransientBackendError) as unreachable:
        await backend.registries.ensure(down, max_age=0)
    assert docs.registry_name(down) in unreachable.value.message
    assert "http://127.0.0.1:9" in unreachable.value.message


async def test_a_plain_registry_as_the_other_side(backend: HarborBackend, harbor_a: Any,
                                                 registry: Any,
                                                 unique_name: Callable[[str], str]) -> None:
    """A real Distribution registry (htpasswd auth), declared in the policy: Harbor checks
    it with a real request to its /v2/ with the credential, as the real Harbor does."""
    block = {"type": "docker-registry", "url": registry.url, "secretRef": {"name": "mirror"}}
    right = {"username": registry.username, "password": registry.password}
    remote = declared_registry("it", "spec.target.registry", block, right)
    name = unique_name("mirror")
    req = request(harbor_a, name, remote=remote)  # the remote is the registry, not harbor_b
    backend.validate(req)
    policy_id = await backend.create_policy(req)
    req = dataclasses.replace(req, external_id=policy_id)
    seen = await backend.observe_policy(req, max_age=0)
    assert seen.up_to_date, seen.differences
    [entry] = seen.registries
    stored = harbor_a.store.get_registry(entry["id"])
    assert (stored.type, stored.url, stored.access_key) == (
        "docker-registry", registry.url, registry.username)
    assert entry == {"name": docs.registry_name(remote), "id": stored.id, "url": registry.url}

    wrong = declared_registry("it", "spec.target.registry", block,
                              {**right, "password": "not-the-password"})
    with pytest.raises(PermanentBackendError) as refused:
        await backend.observe_policy(dataclasses.replace(req, remote=wrong), max_age=0)
    assert refused.value.code == "RegistryUnhealthy"
    assert "Secret 'mirror' (spec.target.registry.secretRef)" in refused.value.message
    assert harbor_a.store.get_registry(stored.id).access_secret == registry.password

    harbor_a.store.get_registry(stored.id).url = "http://127.0.0.1:9"  # edited by hand
    seen = await backend.observe_policy(req, max_age=0)
    assert seen.registry_actions == [f"updated registry {entry['name']} (url)"]
    assert harbor_a.store.get_registry(stored.id).url == registry.url

    removed = await backend.delete_policy(req.name, policy_id)
    assert removed == [entry["name"]]


async def test_an_execution_harbor_does_not_close(backend: HarborBackend, harbor_a: Any,
                                                 harbor_b: Any,
                                                 unique_name: Callable[[str], str]) -> None:
    project = unique_name("stuck")
    harbor_a.store.set_task_seconds(0.2)
    harbor_a.store.push_artifact(project, "app", "1")
    req = request(harbor_b, unique_name("stuck"), patterns=(f"{project}/**",), filters=())
    policy_id = await backend.create_policy(req)
    req = dataclasses.replace(req, external_id=policy_id)
    harbor_a.store.stick_next_execution()
    execution_id = await backend.run_policy(policy_id)

    async def tasks_ended() -> Any:
        seen = await backend.observe_policy(req, max_age=0, follow=[execution_id])
        return next((e for e in seen.executions if e.id == execution_id and e.tasks_finished),
                    None)

    execution = await until(tasks_ended, what="the tasks of the execution to end")
    assert (execution.status, execution.outcome, execution.end_time) == (
        "InProgress", "Succeed", None)
    with pytest.raises(TransientBackendError, match="has not closed execution"):
        await backend.delete_policy(req.name, policy_id)
    harbor_a.store.release_stuck()
    await until(lambda: _deleted(backend, req.name, policy_id), what="the policy to go")


async def _deleted(backend: HarborBackend, name: str, policy_id: str) -> bool:
    try:
        await backend.delete_policy(name, policy_id)
    except TransientBackendError:
        return False
    return True
