"""Contract tests for the Harbor simulator (tests/harbor_sim): every endpoint the operator
uses, driven through the published client `harborapi` and parsed with its own models,
so the simulator answers in the shapes the real Harbor API has."""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from harborapi import HarborAsyncClient
from harborapi.client import CookieDiscarder
from harborapi.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    InternalServerError,
    NotFound,
    PreconditionFailed,
    StatusError,
    Unauthorized,
    UnprocessableEntity,
)
from harborapi.models import (
    Access,
    Errors,
    OverallHealthStatus,
    ProjectMetadata,
    ProjectReq,
    Registry,
    RegistryCredential,
    RegistryPing,
    RegistryUpdate,
    ReplicationExecution,
    ReplicationFilter,
    ReplicationPolicy,
    ReplicationTask,
    ReplicationTrigger,
    ReplicationTriggerSettings,
    Repository,
    Robot,
    RobotCreate,
    RobotPermission,
)

from harbor_sim import HarborSimulator, Store
from harbor_sim.store import Clock

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


# ------------------------------------------------------------------ helpers


@pytest.fixture
def sims(harbor_a: HarborSimulator, harbor_b: HarborSimulator
         ) -> Iterator[tuple[HarborSimulator, HarborSimulator]]:
    """The session's two simulators, with controls reset after each test."""
    yield harbor_a, harbor_b
    for sim in (harbor_a, harbor_b):
        sim.store.faults.clear()
        sim.store.clear_unreachable()
        sim.store.clear_failure_patterns()
        sim.store.set_task_seconds(2.0)


def client_for(sim: HarborSimulator, username: str | None = None,
               secret: str | None = None) -> HarborAsyncClient:
    return HarborAsyncClient(url=sim.api_url, username=username or sim.username,
                             secret=secret or sim.password, retry=None, timeout=15.0)


@pytest.fixture
async def client(sims: tuple[HarborSimulator, HarborSimulator]
                 ) -> AsyncIterator[HarborAsyncClient]:
    harbor = client_for(sims[0])
    yield harbor
    await harbor.client.aclose()


@pytest.fixture
async def raw(sims: tuple[HarborSimulator, HarborSimulator]) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx against harbor_a as admin, for headers the client does not expose."""
    sim = sims[0]
    async with httpx.AsyncClient(base_url=sim.api_url, auth=(sim.username, sim.password),
                                 timeout=15.0, cookies=CookieDiscarder()) as http:
        yield http


async def until(probe: Callable[[], Awaitable[T | None]], what: str,
                timeout: float = 15.0) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def error_codes(answer: httpx.Response) -> list[str | None]:
    """The codes of a Harbor error body, parsed with harborapi's `Errors` model."""
    return [e.code for e in Errors.model_validate(answer.json()).errors or []]


def location_id(location: str, prefix: str) -> int:
    match = re.fullmatch(rf"/api/v2\.0/{prefix}/(\d+)", location)
    assert match, f"unexpected Location {location!r}"
    return int(match.group(1))


async def new_registry(client: HarborAsyncClient, peer: HarborSimulator, name: str) -> int:
    location = await client.create_registry(Registry(
        name=name, type="harbor", url=peer.url, description="peer",
        credential=RegistryCredential(type="basic", access_key=peer.username,
                                      access_secret=peer.password)))
    return location_id(location, "registries")


async def new_policy(client: HarborAsyncClient, name: str, registry_id: int,
                     **fields: Any) -> int:
    fields.setdefault("enabled", True)
    location = await client.create_replication_policy(ReplicationPolicy(
        name=name, dest_registry=Registry(id=registry_id), **fields))
    return location_id(location, "replication/policies")


async def finished(client: HarborAsyncClient, execution_id: int, timeout: float = 15.0
                   ) -> ReplicationExecution:
    async def probe() -> ReplicationExecution | None:
        execution = await client.get_replication(execution_id)
        return execution if execution.status != "InProgress" else None
    return await until(probe, f"execution {execution_id} to finish", timeout)


# ------------------------------------------------------------ system, errors


async def test_systeminfo_health_current_user_and_credential_errors(
        client: HarborAsyncClient, sims: tuple[HarborSimulator, HarborSimulator]) -> None:
    sim = sims[0]
    info = await client.get_system_info()
    assert info.harbor_version == "v2.12.4-sim"
    assert info.external_url == sim.url
    health = await client.health_check()
    assert isinstance(health, OverallHealthStatus) and health.status == "healthy"
    assert {c.name for c in health.components or []} >= {"core", "jobservice", "registry"}
    user = await client.get_current_user()
    assert (user.username, user.sysadmin_flag, user.user_id) == (sim.username, True, 1)

    async with httpx.AsyncClient(base_url=sim.api_url, timeout=15.0) as anonymous:
        answer = await anonymous.get("/systeminfo")
        assert answer.status_code == 200 and answer.json()["harbor_version"]
        assert "external_url" not in answer.json()  # protected info needs a login
        assert (await anonymous.get("/health")).status_code == 200
        answer = await anonymous.get("/users/current")
        assert answer.status_code == 401
        assert error_codes(answer) == ["UNAUTHORIZED"]

    wrong = client_for(sim, secret="not-the-password")
    with pytest.raises(Unauthorized) as info_401:
        await wrong.get_current_user()
    assert info_401.value.status_code == 401
    assert [(e.code, e.message) for e in info_401.value.errors] == [
        ("UNAUTHORIZED", "unauthorized")]
    with pytest.raises(Unauthorized):
        await wrong.get_replication_policies()
    await wrong.client.aclose()


async def test_not_found_body_and_request_id(raw: httpx.AsyncClient,
                                             client: HarborAsyncClient) -> None:
    answer = await raw.get("/replication/policies/999999", headers={"X-Request-Id": "req-42"})
    assert answer.status_code == 404
    assert answer.headers["X-Request-Id"] == "req-42"
    assert error_codes(answer) == ["NOT_FOUND"]
    generated = await raw.get("/health")
    assert len(generated.headers["X-Request-Id"]) >= 16
    with pytest.raises(NotFound) as info:
        await client.get_replication(999999)
    assert info.value.errors[0].code == "NOT_FOUND"
    assert "999999" in (info.value.errors[0].message or "")


# ------------------------------------- what a real Harbor 2.12.4 does (BACKENDS.md §2a)


