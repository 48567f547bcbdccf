"""The Eden backend against two Eden simulators over HTTP on loopback, without Kubernetes:
Replications (pull, push, both, one-shot), drift, shared repositories and deletion,
wrong peer logins, unknown resources, batched observation, ReplicationPolicies with runs
on request and schedules."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from replication_operator.backends.base import (
    COMPLETED,
    ERROR,
    RUNNING,
    Endpoint,
    Observation,
    ReplicationRequest,
)
from replication_operator.backends.eden.backend import EdenBackend
from replication_operator.backends.policies import PolicyRequest, Remote
from replication_operator.credentials import Credentials
from replication_operator.errors import PermanentBackendError, SpecError, TransientBackendError
from replication_operator.http import ServerConnection, ServerSettings
from replication_operator.reconcile.replication import Verb, plan

pytestmark = pytest.mark.integration
ORG, OFFICE, PERSON = "org_organisation", "org_office", "pr_person"


def settings(sim: Any, ns: str, name: str, password: str | None = None) -> ServerSettings:
    return ServerSettings(key=f"{ns}/{name}", type="eden", url=sim.url, auth_type="basic",
                          credentials=Credentials(username=sim.email,
                                                  password=password or sim.password))


class Rig:
    """Shared connections (as the operator's ServerRegistry keeps them) and backends."""

    def __init__(self) -> None:
        self.conns: dict[ServerSettings, ServerConnection] = {}

    def conn(self, server: ServerSettings) -> ServerConnection:
        if server not in self.conns:
            self.conns[server] = ServerConnection(server)
        return self.conns[server]

    def backend(self, server: ServerSettings) -> EdenBackend:
        return EdenBackend(self.conn(server), self.conn)

    async def aclose(self) -> None:
        for conn in self.conns.values():
            await conn.aclose()


@pytest.fixture
def ns(unique_name: Callable[[str], str]) -> str:
    return unique_name("it")


@pytest.fixture
async def rig(eden_a: Any, eden_b: Any, ns: str) -> AsyncIterator[Rig]:
    """Jobs run every second; afterwards the test's repositories go (their jobs would
    keep syncing the shared tables under later tests)."""
    for sim in (eden_a, eden_b):
        sim.store.set_settings(max_period=1)
    made = Rig()
    yield made
    await made.aclose()
    for sim in (eden_a, eden_b):
        sim.store.faults.clear()
        sim.store.set_settings(max_period=None, strict_policy=False, adapter_bug=False)
        client = http(sim)
        for row in client.get("sync/repository.json").json():
            if row["name"].startswith(f"dbops.{ns}."):
                client.delete(f"sync/repository/{row['id']}.json")


def replication(ns: str, name: str, source: ServerSettings, target: ServerSettings,
                resource: str = ORG, **fields: Any) -> ReplicationRequest:
    return ReplicationRequest(key=f"{ns}/{name}", external_name=f"{ns}.{name}",
                              source=Endpoint(source, resource),
                              target=Endpoint(target, resource), **fields)


async def reconcile(backend: EdenBackend, request: ReplicationRequest,
                    spec_changed: bool = True) -> tuple[Verb, Observation]:
    """What the Replication handler does: observe, plan, act, observe again."""
    seen = await backend.observe(request, max_age=0)
    action = plan(key=request.key, external_name=request.external_name, seen=seen,
                  suspend=request.suspend, suspend_deletes=backend.suspend_deletes,
                  adopted=request.adopted, spec_changed=spec_changed, created_before=False)
    if action.verb is Verb.CREATE:
        await backend.create(request)
    elif action.verb is Verb.UPDATE:
        await backend.update(request, seen)
    return action.verb, await backend.observe(request, max_age=0)


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float = 30,
                what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def http(sim: Any) -> httpx.Client:
    return httpx.Client(base_url=f"{sim.url}/", auth=(sim.email, sim.password), timeout=10)


def organisation(sim: Any, name: str, table: str = "org/organisation") -> None:
    key = "$_" + table.replace("/", "_")
    answer = http(sim).post(f"{table}.s3json", json={key: [{"name": name}]}).json()
    assert answer["status"] == "success", answer


def names(sim: Any, table: str = "org/organisation") -> set[str]:
    return {r["name"] for r in http(sim).get(f"{table}.json").json()}


def repository(sim: Any, name: str) -> dict[str, Any] | None:
    return next((r for r in http(sim).get("sync/repository.json").json()
                 if r["name"] == name), None)


def component(sim: Any, repository_id: int, name: str) -> list[dict[str, Any]]:
    return list(http(sim).get(f"sync/repository/{repository_id}/{name}.json").json())


def writes(sim: Any) -> list[str]:
    """Writes to the sync settings (not the peer protocol, which other runs use)."""
    return [f"{r.method} {r.path}" for r in sim.store.requests.list()
            if r.method in ("POST", "PUT", "DELETE") and not r.path.endswith(
                ("/sync/sync.xml", "/sync/repository/register.json"))]


@pytest.fixture
def requests_of() -> Iterator[Callable[[Any], None]]:
    def clear(sim: Any) -> None:
        sim.store.requests.clear()
    yield clear


# --- server ------------------------------------------------------------------------------

async def test_probe_reports_the_version_and_proves_the_login(rig: Rig, eden_a: Any,
                                                              ns: str) -> None:
    info = await rig.backend(settings(eden_a, ns, "eden-a")).probe()
    assert (info.flavour, info.version) == ("Sahana Eden", "4.0.0-sim")
    with pytest.raises(PermanentBackendError) as caught:
        await rig.backend(settings(eden_a, ns, "eden-a", password="not-it")).probe()
    assert caught.value.code == "Unauthorized" and "auth Secret" in caught.value.message
    assert "not-it" not in str(caught.value)
    eden_a.store.add_user("clerk@example.com", "clerk-pw")
    eden_a.store.set_settings(strict_policy=True)
    clerk = dataclasses.replace(settings(eden_a, ns, "eden-a"), credentials=Credentials(
        username="clerk@example.com", password="clerk-pw"))
    with pytest.raises(PermanentBackendError) as caught:
        await rig.backend(clerk).probe()
    assert caught.value.code == "Forbidden"


def test_tokens_are_refused(rig: Rig, eden_a: Any, ns: str) -> None:
    with pytest.raises(SpecError, match="no tokens"):
        rig.backend(settings(eden_a, ns, "eden-a")).tokens()


# --- Replications ---------------------------------------------------------------------------

async def test_a_pull_moves_an_organisation_and_a_quiet_resync_writes_nothing(
        rig: Rig, eden_a: Any, eden_b: Any, ns: str, requests_of: Callable[[Any], None]
        ) -> None:
    organisation(eden_a, f"{ns} Acme")
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    backend = rig.backend(b)
    request = replication(ns, "orgs", a, b, options={"updatePolicy": "OTHER"})
    verb, _ = await reconcile(backend, request)
    assert verb is Verb.CREATE
    seen = await until(lambda: _synced(backend, request), what="the first pull")
    assert f"{ns} Acme" in names(eden_b)
    assert seen.phase == RUNNING and seen.progress.docs_written >= 1
    assert seen.diagnostics["repository"] == f"dbops.{ns}.eden-a" and seen.last_sync
    made = repository(eden_b, f"dbops.{ns}.eden-a")
    assert made is not None
    (task,) = component(eden_b, made["id"], "task")
    assert (task["resource_name"], task["mode"], task["update_policy"]) == (ORG, 1, "OTHER")
    (job,) = component(eden_b, made["id"], "job")
    assert job["task_name"] == f"dbops.repl:{ns}/orgs:{ORG}" and job["repeats"] == 0
    assert job["period"] == 300 and job["enabled"] is True

    requests_of(eden_b)
    verb, seen = await reconcile(backend, request, spec_changed=False)
    assert verb is Verb.NOTHING and seen.up_to_date
    assert writes(eden_b) == [], "a quiet resync writes nothing"
    assert not [r for r in eden_b.store.requests.list() if r.path.endswith(".s3json")], \
        "the peer password is read once per process, not at every resync"


async def _synced(backend: EdenBackend, request: ReplicationRequest) -> Observation | None:
    seen = await backend.observe(request, max_age=0)
    return seen if seen.reason == "Synced" and seen.progress.docs_written else None


async def test_a_pull_and_a_push_between_two_edens_share_edens_one_repository_per_peer(
        ns: str) -> None:
    """Two simulators with Eden's one-repository-per-peer rules (seen on Eden built from
    master of 2024): the push side takes over the repository the pull side's
    registration made there (a second one would be a 500), the pull side finds its
    repository by URL after that registration renamed it, both sync, and deletion
    removes both; a Replication made again brings the deleted repository back."""
    from eden_sim import EdenSimulator
    rig = Rig()
    with EdenSimulator(email="admin@one.example", password="one-pw") as one_sim, \
            EdenSimulator(email="admin@two.example", password="two-pw") as two_sim:
        for sim in (one_sim, two_sim):
            sim.store.set_settings(max_period=1)
        one, two = settings(one_sim, ns, "one"), settings(two_sim, ns, "two")
        organisation(one_sim, f"{ns} pulled")
        organisation(one_sim, f"{ns} pushed office", table="org/office")
        pulling, pushing = rig.backend(two), rig.backend(one)
        pull = replication(ns, "pull", one, two)
        push = replication(ns, "push", one, two, OFFICE)
        await reconcile(pulling, pull)
        two_host = two_sim.url.split("//")[1].split("/")[0]
        assert [r["name"] for r in http(one_sim).get("sync/repository.json").json()] == \
            [two_host], "two registered at one"
        await reconcile(pushing, push)
        (taken,) = http(one_sim).get("sync/repository.json").json()
        assert taken["name"] == f"dbops.{ns}.two" and taken["uuid"] == two_sim.store.site_uuid
        one_host = one_sim.url.split("//")[1].split("/")[0]
        assert [r["name"] for r in http(two_sim).get("sync/repository.json").json()] == \
            [one_host], "one's registration renamed two's repository"
        await until(lambda: _synced_or_scheduled(pulling, pull), what="the pull")
        await until(lambda: _synced(pushing, push), what="the push")
        assert f"{ns} pulled" in names(two_sim)
        assert f"{ns} pushed office" in names(two_sim, "org/office")
        verb, seen = await reconcile(pulling, pull, spec_changed=False)
        assert verb is Verb.NOTHING and seen.up_to_date, seen.differences

        await pulling.delete(f"{ns}.pull", None)
        await pushing.delete(f"{ns}.push", None)
        assert http(two_sim).get("sync/repository.json").json() == []
        assert http(one_sim).get("sync/repository.json").json() == []
        await reconcile(pulling, pull)
        await until(lambda: _synced_or_scheduled(pulling, pull), what="the pull made again")
        await rig.aclose()


async def test_a_repository_for_the_peer_made_by_hand_is_not_taken_over(ns: str) -> None:
    """Eden allows one repository per peer URL (seen on Eden built from master of 2024):
    one made by hand under another name is left alone and the refusal says why."""
    from eden_sim import EdenSimulator
    rig = Rig()
    with EdenSimulator(email="admin@one.example", password="one-pw") as one_sim, \
            EdenSimulator(email="admin@two.example", password="two-pw") as two_sim:
        answer = http(two_sim).post("sync/repository.s3json", json={"$_sync_repository": [
            {"name": "by hand", "url": one_sim.url, "username": one_sim.email,
             "password": one_sim.password}]}).json()
        assert answer["created"], answer
        one, two = settings(one_sim, ns, "one"), settings(two_sim, ns, "two")
        with pytest.raises(PermanentBackendError) as caught:
            await reconcile(rig.backend(two), replication(ns, "pull", one, two))
        assert "url: Value already in database" in caught.value.message
        assert "one sync repository per peer URL" in caught.value.message
        assert "one-pw" not in caught.value.message
        assert [r["name"] for r in http(two_sim).get("sync/repository.json").json()] == \
            ["by hand"]
        await rig.aclose()


async def test_push_and_two_way(rig: Rig, eden_a: Any, eden_b: Any, ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    organisation(eden_a, f"{ns} pushed", "org/office")
    push = replication(ns, "offices", a, b, OFFICE)
    await reconcile(rig.backend(a), push)  # the job lives on the source: a push
    await until(lambda: _has(eden_b, f"{ns} pushed", "org/office"), what="the push")
    made = repository(eden_a, f"dbops.{ns}.eden-b")
    assert made is not None and component(eden_a, made["id"], "task")[0]["mode"] == 2

    organisation(eden_a, f"{ns} from a", "pr/person")
    organisation(eden_b, f"{ns} from b", "pr/person")
    both = replication(ns, "people", a, b, PERSON, options={"mode": "both"})
    await reconcile(rig.backend(b), both)
    await until(lambda: _has(eden_a, f"{ns} from b", "pr/person"), what="b → a")
    await until(lambda: _has(eden_b, f"{ns} from a", "pr/person"), what="a → b")


async def _has(sim: Any, name: str, table: str) -> bool:
    return name in names(sim, table)


async def test_a_one_shot_replication_completes(rig: Rig, eden_a: Any, eden_b: Any,
                                                ns: str) -> None:
    organisation(eden_a, f"{ns} once")
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    backend = rig.backend(b)
    request = replication(ns, "once", a, b, continuous=False)
    await reconcile(backend, request)
    seen = await until(lambda: _phase(backend, request, COMPLETED), what="Completed")
    assert seen.completed_at and seen.progress.docs_written >= 1
    assert f"{ns} once" in names(eden_b)
    made = repository(eden_b, f"dbops.{ns}.eden-a")
    assert made is not None
    (job,) = component(eden_b, made["id"], "job")
    assert (job["repeats"], job["status"], job["times_run"]) == (1, "COMPLETED", 1)
    verb, seen = await reconcile(backend, request, spec_changed=False)
    assert verb is Verb.NOTHING and seen.phase == COMPLETED, "a finished job is left alone"


async def _phase(backend: EdenBackend, request: ReplicationRequest, phase: str
                 ) -> Observation | None:
    seen = await backend.observe(request, max_age=0)
    return seen if seen.phase == phase else None


async def test_an_unknown_resource_is_refused_before_anything_is_written(
        rig: Rig, eden_a: Any, eden_b: Any, ns: str, requests_of: Callable[[Any], None]
        ) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    eden_b.store.add_table("org_only_on_b")
    requests_of(eden_b)
    for resource, where in (("org_nowhere", "the job server"), ("org_only_on_b", "peer eden-a")):
        with pytest.raises(PermanentBackendError) as caught:
            await reconcile(rig.backend(b), replication(ns, "bad", a, b, resource))
        assert caught.value.code == "UnknownResource"
        assert caught.value.message.startswith(f"spec.source.database {resource!r}")
        assert where in caught.value.message
    assert writes(eden_b) == [] and repository(eden_b, f"dbops.{ns}.eden-a") is None
    checks = [r.query for r in eden_b.store.requests.list()
              if r.path.endswith("/sync/sync.xml")]
    assert checks and all("msince=" in q and not q.endswith("Z") and "Z&" not in q
                          for q in checks), "Eden ignores an msince with a zone"


async def test_wrong_peer_logins(rig: Rig, eden_a: Any, eden_b: Any, ns: str) -> None:
    """Refused before writing when the peer already refuses the login; reported with
    Eden's own words when the peer's password changes later."""
    b = settings(eden_b, ns, "eden-b")
    wrong = settings(eden_a, ns, "eden-a", password="wrong-peer-pw")
    with pytest.raises(PermanentBackendError) as caught:
        await reconcile(rig.backend(b), replication(ns, "wrong", wrong, b))
    assert caught.value.code == "PeerUnauthorized" and "spec.source.server" in \
        caught.value.message and "wrong-peer-pw" not in caught.value.message

    peer_user, peer_password = "sync@eden-a.example", "first-pw"
    eden_a.store.add_user(peer_user, peer_password, admin=True)
    peer = dataclasses.replace(settings(eden_a, ns, "eden-a"), credentials=Credentials(
        username=peer_user, password=peer_password))
    backend = rig.backend(b)
    request = replication(ns, "later", peer, b)
    await reconcile(backend, request)
    await until(lambda: _synced_or_scheduled(backend, request), what="a first sync")
    # a peer that refuses anonymous reads (under Eden's default policy the pull would go
    # on anonymously: seen on Eden built from master of 2024)
    eden_a.store.set_settings(strict_policy=True)
    eden_a.store.add_user(peer_user, "changed-pw", admin=True)  # the peer changed it
    seen = await until(lambda: _phase(backend, request, ERROR), what="the failed pull")
    assert seen.reason == "PeerUnauthorized"
    assert "b'Authentication Required'" in seen.message and "error" in seen.message
    assert peer_password not in seen.message and "changed-pw" not in seen.message


async def _synced_or_scheduled(backend: EdenBackend, request: ReplicationRequest
                               ) -> Observation | None:
    seen = await backend.observe(request, max_age=0)
    return seen if seen.reason == "Synced" else None


async def test_hand_edits_are_put_back(rig: Rig, eden_a: Any, eden_b: Any, ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    backend = rig.backend(b)
    request = replication(ns, "kept", a, b)
    await reconcile(backend, request)
    made = repository(eden_b, f"dbops.{ns}.eden-a")
    assert made is not None
    client = http(eden_b)

    client.put(f"sync/repository/{made['id']}.s3json", json={"$_sync_repository": [
        {"$_sync_task": [{"resource_name": ORG, "mode": "3", "update_policy": "THIS"}]}]})
    seen = await backend.observe(request, max_age=0)
    assert seen.differences == ["task.mode", "task.update_policy"]
    verb, seen = await reconcile(backend, request, spec_changed=False)
    assert verb is Verb.UPDATE and seen.up_to_date
    assert component(eden_b, made["id"], "task")[0]["mode"] == 1

    (job,) = component(eden_b, made["id"], "job")
    client.put("sync/repository.s3json", json={  # an edit by hand: a duplicate link row
        "$_sync_repository": [{"@uuid": made["uuid"], "$_sync_job": [
            {"$k_scheduler_task_id": {"@resource": "scheduler_task", "@tuid": "j"}}]}],
        "$_scheduler_task": [{"@tuid": "j", "@uuid": job["uuid"], "enabled": "false"}]})
    seen = await backend.observe(request, max_age=0)
    assert seen.differences == ["job (duplicate link rows)"]
    verb, seen = await reconcile(backend, request, spec_changed=False)
    assert verb is Verb.UPDATE and seen.up_to_date
    (again,) = component(eden_b, made["id"], "job")
    assert again["id"] != job["id"] and again["enabled"] is True, "deleted and re-created"

    client.delete(f"sync/repository/{made['id']}/job/{again['id']}.json")
    verb, seen = await reconcile(backend, request, spec_changed=False)
    assert verb is Verb.CREATE and seen.exists and seen.up_to_date

    client.delete(f"sync/repository/{made['id']}/task/"
                  f"{component(eden_b, made['id'], 'task')[0]['id']}.json")
    verb, seen = await reconcile(backend, request, spec_changed=False)
    assert verb is Verb.UPDATE and seen.up_to_date
    assert [t["resource_name"] for t in component(eden_b, made["id"], "task")] == [ORG]


async def test_a_shared_repository_conflicts_and_deletion(rig: Rig, eden_a: Any, eden_b: Any,
                                                          ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    backend = rig.backend(b)
    orgs, offices = replication(ns, "orgs", a, b), replication(ns, "offices", a, b, OFFICE)
    await reconcile(backend, orgs)
    await reconcile(backend, offices)
    made = repository(eden_b, f"dbops.{ns}.eden-a")
    assert made is not None
    assert {t["resource_name"] for t in component(eden_b, made["id"], "task")} == {ORG, OFFICE}
    assert len(component(eden_b, made["id"], "job")) == 2

    with pytest.raises(PermanentBackendError) as caught:
        await reconcile(backend, replication(ns, "twin", a, b))
    assert caught.value.code == "OwnedByAnother" and f"{ns}/orgs" in caught.value.message

    await backend.delete(f"{ns}.orgs", None)
    assert {t["resource_name"] for t in component(eden_b, made["id"], "task")} == {OFFICE}
    assert [j["task_name"] for j in component(eden_b, made["id"], "job")] == [
        f"dbops.repl:{ns}/offices:{OFFICE}"]
    await backend.delete(f"{ns}.offices", None)
    assert repository(eden_b, f"dbops.{ns}.eden-a") is None, "gone with its last task"
    await backend.delete(f"{ns}.offices", None)  # again: nothing left, no error


async def test_a_task_after_a_failed_one_reports_it_did_not_run(
        rig: Rig, eden_a: Any, eden_b: Any, ns: str) -> None:
    """Pushes: Eden skips the tasks after a failed one that do not pull (a pulling task
    would run again: seen on Eden built from master of 2024)."""
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    organisation(eden_a, f"{ns} pushed org")
    organisation(eden_a, f"{ns} pushed office", table="org/office")
    backend = rig.backend(a)
    first, second = replication(ns, "first", a, b), replication(ns, "second", a, b, OFFICE)
    await reconcile(backend, first)
    await reconcile(backend, second)
    await until(lambda: _synced_or_scheduled(backend, second), what="both synced once")
    eden_b.store.faults.add_fault(500, count=1000, path_prefix="/eden/sync/sync.xml",
                                  method="POST")
    seen = await until(lambda: _phase(backend, second, ERROR), what="the skipped task")
    assert seen.reason == "NotRun" and f"{OFFICE} did not run" in seen.message
    assert ORG in seen.message and "skips the later tasks" in seen.message
    assert (await backend.observe(first, max_age=0)).reason == "SyncFailed"


async def test_observation_is_batched_per_server(rig: Rig, eden_a: Any, eden_b: Any,
                                                 ns: str) -> None:
    b = settings(eden_b, ns, "eden-b")
    backend = rig.backend(b)
    # two peers: Eden keeps one repository per peer URL, so the second is the same
    # simulator under another host name
    a2 = dataclasses.replace(settings(eden_a, ns, "eden-a2"),
                             url=eden_a.url.replace("127.0.0.1", "localhost"))
    requests = [replication(ns, f"r{i}", peer, b, resource)
                for i, (peer, resource) in enumerate(
                    [(settings(eden_a, ns, "eden-a"), ORG),
                     (settings(eden_a, ns, "eden-a"), OFFICE),
                     (settings(eden_a, ns, "eden-a"), PERSON), (a2, ORG), (a2, OFFICE)])]
    for request in requests:
        await reconcile(backend, request)
    eden_b.store.requests.clear()
    backend.invalidate()
    await asyncio.gather(*(backend.observe(r, max_age=60) for r in requests))
    gets = [r.path for r in eden_b.store.requests.list() if r.method == "GET"]
    listed = [p for p in gets if p.endswith("/sync/repository.json")]
    logs = [p for p in gets if p.endswith("/sync/log.json")]
    assert len(listed) == 1 + 2 and len(logs) == 1, "the list, and one look-up per peer URL"
    per_repository = [p for p in gets if p.endswith(("/task.json", "/job.json"))]
    own = [r for r in http(eden_b).get("sync/repository.json").json()
           if r["name"].startswith("dbops.")]
    assert len(per_repository) == 2 * len(own), "tasks and jobs: one read each per repository"
    assert len(gets) == 2 + 2 + 2 * len(own), "nothing per Replication"


async def test_suspend_disables_the_job(rig: Rig, eden_a: Any, eden_b: Any, ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    backend = rig.backend(b)
    request = replication(ns, "paused", a, b)
    await reconcile(backend, request)
    verb, seen = await reconcile(backend, dataclasses.replace(request, suspend=True))
    assert verb is Verb.UPDATE and seen.mode == "paused"
    made = repository(eden_b, f"dbops.{ns}.eden-a")
    assert made is not None and component(eden_b, made["id"], "job")[0]["enabled"] is False


async def test_edens_own_errors_are_reported_as_edens(rig: Rig, eden_a: Any, eden_b: Any,
                                                      ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    eden_b.store.set_settings(adapter_bug=True)
    with pytest.raises(TransientBackendError) as caught:
        await reconcile(rig.backend(b), replication(ns, "bug", a, b))
    assert "encodestring" in caught.value.message and "500" in caught.value.message
    assert eden_a.password not in caught.value.message


def test_what_eden_cannot_do_is_refused_naming_the_field(rig: Rig, eden_a: Any, eden_b: Any,
                                                        ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    backend = rig.backend(b)
    couch = dataclasses.replace(a, type="couchdb")
    cases = [
        (replication(ns, "x", couch, b), "spec.source.server"),
        (dataclasses.replace(replication(ns, "x", a, b),
                             target=Endpoint(b, OFFICE)), "spec.target.database"),
        (replication(ns, "x", a, b, filter={"selector": {}}), "spec.filter.selector"),
        (replication(ns, "x", a, b, adopted=True), "spec.externalName"),
        (replication(ns, "x", a, b, options={"mode": "push"}), "spec.options.mode"),
        (replication(ns, "x", a, b, "org*"), "spec.source.database"),
        (replication(ns, "x", a, settings(eden_a, ns, "other")), "spec.server"),
    ]
    for request, field in cases:
        with pytest.raises(SpecError) as caught:
            backend.validate(request)
        assert field in caught.value.message, (field, caught.value.message)


# --- ReplicationPolicies --------------------------------------------------------------------

def policy(ns: str, name: str, remote: ServerSettings, **fields: Any) -> PolicyRequest:
    values: dict[str, Any] = {"key": f"{ns}/{name}", "name": f"{ns}.{name}", "external_id": "",
                              "adopted": False, "remote": Remote(remote), "push": True,
                              "patterns": (ORG, OFFICE)}
    values.update(fields)
    return PolicyRequest(**values)


async def test_a_policy_over_two_resources_with_runs_on_request(
        rig: Rig, eden_a: Any, eden_b: Any, ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    organisation(eden_a, f"{ns} policy org")
    organisation(eden_a, f"{ns} policy office", "org/office")
    backend = rig.backend(a)
    request = policy(ns, "nightly", b)
    backend.validate(request)
    assert not (await backend.observe_policy(request, max_age=0)).exists
    external_id = await backend.create_policy(request)
    seen = await backend.observe_policy(request, max_age=0)
    assert seen.exists and seen.up_to_date and seen.external_id == external_id
    assert seen.registries == [{"server": "eden-b", "id": seen.handle["repository_id"]}]
    made = repository(eden_a, f"dbops.{ns}.eden-b")
    assert made is not None
    assert {(t["resource_name"], t["mode"]) for t in component(eden_a, made["id"], "task")} \
        == {(ORG, 2), (OFFICE, 2)}
    (job,) = component(eden_a, made["id"], "job")
    assert job["enabled"] is False, "a manual policy's job only marks it"

    first = await backend.run_policy(external_id)
    seen = await backend.observe_policy(request, max_age=0, follow=[first])
    assert seen.executions[0].id == first and seen.executions[0].trigger == "manual"
    done = await until(lambda: _execution(backend, request, first), what="the run finished")
    assert (done.status, done.total, done.succeeded) == ("Succeed", 2, 2)
    assert {f"{ns} policy org"} <= names(eden_b)
    assert {f"{ns} policy office"} <= names(eden_b, "org/office")

    eden_b.store.faults.add_fault(503, count=1000, path_prefix="/eden/sync/sync.xml",
                                  method="POST")
    await asyncio.sleep(1.1)  # the next run starts in another second (ids are per second)
    second = await backend.run_policy(external_id)
    failed = await until(lambda: _execution(backend, request, second), what="the failed run")
    assert (failed.status, failed.failed, failed.stopped) == ("Failed", 1, 1)
    assert "did not run" in failed.status_text
    tasks = await backend.failed_tasks(second, 3)
    assert [t.source for t in tasks] == [ORG, OFFICE]
    assert "simulated fault 503" in tasks[0].message and "did not run" in tasks[1].message
    assert len(component(eden_a, made["id"], "job")) == 2, "finished run jobs are cleared"

    removed = await backend.delete_policy(f"{ns}.nightly", external_id)
    assert removed == [f"sync repository dbops.{ns}.eden-b"]
    assert repository(eden_a, f"dbops.{ns}.eden-b") is None


async def _execution(backend: EdenBackend, request: PolicyRequest, execution_id: int
                     ) -> Any:
    seen = await backend.observe_policy(request, max_age=0, follow=[execution_id])
    found = next((e for e in seen.executions if e.id == execution_id), None)
    return found if found is not None and not found.running else None


async def test_a_scheduled_policy_is_a_job_at_a_fixed_period(rig: Rig, eden_a: Any,
                                                            eden_b: Any, ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    backend = rig.backend(b)
    request = policy(ns, "every5", a, push=False, patterns=(ORG,), trigger="scheduled",
                     schedule="*/5 * * * *", replicate_deletion=True)
    await backend.create_policy(request)
    made = repository(eden_b, f"dbops.{ns}.eden-a")
    assert made is not None
    (job,) = component(eden_b, made["id"], "job")
    assert (job["period"], job["enabled"], job["repeats"]) == (300, True, 0)
    assert job["start_time"].endswith(("0:00", "5:00")), job["start_time"]
    (task,) = component(eden_b, made["id"], "task")
    assert task["mode"] == 1 and task["strategy"] == ["create", "update", "delete"]
    for bad in ("*/7 * * * *", "0 9 * * 1-5"):
        with pytest.raises(SpecError, match="fixed period"):
            backend.validate(dataclasses.replace(request, schedule=bad))
    with pytest.raises(SpecError, match=r"spec\.trigger\.type"):
        backend.validate(dataclasses.replace(request, trigger="eventBased"))
    with pytest.raises(SpecError, match=r"spec\.source\.databases\[1\]"):
        backend.validate(dataclasses.replace(request, patterns=(ORG, "org/*")))


async def test_resources_sharing_a_repository_share_the_peer_login(
        rig: Rig, eden_a: Any, eden_b: Any, ns: str) -> None:
    a, b = settings(eden_a, ns, "eden-a"), settings(eden_b, ns, "eden-b")
    eden_a.store.add_user("other@eden-a.example", "other-pw", admin=True)
    other = dataclasses.replace(a, credentials=Credentials(username="other@eden-a.example",
                                                           password="other-pw"))
    backend = rig.backend(b)
    await reconcile(backend, replication(ns, "first", a, b))
    with pytest.raises(PermanentBackendError) as caught:
        await reconcile(backend, replication(ns, "second", other, b, OFFICE))
    assert caught.value.code == "CredentialConflict" and f"{ns}/first" in caught.value.message
    assert "other-pw" not in caught.value.message