async def test_every_answer_sets_a_session_cookie_and_session_writes_need_csrf(
        sims: tuple[HarborSimulator, HarborSimulator], unique_name: Callable[[str], str]
) -> None:
    """A client that keeps cookies sends `sid` back, becomes a browser session, and its
    writes are refused for want of a CSRF token: the bug that made every operator write
    fail on a real Harbor."""
    sim = sims[0]
    body = {"project_name": unique_name("csrf"), "metadata": {"public": "false"}}
    async with httpx.AsyncClient(base_url=sim.api_url, auth=(sim.username, sim.password),
                                 timeout=15.0) as keeps_cookies:
        first = await keeps_cookies.get("/systeminfo")
        assert re.fullmatch(r"[0-9a-f]{32}", first.cookies.get("sid") or "")
        refused = await keeps_cookies.post("/projects", json=body)
        assert refused.status_code == 403
        assert refused.json() == {"errors": [{"code": "FORBIDDEN",
                                              "message": "CSRF token not found in request"}]}
        wrong = await keeps_cookies.post("/projects", json=body,
                                         headers={"X-Harbor-CSRF-Token": "guess"})
        assert error_codes(wrong) == ["FORBIDDEN"] and "invalid" in wrong.text
        answer = await keeps_cookies.get("/systeminfo")
        assert "sid" not in answer.cookies, "a known session is not set again"
        token = answer.headers["X-Harbor-CSRF-Token"]
        allowed = await keeps_cookies.post("/projects", json=body,
                                           headers={"X-Harbor-CSRF-Token": token})
        assert allowed.status_code == 201
        # the token is only good with the _gorilla_csrf cookie it came with
        keeps_cookies.cookies.delete("_gorilla_csrf")
        no_cookie = await keeps_cookies.post("/projects", json={
            "project_name": unique_name("csrf")}, headers={"X-Harbor-CSRF-Token": token})
        assert "CSRF token invalid" in no_cookie.text
    async with httpx.AsyncClient(base_url=sim.api_url, auth=(sim.username, sim.password),
                                 timeout=15.0, cookies=CookieDiscarder()) as basic_only:
        for _ in range(2):
            answer = await basic_only.post("/projects", json={
                "project_name": unique_name("nocookie")})
            assert answer.status_code == 201 and answer.cookies.get("sid")
    logged = sim.store.requests.list("POST", "/api/v2.0/projects")
    assert [r.session for r in logged[-6:]] == [True, True, True, True, False, False]


async def test_wrong_credentials_are_not_always_refused(
        sims: tuple[HarborSimulator, HarborSimulator]) -> None:
    """Reads of public projects and systeminfo fall back to anonymous; the token service
    hands out a token that grants nothing; only `users/current` proves credentials."""
    sim = sims[0]
    async with httpx.AsyncClient(base_url=sim.url, auth=(sim.username, "wrong"),
                                 timeout=15.0, cookies=CookieDiscarder()) as wrong:
        assert (await wrong.get("/api/v2.0/systeminfo")).status_code == 200
        assert (await wrong.get("/api/v2.0/projects/library")).status_code == 200
        assert (await wrong.get("/api/v2.0/users/current")).status_code == 401
        token = await wrong.get("/service/token", params={"service": "harbor-registry"})
        assert token.status_code == 200 and token.json()["token"]
        base = await wrong.get("/v2/", auth=None, headers={
            "Authorization": f"Bearer {token.json()['token']}"})
        assert base.status_code == 401
        assert base.headers["WWW-Authenticate"].startswith(
            f'Bearer realm="{sim.url}/service/token"')
        assert (await wrong.get("/api/version")).json() == {"version": "v2.0"}
    async with httpx.AsyncClient(base_url=sim.url, auth=(sim.username, sim.password),
                                 timeout=15.0, cookies=CookieDiscarder()) as right:
        token = await right.get("/service/token", params={"service": "harbor-registry"})
        base = await right.get("/v2/", auth=None, headers={
            "Authorization": f"Bearer {token.json()['token']}"})
        assert base.status_code == 200


async def test_execution_ids_lag_and_executions_that_never_close(
        client: HarborAsyncClient, sims: tuple[HarborSimulator, HarborSimulator],
        unique_name: Callable[[str], str]) -> None:
    """Ids are shared with Harbor's other jobs (take them from Location; a fresh Harbor's
    first was 3); an execution stays InProgress after its tasks finished until Harbor
    refreshes it, and may never be closed, with succeed == total, in_progress == 0 and a
    zero end time."""
    sim = sims[0]
    sim.store.set_task_seconds(0.2)
    project = unique_name("lag")
    sim.store.push_artifact(project, "app", "1")
    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    policy_id = await new_policy(client, unique_name("lag"), registry_id,
                                 filters=[ReplicationFilter(type="name", value=f"{project}/**")])
    with HarborSimulator(username="admin", password="pw") as fresh:
        fresh.store.push_artifact("library", "app", "1")
        peer = fresh.store.save_registry(fresh.store.prepare_registry(
            {"name": "peer", "type": "docker-registry", "url": "http://127.0.0.1:9"}))
        first = fresh.store.create_policy({"name": "first", "enabled": True,
                                           "dest_registry": {"id": peer.id}})
        ids = [fresh.store.start_execution(first.id).id for _ in range(4)]
    assert ids[0] == 3 and ids == sorted(ids) and ids[-1] - ids[0] > 3  # gaps

    execution_id = location_id(await client.start_replication(policy_id),
                               "replication/executions")

    async def tasks_done() -> ReplicationExecution | None:
        execution = await client.get_replication(execution_id)
        return execution if execution.succeed == execution.total == 1 else None

    lagging = await until(tasks_done, "the task to finish")
    if lagging.status == "InProgress":  # not yet refreshed: the usual case
        assert lagging.in_progress == 0 and lagging.end_time is not None
        assert lagging.end_time.year == 1
    assert (await finished(client, execution_id)).status == "Succeed"

    sim.store.stick_next_execution()
    stuck_id = location_id(await client.start_replication(policy_id),
                           "replication/executions")

    async def stuck_done() -> ReplicationExecution | None:
        execution = await client.get_replication(stuck_id)
        return execution if execution.succeed == execution.total == 1 else None

    await until(stuck_done, "the stuck execution's task to finish")
    refresh = sim.store.settings.status_refresh_seconds
    sim.store.set_status_refresh_seconds(0)  # every refresh is past: it must stay open
    try:
        stuck = await client.get_replication(stuck_id)
    finally:
        sim.store.set_status_refresh_seconds(refresh)
    assert (stuck.status, stuck.in_progress) == ("InProgress", 0)
    assert stuck.end_time is not None and stuck.end_time.year == 1
    with pytest.raises(PreconditionFailed):  # Harbor will not delete its policy meanwhile
        await client.delete_replication_policy(policy_id)
    sim.store.release_stuck()
    assert (await finished(client, stuck_id)).status == "Succeed"
    await client.delete_replication_policy(policy_id)


async def test_answers_seen_on_a_real_harbor_2_12_4(
        client: HarborAsyncClient, raw: httpx.AsyncClient,
        sims: tuple[HarborSimulator, HarborSimulator], unique_name: Callable[[str], str]
) -> None:
    """Differences a run against a real Harbor v2.12.4 showed (a build of goharbor/harbor
    on this machine): project lookups, robot views, `q` unescaped twice, `filters: null`,
    list orders, the stop answer."""
    sim = sims[0]
    missing = await raw.get("/projects/no-such-project")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["message"] == "project no-such-project not found"

    private, hidden = unique_name("mine"), unique_name("hidden")
    for name in (private, hidden):
        await client.create_project(ProjectReq(project_name=name,
                                               metadata=ProjectMetadata(public="false")))
    robot = await client.create_robot(RobotCreate(
        name=unique_name("bot"), level="project", duration=-1, permissions=[RobotPermission(
            kind="project", namespace=private,
            access=[Access(resource="repository", action="pull")])]))
    async with httpx.AsyncClient(base_url=sim.api_url, auth=(robot.name or "", robot.secret
                                                             or ""), timeout=15.0,
                                 cookies=CookieDiscarder()) as as_robot:
        seen = [p["name"] for p in (await as_robot.get("/projects", params={
            "page_size": 100})).json()]
        assert private in seen and hidden not in seen and "library" in seen
        current = await as_robot.get("/users/current")
        assert current.status_code == 412 and "security context: robot" in current.text
    listed = (await raw.get(f"/robots/{robot.id}")).json()
    assert (listed["creator_type"], "creator_ref" in listed) == ("local", True)

    name_with_plus = (robot.name or "").removeprefix("robot$")  # "<project>+<name>"
    once = await raw.get("/robots", params={"q": f"Level=system,name={name_with_plus}"})
    assert once.json() == [], "a + sent once-escaped becomes a space"
    twice = await raw.get(f"/robots?q=Level=system,name={name_with_plus.replace('+', '%252B')}")
    assert [r["id"] for r in twice.json()] == [robot.id]

    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    bare = await new_policy(client, unique_name("bare"), registry_id)
    assert (await raw.get(f"/replication/policies/{bare}")).json()["filters"] is None

    names = [p["name"] for p in (await raw.get("/projects", params={"page_size": 100})).json()]
    assert names == sorted(names), "projects are listed by name"
    robots = [r["name"] for r in (await raw.get("/robots", params={
        "q": "Level=system", "page_size": 100})).json()]
    assert robots == sorted(robots), "robots are listed by name"
    ids = [r["id"] for r in (await raw.get("/registries", params={"page_size": 100})).json()]
    await client.update_registry(ids[0], RegistryUpdate(description="touched"))
    again = [r["id"] for r in (await raw.get("/registries", params={"page_size": 100})).json()]
    assert again == [*ids[1:], ids[0]], "registries: the database's order (updated last)"

    execution = location_id(await client.start_replication(bare), "replication/executions")
    stopped = await raw.put(f"/replication/executions/{execution}")
    assert stopped.status_code == 200 and stopped.text.strip() == "null"


async def test_page_size_limits(raw: httpx.AsyncClient) -> None:
    too_big = await raw.get("/replication/policies", params={"page_size": 101})
    assert too_big.status_code == 422
    assert "page_size in query should be less than or equal to 100" in too_big.text
    assert (await raw.get("/replication/policies", params={"page_size": 0})).status_code == 200
    assert (await raw.get("/registries")).status_code == 200


# ----------------------------------------------------------------- registries


async def test_registry_crud_masks_the_secret(
        client: HarborAsyncClient, raw: httpx.AsyncClient,
        sims: tuple[HarborSimulator, HarborSimulator], unique_name: Callable[[str], str]
) -> None:
    sim, peer = sims
    name = unique_name("reg")
    registry_id = await new_registry(client, peer, name)
    registry = await client.get_registry(registry_id)
    assert (registry.name, registry.type, registry.url, registry.status) == (
        name, "harbor", peer.url, "healthy")
    assert registry.credential is not None
    assert registry.credential.access_secret == "*****"
    assert registry.credential.access_key == peer.username
    assert peer.password not in (await raw.get(f"/registries/{registry_id}")).text
    listed = await client.get_registries(name=name)
    assert [r.id for r in listed] == [registry_id]
    assert all(r.credential is None or r.credential.access_secret in (None, "*****")
               for r in await client.get_registries(page_size=100))

    with pytest.raises(Conflict):
        await new_registry(client, peer, name)
    with pytest.raises(BadRequest):
        await client.create_registry(Registry(type="harbor", url=peer.url))
    with pytest.raises(BadRequest):
        await client.create_registry(Registry(name=unique_name("nourl"), type="harbor"))
    # BACKENDS.md §2a: an unreachable `harbor` registry is a 500 (its adapter reads
    # /api/version first); a plain registry that does not answer is "unhealthy" (400)
    sim.store.mark_unreachable("http://127.0.0.1:9")
    with pytest.raises(InternalServerError) as down:
        await client.create_registry(Registry(name=unique_name("down"), type="harbor",
                                              url="http://127.0.0.1:9"))
    assert down.value.errors[0].message == "internal server error"
    with pytest.raises(BadRequest) as unhealthy:
        await client.create_registry(Registry(name=unique_name("down"),
                                              type="docker-registry", url="http://127.0.0.1:9"))
    assert unhealthy.value.errors[0].message == "the registry is unhealthy"
    # wrong credentials for a Harbor peer: its /v2/ refuses them, so "unhealthy"
    with pytest.raises(BadRequest) as refused:
        await client.create_registry(Registry(
            name=unique_name("wrong"), type="harbor", url=peer.url,
            credential=RegistryCredential(type="basic", access_key=peer.username,
                                          access_secret="not-the-password")))
    assert refused.value.errors[0].message == "the registry is unhealthy"

    with pytest.raises(BadRequest):
        await client.update_registry(registry_id, RegistryUpdate(access_secret="new-secret"))
    assert sim.store.get_registry(registry_id).access_secret == peer.password
    await client.update_registry(registry_id, RegistryUpdate(
        description="updated", access_secret=peer.password))
    registry = await client.get_registry(registry_id)
    assert registry.description == "updated" and registry.credential is not None
    assert registry.credential.access_secret == "*****"

    await client.check_registry_status(RegistryPing(id=registry_id))
    await client.check_registry_status(RegistryPing(type="harbor", url=peer.url))
    with pytest.raises(BadRequest):
        await client.check_registry_status(RegistryPing(id=registry_id,
                                                        access_secret="not-the-password"))
    with pytest.raises(InternalServerError):
        await client.check_registry_status(RegistryPing(type="harbor", url="http://127.0.0.1:9"))
    with pytest.raises(BadRequest):
        await client.check_registry_status(RegistryPing(url=peer.url))

    policy_id = await new_policy(client, unique_name("uses"), registry_id)
    with pytest.raises(PreconditionFailed) as in_use:
        await client.delete_registry(registry_id)
    assert in_use.value.errors[0].code == "PRECONDITION"
    await client.delete_replication_policy(policy_id)
    await client.delete_registry(registry_id)
    with pytest.raises(NotFound):
        await client.get_registry(registry_id)


# ------------------------------------------------------------------- policies


async def test_policy_create_get_normalisation_and_deletion_quirk(
        client: HarborAsyncClient, raw: httpx.AsyncClient,
        sims: tuple[HarborSimulator, HarborSimulator], unique_name: Callable[[str], str]
) -> None:
    sim, peer = sims
    registry_id = await new_registry(client, peer, unique_name("reg"))
    name = unique_name("quirk")
    location = await client.create_replication_policy(ReplicationPolicy(
        name=name, dest_registry=Registry(id=registry_id), enabled=True,
        replicate_deletion=True, dest_namespace="mirror",
        trigger=ReplicationTrigger(type="manual",
                                   trigger_settings=ReplicationTriggerSettings(cron="")),
        filters=[ReplicationFilter(type="name", value="library/**"),
                 ReplicationFilter(type="tag", value="v*", decoration="matches")]))
    policy_id = location_id(location, "replication/policies")
    policy = await client.get_replication_policy(policy_id)
    # Harbor's handler takes replicate_deletion from the deprecated `deletion` field
    assert not policy.replicate_deletion and not policy.deletion
    body = (await raw.get(f"/replication/policies/{policy_id}")).json()
    assert "replicate_deletion" not in body and "deletion" not in body  # false is omitted
    assert policy.src_registry is not None and policy.dest_registry is not None
    assert (policy.src_registry.id, policy.src_registry.name, policy.src_registry.type,
            policy.src_registry.url) == (0, "Local", "harbor", sim.url)
    assert policy.dest_registry.id == registry_id and policy.dest_registry.url == peer.url
    assert policy.dest_registry.credential is not None
    assert policy.dest_registry.credential.access_secret == "*****"
    assert policy.dest_namespace == "mirror"
    assert policy.dest_namespace_replace_count == -1
    assert policy.speed == 0 and policy.copy_by_chunk is False
    assert policy.trigger is not None and policy.trigger.type == "manual"
    assert policy.trigger.trigger_settings is not None
    assert not policy.trigger.trigger_settings.cron
    assert policy.filters is not None
    assert [(f.type, f.value, f.decoration) for f in policy.filters] == [
        ("name", "library/**", None), ("tag", "v*", "matches")]
    assert policy.creation_time is not None and policy.creation_time.year >= 2024

    both = await new_policy(client, unique_name("both"), registry_id, deletion=True,
                            replicate_deletion=True,
                            trigger=ReplicationTrigger(
                                type="scheduled",
                                trigger_settings=ReplicationTriggerSettings(cron="0 0 3 * * *")))
    policy = await client.get_replication_policy(both)
    assert policy.replicate_deletion is True and policy.deletion is True
    assert policy.trigger is not None and policy.trigger.trigger_settings is not None
    assert policy.trigger.trigger_settings.cron == "0 0 3 * * *"

    with pytest.raises(Conflict):
        await new_policy(client, name, registry_id)


async def test_policy_validation_errors(client: HarborAsyncClient,
                                        sims: tuple[HarborSimulator, HarborSimulator],
                                        unique_name: Callable[[str], str]) -> None:
    registry_id = await new_registry(client, sims[1], unique_name("reg"))

    async def refused(**fields: Any) -> StatusError:
        with pytest.raises(StatusError) as info:
            await client.create_replication_policy(ReplicationPolicy(
                name=fields.pop("name", unique_name("bad")), **fields))
        return info.value

    five_field = await refused(
        dest_registry=Registry(id=registry_id), trigger=ReplicationTrigger(
            type="scheduled", trigger_settings=ReplicationTriggerSettings(cron="0 3 * * *")))
    assert isinstance(five_field, BadRequest)
    assert "invalid cron" in (five_field.errors[0].message or "")
    empty_cron = ReplicationTrigger(type="scheduled",
                                    trigger_settings=ReplicationTriggerSettings(cron=""))
    assert isinstance(await refused(dest_registry=Registry(id=registry_id),
                                    trigger=empty_cron), BadRequest)
    assert isinstance(await refused(dest_registry=Registry(id=registry_id),
                                    trigger=ReplicationTrigger(type="hourly")), BadRequest)
    both_local = await refused(src_registry=Registry(id=0), dest_registry=Registry(id=0))
    assert isinstance(both_local, BadRequest)
    assert isinstance(await refused(), BadRequest)  # no registry at all
    assert isinstance(await refused(src_registry=Registry(id=registry_id),
                                    dest_registry=Registry(id=registry_id)), BadRequest)
    assert isinstance(await refused(name="", dest_registry=Registry(id=registry_id)), BadRequest)
    # a missing registry is the registry manager's NOT_FOUND, as in Harbor
    assert isinstance(await refused(dest_registry=Registry(id=987654)), NotFound)
    assert isinstance(await refused(dest_registry=Registry(id=registry_id), filters=[
        ReplicationFilter(type="name", value="library/**", decoration="matches")]), BadRequest)
    assert isinstance(await refused(dest_registry=Registry(id=registry_id), filters=[
        ReplicationFilter(type="resource", value="chart")]), BadRequest)


async def test_policy_list_paging_and_links(
        client: HarborAsyncClient, raw: httpx.AsyncClient,
        sims: tuple[HarborSimulator, HarborSimulator], unique_name: Callable[[str], str]
) -> None:
    sim = sims[0]
    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    prefix = unique_name("page")
    created = {await new_policy(client, f"{prefix}-{i:02d}", registry_id) for i in range(25)}
    q = f"name=~{prefix}-"
    seen: list[int] = []
    for number in (1, 2, 3):
        answer = await raw.get("/replication/policies",
                               params={"q": q, "page": number, "page_size": 10})
        assert answer.status_code == 200
        assert answer.headers["X-Total-Count"] == "25"
        link = answer.headers.get("Link", "")
        assert ('rel="prev"' in link) == (number > 1)
        assert ('rel="next"' in link) == (number < 3)
        if number == 1:
            assert link == (f'</api/v2.0/replication/policies?page=2&page_size=10&q={q}>; '
                            'rel="next"')
        if number == 2:
            assert link.count(" , ") == 1 and "page=1&" in link and "page=3&" in link
        page = [ReplicationPolicy.model_validate(p) for p in answer.json()]
        assert len(page) == (10 if number < 3 else 5)
        seen += [p.id for p in page if p.id is not None]
    assert set(seen) == created and len(seen) == 25
    ascending = await raw.get("/replication/policies", params={"q": q, "sort": "id",
                                                                "page_size": 100})
    assert [p["id"] for p in ascending.json()] == sorted(created)

    sim.store.requests.clear()
    everything = await client.get_replication_policies(query=q, page_size=10)
    assert sorted(p.id for p in everything if p.id is not None) == sorted(created)
    assert len(sim.store.requests.list("GET", "/api/v2.0/replication/policies")) == 3
    by_name = await client.get_replication_policies(name=f"{prefix}-07")
    assert [p.name for p in by_name] == [f"{prefix}-07"]
    exact = await client.get_replication_policies(query=f"name={prefix}-1")
    assert exact == []
    any_of = sorted(created)[:3]
    picked = await client.get_replication_policies(
        query="id={" + " ".join(map(str, any_of)) + "}")
    assert sorted(p.id for p in picked if p.id is not None) == any_of
    with pytest.raises(UnprocessableEntity):
        await client.get_replication_policies(page_size=101)
    with pytest.raises(BadRequest):
        await client.get_replication_policies(query="name")


async def test_policy_put_is_a_full_replace(
        client: HarborAsyncClient, sims: tuple[HarborSimulator, HarborSimulator],
        unique_name: Callable[[str], str]) -> None:
    sim = sims[0]
    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    name = unique_name("put")
    policy_id = await new_policy(
        client, name, registry_id, description="first", override=True,
        filters=[ReplicationFilter(type="name", value="library/**")])
    before = await client.get_replication_policy(policy_id)
    sim.store.requests.clear()
    await client.update_replication_policy(policy_id, ReplicationPolicy(
        name=name, dest_registry=Registry(id=registry_id), enabled=True))
    assert sim.store.requests.count("PUT", f"/api/v2.0/replication/policies/{policy_id}") == 1
    after = await client.get_replication_policy(policy_id)
    assert (after.description, after.override, after.filters) == (None, None, None)
    assert after.enabled is True and after.creation_time == before.creation_time
    assert after.update_time is not None and before.update_time is not None
    assert after.update_time >= before.update_time
    await client.update_replication_policy(policy_id, ReplicationPolicy(
        name=name, dest_registry=Registry(id=registry_id)))
    assert (await client.get_replication_policy(policy_id)).enabled is None  # false omitted
    with pytest.raises(NotFound):
        await client.update_replication_policy(987654, ReplicationPolicy(
            name=unique_name("ghost"), dest_registry=Registry(id=registry_id)))
    await client.delete_replication_policy(policy_id)
    with pytest.raises(NotFound):
        await client.delete_replication_policy(policy_id)


# ----------------------------------------------------------------- executions


async def test_execution_progresses_to_succeed_with_agreeing_counters(
        client: HarborAsyncClient, sims: tuple[HarborSimulator, HarborSimulator],
        unique_name: Callable[[str], str]) -> None:
    sim = sims[0]
    sim.store.set_task_seconds(1.0)
    project = unique_name("src")
    for repository, tag in (("app", "1.0"), ("app", "1.1"), ("db", "2")):
        sim.store.push_artifact(project, repository, tag)
    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    policy_id = await new_policy(client, unique_name("run"), registry_id,
                                 dest_namespace="mirror",
                                 filters=[ReplicationFilter(type="name", value=f"{project}/**")])
    location = await client.start_replication(policy_id)
    execution_id = location_id(location, "replication/executions")
    running = await client.get_replication(execution_id)
    assert (running.status, running.trigger, running.policy_id) == (
        "InProgress", "manual", policy_id)
    assert running.total == 2 and running.in_progress == 2 and running.succeed == 0
    assert running.end_time is not None and running.end_time.year == 1  # Harbor's zero time

    done = await finished(client, execution_id)
    assert done.status == "Succeed" and done.status_text == ""
    tasks = await client.get_replication_tasks(execution_id)
    assert all(isinstance(t, ReplicationTask) for t in tasks)
    assert len(tasks) == done.total == done.succeed == 2
    assert (done.failed, done.in_progress, done.stopped) == (0, 0, 0)
    assert {t.status for t in tasks} == {"Succeed"}
    assert sorted(t.src_resource or "" for t in tasks) == [
        f"{project}/app [2 item(s) in total]", f"{project}/db [1 item(s) in total]"]
    assert sorted(t.dst_resource or "" for t in tasks) == [
        "mirror/app [2 item(s) in total]", "mirror/db [1 item(s) in total]"]
    assert {(t.operation, t.resource_type, t.execution_id) for t in tasks} == {
        ("copy", "artifact", execution_id)}
    assert done.start_time is not None and done.end_time is not None
    assert done.end_time > done.start_time
    log = await client.get_replication_task_log(execution_id, tasks[0].id or 0)
    assert "completed" in log and "[ERROR]" not in log

    second = location_id(await client.start_replication(policy_id), "replication/executions")
    listed = await client.get_replications(policy_id=policy_id)
    assert [e.id for e in listed] == [second, execution_id]  # newest first
    assert [e.id for e in await client.get_replications(policy_id=policy_id, sort="id")] == [
        execution_id, second]
    assert [e.id for e in await client.get_replications(
        policy_id=policy_id, status="Succeed")] == [execution_id]
    assert await client.get_replication_tasks(execution_id, status="Failed") == []


async def test_failed_task_and_its_log(client: HarborAsyncClient,
                                       sims: tuple[HarborSimulator, HarborSimulator],
                                       unique_name: Callable[[str], str]) -> None:
    sim = sims[0]
    sim.store.set_task_seconds(0.5)
    project = unique_name("flaky")
    sim.store.push_artifact(project, "good", "1")
    sim.store.push_artifact(project, "broken", "1")
    sim.store.add_failure_pattern(f"{project}/broken*")
    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    policy_id = await new_policy(client, unique_name("fail"), registry_id,
                                 filters=[ReplicationFilter(type="name", value=f"{project}/*")])
    execution_id = location_id(await client.start_replication(policy_id),
                               "replication/executions")
    done = await finished(client, execution_id)
    assert (done.status, done.total, done.failed, done.succeed) == ("Failed", 2, 1, 1)
    failed = await client.get_replication_tasks(execution_id, status="Failed")
    assert len(failed) == 1 and (failed[0].src_resource or "").startswith(f"{project}/broken")
    log = await client.get_replication_task_log(execution_id, failed[0].id or 0)
    assert "[ERROR]" in log and f"{project}/broken" in log
    with pytest.raises(NotFound):
        await client.get_replication_task_log(execution_id, 987654)

    # a push to a destination that is down: the tasks are made and fail; the execution
    # is Failed (after Harbor's refresh) with no status_text (seen on 2.12.4)
    sim.store.clear_failure_patterns()
    sim.store.mark_unreachable(sims[1].url)
    broken = await finished(client, location_id(
        await client.start_replication(policy_id), "replication/executions"))
    assert (broken.status, broken.total, broken.failed, broken.status_text) == (
        "Failed", 2, 2, "")
    task = (await client.get_replication_tasks(broken.id or 0))[0]
    assert "connection refused" in await client.get_replication_task_log(
        broken.id or 0, task.id or 0)

    # a pull from a source that is down fails before any task, with the reason
    pull = location_id(await client.create_replication_policy(ReplicationPolicy(
        name=unique_name("pull"), src_registry=Registry(id=registry_id), enabled=True,
        filters=[ReplicationFilter(type="name", value="library/app")])),
        "replication/policies")
    early = await client.get_replication(location_id(
        await client.start_replication(pull), "replication/executions"))
    assert (early.status, early.total) == ("Failed", 0)
    assert "connection refused" in (early.status_text or "")


async def test_stop_and_delete_while_running(client: HarborAsyncClient,
                                             sims: tuple[HarborSimulator, HarborSimulator],
                                             unique_name: Callable[[str], str]) -> None:
    sim = sims[0]
    sim.store.set_task_seconds(60)
    project = unique_name("slow")
    sim.store.push_artifact(project, "big", "1")
    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    policy_id = await new_policy(client, unique_name("stop"), registry_id,
                                 filters=[ReplicationFilter(type="name", value=f"{project}/**")])
    execution_id = location_id(await client.start_replication(policy_id),
                               "replication/executions")
    with pytest.raises(PreconditionFailed) as running:
        await client.delete_replication_policy(policy_id)
    assert running.value.errors[0].code == "PRECONDITION"
    await client.stop_replication(execution_id)
    stopping = await client.get_replication(execution_id)
    # the task stops at once; the execution closes at Harbor's next status refresh
    assert (stopping.stopped, stopping.in_progress, stopping.total) == (1, 0, 1)
    assert stopping.status in ("InProgress", "Stopped")
    stopped = await finished(client, execution_id)
    assert (stopped.status, stopped.stopped, stopped.in_progress, stopped.total) == (
        "Stopped", 1, 0, 1)
    assert [t.status for t in await client.get_replication_tasks(execution_id)] == ["Stopped"]
    await client.stop_replication(execution_id)  # stopping a finished one is fine
    with pytest.raises(NotFound):
        await client.stop_replication(987654)
    await client.delete_replication_policy(policy_id)
    with pytest.raises(NotFound):
        await client.get_replication(execution_id)


async def test_start_refused_for_unknown_or_disabled_policy(
        client: HarborAsyncClient, sims: tuple[HarborSimulator, HarborSimulator],
        unique_name: Callable[[str], str]) -> None:
    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    policy_id = await new_policy(client, unique_name("off"), registry_id, enabled=False)
    with pytest.raises(PreconditionFailed) as disabled:
        await client.start_replication(policy_id)
    assert disabled.value.errors[0].message == f"the policy {policy_id} is disabled"
    with pytest.raises(NotFound):
        await client.start_replication(987654)
    empty = location_id(await client.start_replication(
        await new_policy(client, unique_name("empty"), registry_id,
                         filters=[ReplicationFilter(type="name", value="nothing/**")])),
        "replication/executions")
    execution = await client.get_replication(empty)
    assert (execution.status, execution.total) == ("Succeed", 0)


async def test_cron_rules_of_a_replication_policy(
        client: HarborAsyncClient, sims: tuple[HarborSimulator, HarborSimulator],
        unique_name: Callable[[str], str]) -> None:
    """BACKENDS.md §2a: 6 fields, seconds first and `0`; 5 fields, 7 fields and macros are
    "invalid cron string"; Harbor's model also refuses `*` as the minutes field."""
    registry_id = await new_registry(client, sims[1], unique_name("reg"))

    async def message(cron: str) -> str:
        with pytest.raises(BadRequest) as refused:
            await new_policy(client, unique_name("cron"), registry_id, trigger=ReplicationTrigger(
                type="scheduled", trigger_settings=ReplicationTriggerSettings(cron=cron)))
        return refused.value.errors[0].message or ""

    assert await message("* * * * * *") == ("the 1st field (indicating Seconds of time) of "
                                            "the cron setting must be 0")
    assert await message("0 * * * * *") == ("* is not allowed for the Minutes field of the "
                                            "cron setting of replication policy")
    for invalid in ("*/5 * * * *", "0 0 3 * * * 2030", "@daily"):
        assert await message(invalid) == f"invalid cron string for scheduled trigger: {invalid}"
    accepted = await new_policy(client, unique_name("cron"), registry_id, trigger=(
        ReplicationTrigger(type="scheduled",
                           trigger_settings=ReplicationTriggerSettings(cron="0 */1 * * * *"))))
    await client.delete_replication_policy(accepted)


class ManualClock(Clock):
    """The simulator's clock, moved by the test (schedules fire in simulated time)."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def now(self) -> float:
        return super().now() + self.offset


def test_scheduled_policy_fires_on_its_minute() -> None:
    clock = ManualClock()
    store = Store(clock=clock)
    store.set_task_seconds(0)
    registry = store.save_registry(store.prepare_registry(
        {"name": "peer", "type": "harbor", "url": "http://127.0.0.1:9"}))
    policy = store.create_policy({
        "name": "every-minute", "enabled": True, "dest_registry": {"id": registry.id},
        "trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 */1 * * * *"}}})
    clock.offset = 125.0  # two or three minute boundaries (the catch-up covers them)
    store.advance()
    fired = [e for e in store.executions.values() if e.policy_id == policy.id]
    assert len(fired) in (2, 3) and {e.trigger for e in fired} == {"scheduled"}
    assert all(store.execution_status(e)[0] == "Succeed" for e in fired)


async def test_event_based_policy_fires_on_push(
        client: HarborAsyncClient, raw: httpx.AsyncClient,
        sims: tuple[HarborSimulator, HarborSimulator], unique_name: Callable[[str], str]
) -> None:
    sim = sims[0]
    sim.store.set_task_seconds(0.2)
    project = unique_name("events")
    registry_id = await new_registry(client, sims[1], unique_name("reg"))
    policy_id = await new_policy(client, unique_name("push"), registry_id,
                                 trigger=ReplicationTrigger(type="event_based"),
                                 filters=[ReplicationFilter(type="name", value=f"{project}/**"),
                                          ReplicationFilter(type="tag", value="dev-*",
                                                            decoration="excludes")])
    async with httpx.AsyncClient(base_url=sim.url, auth=(sim.username, sim.password)) as ctl:
        pushed = await ctl.post("/_sim/artifacts", json={
            "project": project, "repository": "web", "tag": "1.0"})
        assert pushed.status_code == 201 and len(pushed.json()["executions"]) == 1
        skipped = await ctl.post("/_sim/artifacts", json={
            "project": project, "repository": "web", "tag": "dev-7"})
        assert skipped.json()["executions"] == []
        other = await ctl.post("/_sim/artifacts", json={
            "project": unique_name("elsewhere"), "repository": "web", "tag": "1.0"})
        assert other.json()["executions"] == []
    executions = await client.get_replications(policy_id=policy_id)
    assert [(e.trigger, e.total) for e in executions] == [("event_based", 1)]
    tasks = await client.get_replication_tasks(executions[0].id or 0)
    assert [t.src_resource for t in tasks] == [f"{project}/web [1 item(s) in total]"]
    done = await finished(client, executions[0].id or 0)
    assert done.status == "Succeed"
    repositories = await client.get_repositories(project_name=project)
    assert [(r.name, r.artifact_count) for r in repositories] == [(f"{project}/web", 2)]


# --------------------------------------------------------------------- robots


async def test_robot_accounts_and_their_credentials(
        client: HarborAsyncClient, raw: httpx.AsyncClient,
        sims: tuple[HarborSimulator, HarborSimulator], unique_name: Callable[[str], str]
) -> None:
    sim = sims[0]
    project, other = unique_name("team"), unique_name("secret")
    location = await client.create_project(ProjectReq(
        project_name=project, metadata=ProjectMetadata(public="false")))
    assert location == f"/api/v2.0/projects/{project}"
    with pytest.raises(Conflict):
        await client.create_project(ProjectReq(project_name=project))
    await client.create_project(ProjectReq(project_name=other))
    metadata = (await client.get_project(project)).metadata
    assert metadata is not None and metadata.public == "false"
    sim.store.push_artifact(project, "app", "1.0")
    sim.store.push_artifact(other, "app", "1.0")
    pull = [Access(resource="repository", action="pull")]

    name = unique_name("ci")
    created = await client.create_robot(RobotCreate(
        name=name, description="pulls", level="project", duration=-1, disable=False,
        permissions=[RobotPermission(kind="project", namespace=project, access=pull)]))
    assert created.name == f"robot${project}+{name}" and created.secret
    assert created.expires_at == -1 and created.id is not None
    robot = await client.get_robot(created.id)
    assert robot.secret is None and robot.name == created.name and robot.editable is True
    assert robot.level == "project" and robot.permissions is not None
    assert robot.permissions[0].namespace == project
    assert "secret" not in (await raw.get(f"/robots/{created.id}")).json()
    project_id = (await client.get_project(project)).project_id
    listed = await client.get_robots(query=f"Level=project,ProjectID={project_id}")
    assert [r.id for r in listed] == [created.id]
    with pytest.raises(Conflict):
        await client.create_robot(RobotCreate(
            name=name, level="project", duration=-1,
            permissions=[RobotPermission(kind="project", namespace=project, access=pull)]))

    as_robot = client_for(sim, created.name, created.secret)
    # BACKENDS.md §2a: repository pull alone does not let a robot read a private project
    with pytest.raises(Forbidden):
        await as_robot.get_project(project)
    with pytest.raises(Forbidden):
        await as_robot.get_repositories(project_name=project)
    readable = [*pull, Access(resource="project", action="read"),
                Access(resource="repository", action="list")]
    await client.update_robot(created.id, Robot(
        name=created.name, level="project", duration=-1, description="pulls and reads",
        permissions=[RobotPermission(kind="project", namespace=project, access=readable)]))
    repositories = await as_robot.get_repositories(project_name=project)
    assert [r.name for r in repositories] == [f"{project}/app"]
    assert all(isinstance(r, Repository) for r in repositories)
    assert (await as_robot.get_project(project)).name == project
    with pytest.raises(Forbidden):
        await as_robot.get_repositories(project_name=other)
    with pytest.raises(Forbidden):
        await as_robot.get_replication_policies()

    refreshed = await client.refresh_robot_secret(created.id, "")
    assert refreshed.secret and refreshed.secret != created.secret
    with pytest.raises(Unauthorized):
        await as_robot.get_repositories(project_name=project)
    await as_robot.client.aclose()
    as_robot = client_for(sim, created.name, refreshed.secret)
    assert len(await as_robot.get_repositories(project_name=project)) == 1
    with pytest.raises(BadRequest):
        await client.refresh_robot_secret(created.id, "weak")
    chosen = "Chosen-Secret-123"
    assert (await client.refresh_robot_secret(created.id, chosen)).secret is None
    await as_robot.client.aclose()
    as_robot = client_for(sim, created.name, chosen)
    assert len(await as_robot.get_repositories(project_name=project)) == 1

    await client.update_robot(created.id, Robot(
        name=created.name, level="project", duration=30, description="now disabled",
        disable=True,
        permissions=[RobotPermission(kind="project", namespace=project, access=pull)]))
    robot = await client.get_robot(created.id)
    assert robot.description == "now disabled" and robot.disable is True
    assert robot.duration == 30 and robot.expires_at and robot.expires_at > time.time()
    with pytest.raises(Unauthorized):
        await as_robot.get_repositories(project_name=project)
    with pytest.raises(BadRequest):
        await client.update_robot(created.id, Robot(
            name=f"robot${project}+renamed", level="project", duration=30,
            permissions=[RobotPermission(kind="project", namespace=project, access=pull)]))
    await as_robot.client.aclose()

    system_name = unique_name("sys")
    system = await client.create_robot(RobotCreate(
        name=system_name, level="system", duration=7,
        permissions=[RobotPermission(kind="project", namespace="*", access=readable)]))
    assert system.name == f"robot${system_name}" and system.expires_at
    assert system.expires_at > time.time() + 6 * 86400
    as_system = client_for(sim, system.name, system.secret)
    assert len(await as_system.get_repositories(project_name=other)) == 1
    await as_system.client.aclose()
    plain = [r.id for r in await client.get_robots(page_size=100)]
    assert system.id in plain and created.id not in plain  # project robots need Level
    everything = [r.id for r in await client.get_robots(query="Level=system", page_size=100)]
    assert {system.id, created.id} <= set(everything)

    with pytest.raises(BadRequest):  # duration 0 is refused (-1 means never)
        await client.create_robot(RobotCreate(
            name=unique_name("zero"), level="system", duration=0,
            permissions=[RobotPermission(kind="project", namespace=project, access=pull)]))
    with pytest.raises(BadRequest):
        await client.create_robot(RobotCreate(
            name="Upper", level="system", duration=-1,
            permissions=[RobotPermission(kind="project", namespace=project, access=pull)]))
    with pytest.raises(NotFound) as missing:  # seen on 2.12.4: 404 for the admin
        await client.create_robot(RobotCreate(
            name=unique_name("ghost"), level="project", duration=-1,
            permissions=[RobotPermission(kind="project", namespace="no-such", access=pull)]))
    assert missing.value.errors[0].message == "project no-such not found"
    with pytest.raises(NotFound):
        await client.create_robot(RobotCreate(
            name=unique_name("ghost"), level="system", duration=-1,
            permissions=[RobotPermission(kind="project", namespace="no-such", access=pull)]))

    await client.delete_robot(created.id)
    with pytest.raises(NotFound):
        await client.get_robot(created.id)


# ---------------------------------------------------------- faults and logs


async def test_injected_faults_latency_and_request_log(
        client: HarborAsyncClient, raw: httpx.AsyncClient,
        sims: tuple[HarborSimulator, HarborSimulator]) -> None:
    sim = sims[0]
    sim.store.faults.add_fault(503, count=2, path_prefix="/api/v2.0/systeminfo")
    for _ in range(2):
        with pytest.raises(StatusError) as unavailable:
            await client.get_system_info()
        assert unavailable.value.status_code == 503
        assert unavailable.value.errors[0].code == "UNKNOWN"
    assert (await client.get_system_info()).harbor_version

    async with httpx.AsyncClient(base_url=sim.url, auth=(sim.username, sim.password)) as ctl:
        added = await ctl.post("/_sim/faults", json={"status": 429, "retry_after": 3,
                                                     "method": "GET"})
        assert added.status_code == 201
        assert (await ctl.get("/_sim/state")).status_code == 200  # never faulted
        limited = await raw.get("/health")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
        assert error_codes(limited) == ["TOO_MANY_REQUEST"]
        assert (await raw.get("/health")).status_code == 200

        await ctl.post("/_sim/faults", json={"latency": 0.4, "count": 1})
        started = time.monotonic()
        assert (await raw.get("/health")).status_code == 200
        assert time.monotonic() - started >= 0.4
        assert sim.store.faults.snapshot()["latencies"] == []  # consumed by that request

        await ctl.delete("/_sim/requests")
        await raw.get("/replication/policies", params={"page": 1})
        log = (await ctl.get("/_sim/requests")).json()
        assert [(r["method"], r["path"], r["query"], r["status"]) for r in log] == [
            ("GET", "/api/v2.0/replication/policies", "page=1", 200)]
        state = (await ctl.get("/_sim/state")).json()
        assert sim.password not in str(state)
        assert (await httpx.AsyncClient(base_url=sim.url).get("/_sim/state")).status_code == 401


# ------------------------------------------------------- restart and the CLI


async def test_restart_on_the_same_port_keeps_state() -> None:
    sim = HarborSimulator(password="Restart-123").start()
    try:
        harbor = client_for(sim)
        peer_location = await harbor.create_project(ProjectReq(project_name="kept"))
        port = sim.port
        sim.stop()
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{sim.api_url}/health")
        sim.start()
        assert sim.port == port
        assert (await harbor.get_project("kept")).name == "kept"
        assert peer_location == "/api/v2.0/projects/kept"
        await harbor.client.aclose()
    finally:
        sim.stop()


def test_command_line_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "harbor_sim", "--port", "0", "--user", "admin",
         "--password", "Cli-Secret-1", "--seed-artifact", "library/nginx:1.25"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT / "tests")})
    try:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        line = ""
        while not line and time.monotonic() < deadline and process.poll() is None:
            if selector.select(timeout=0.2):
                line = process.stdout.readline()
        match = re.fullmatch(r"harbor-sim listening on (http://127\.0\.0\.1:\d+) \(user admin\)\n",
                             line)
        assert match, f"unexpected first line {line!r}"
        assert "Cli-Secret-1" not in line
        info = httpx.get(f"{match.group(1)}/api/v2.0/systeminfo", timeout=10)
        assert info.status_code == 200 and info.json()["harbor_version"] == "v2.12.4-sim"
        repositories = httpx.get(f"{match.group(1)}/api/v2.0/projects/library/repositories",
                                 auth=("admin", "Cli-Secret-1"), timeout=10)
        assert [r["name"] for r in repositories.json()] == ["library/nginx"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
