"""Harbor end to end: the real API server, two Harbor API simulators (tests/harbor_sim,
kept honest by the harborapi contract tests) and the operator as its own process."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_support import Kube, OperatorProcess, database_server, secret, wait_for
from harborapi.client import CookieDiscarder

API = "/api/v2.0"
RUN = "replication.dbops.dev/run-requested"
ROTATE = "replication.dbops.dev/rotate-requested"


class HarborAdmin:
    """Direct access to a simulator, as its admin: Harbor's API and the /_sim controls."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        # no cookies: Harbor refuses writes that send its session cookie back without a
        # CSRF token (as every API client must, the operator included)
        self.http = httpx.Client(base_url=sim.url, auth=(sim.username, sim.password),
                                 timeout=10, cookies=CookieDiscarder())

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(f"{API}{path}", params={"page_size": 100, **params})
        response.raise_for_status()
        return response.json()

    def policy(self, policy_id: str | int) -> dict[str, Any] | None:
        response = self.http.get(f"{API}/replication/policies/{policy_id}")
        return response.json() if response.status_code == 200 else None

    def policy_named(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.get("/replication/policies") if p["name"] == name), None)

    def registries(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.get("/registries")}

    def executions(self, policy_id: str | int) -> list[dict[str, Any]]:
        return list(self.get("/replication/executions", policy_id=policy_id))

    def robots(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.get("/robots", q="Level=system")}  # every level

    def project(self, name: str) -> None:
        response = self.http.post(f"{API}/projects",
                                  json={"project_name": name, "metadata": {"public": "false"}})
        assert response.status_code in (201, 409), response.text

    def push(self, project: str, repository: str, tag: str) -> None:
        self.http.post("/_sim/artifacts", json={"project": project, "repository": repository,
                                                "tag": tag}).raise_for_status()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"/_sim/{path}", json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def writes(self, prefix: str) -> list[str]:
        """Write requests (method and path) the server saw under `prefix`."""
        return [f"{r['method']} {r['path']}" for r in self.control("GET", "requests")
                if r["method"] in ("POST", "PUT", "PATCH", "DELETE")
                and r["path"].startswith(f"{API}{prefix}")]

    def reads(self, path: str) -> int:
        return sum(1 for r in self.control("GET", "requests")
                   if r["method"] == "GET" and r["path"] == f"{API}{path}")


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "ReplicationPolicy",
            "metadata": {"name": name}, "spec": spec}


def status(kube: Kube, name: str) -> dict[str, Any]:
    return dict((kube.get("replicationpolicy", name) or {}).get("status") or {})


@pytest.fixture
def harbor_env(cluster: Any, operator: OperatorProcess, namespace: str, harbor_a: Any,
               harbor_b: Any, secret_values: set[str]
               ) -> Iterator[tuple[Kube, HarborAdmin, HarborAdmin]]:
    """Namespace with DatabaseServers harbor-a and harbor-b (Ready); "library" with two
    repositories on A, "mirror" on B."""
    kube = Kube(cluster, namespace)
    secret_values.update({harbor_a.password, harbor_b.password})
    kube.apply(secret("harbor-a-admin", username=harbor_a.username, password=harbor_a.password),
               secret("harbor-b-admin", username=harbor_b.username, password=harbor_b.password),
               database_server("harbor-a", harbor_a.url, type_="harbor", secret="harbor-a-admin"),
               database_server("harbor-b", harbor_b.url, type_="harbor", secret="harbor-b-admin"))
    a, b = HarborAdmin(harbor_a), HarborAdmin(harbor_b)
    a.push("library", "nginx", "v1.25")
    a.push("library", "redis", "v7.2")
    b.project("mirror")
    for name in ("harbor-a", "harbor-b"):
        kube.wait_condition("databaseserver", name)
    yield kube, a, b
    for admin in (a, b):  # the simulators outlive the test: leave no injected failure
        for injected in ("faults", "fail", "unreachable", "stuck"):
            admin.control("DELETE", injected)


def test_policy_created_kept_quiet_and_drift_put_back(
        harbor_env: tuple[Kube, HarborAdmin, HarborAdmin]) -> None:
    kube, a, _ = harbor_env
    kube.apply(policy("images", server="harbor-a",
                      source={"server": "harbor-a", "databases": ["library/**"]},
                      target={"server": "harbor-b", "namespace": "mirror"},
                      filters=[{"type": "tag", "value": "v*"}], replicateDeletion=True))
    kube.wait_condition("replicationpolicy", "images")
    st = status(kube, "images")
    on_server = a.policy(st["externalName"])
    assert on_server is not None and on_server["name"] == f"{kube.ns}.images"
    # dbops.<namespace>.<server>, shortened with a digest past Harbor's 64 characters
    [entry] = st["registries"]
    registry = a.registries()[entry["name"]]
    assert entry == {"name": registry["name"], "id": registry["id"], "server": "harbor-b"}
    assert entry["name"].startswith(f"dbops.{kube.ns}"[:40]) and len(entry["name"]) <= 64
    assert registry["url"] == harbor_env[2].sim.url and on_server["dest_registry"]["id"] == \
        registry["id"]
    assert on_server["replicate_deletion"] is True, "Harbor reads it from `deletion`"
    assert on_server["dest_namespace"] == "mirror"
    assert {(f["type"], str(f["value"])) for f in on_server["filters"]} == {
        ("name", "library/**"), ("tag", "v*")}
    assert kube.wait_event("images", "Created")

    # quiet: three resyncs read the server and write nothing, there or in the cluster
    version = (kube.get("replicationpolicy", "images") or {})["metadata"]["resourceVersion"]
    a.control("DELETE", "requests")
    wait_for(lambda: a.reads("/replication/policies") >= 3, timeout=30,
             what="three resyncs of the policy list")
    assert a.writes("/replication") == [] and a.writes("/registries") == []
    assert (kube.get("replicationpolicy", "images") or {})["metadata"]["resourceVersion"] \
        == version, "a status write although nothing changed"

    # drift: changed behind the operator's back, put back with an Event naming fields
    edited = {**on_server, "dest_namespace": "elsewhere", "enabled": False}
    a.http.put(f"{API}/replication/policies/{on_server['id']}", json=edited) \
        .raise_for_status()
    wait_for(lambda: (a.policy(on_server["id"]) or {}).get("dest_namespace") == "mirror"
             and (a.policy(on_server["id"]) or {}).get("enabled") is True, timeout=30,
             what="the policy put back")
    event = kube.wait_event("images", "DriftCorrected")
    assert "target.namespace" in event["message"] and "enabled" in event["message"]

    # an update of the spec is sent as one full replace
    a.control("DELETE", "requests")
    kube.apply(policy("images", server="harbor-a",
                      source={"server": "harbor-a", "databases": ["library/**"]},
                      target={"server": "harbor-b", "namespace": "mirror"},
                      trigger={"type": "scheduled", "schedule": "*/5 * * * *"}))
    wait_for(lambda: ((a.policy(on_server["id"]) or {}).get("trigger") or {}).get("type")
             == "scheduled", timeout=30, what="the schedule on the server")
    trigger = (a.policy(on_server["id"]) or {})["trigger"]
    assert trigger["trigger_settings"]["cron"] == "0 */5 * * * *"
    assert wait_for(lambda: status(kube, "images").get("nextRunTime"), timeout=30,
                    what="status.nextRunTime")
    assert a.writes("/replication/policies") == [
        f"PUT {API}/replication/policies/{on_server['id']}"]


def test_run_on_demand_history_and_failures(
        harbor_env: tuple[Kube, HarborAdmin, HarborAdmin]) -> None:
    kube, a, _ = harbor_env
    kube.apply(policy("runs", source={"server": "harbor-a", "databases": ["library/*"]},
                      target={"server": "harbor-b", "namespace": "mirror"}, historyLimit=2))
    kube.wait_condition("replicationpolicy", "runs")
    policy_id = status(kube, "runs")["externalName"]

    kube.annotate("replicationpolicy", "runs", f"{RUN}=1")
    last = wait_for(lambda: (status(kube, "runs").get("lastExecution") or {})
                    .get("status") == "Succeed" and status(kube, "runs")["lastExecution"],
                    timeout=60, what="the first run succeeded")
    assert last["total"] == 2 and last["succeeded"] == 2 and last["trigger"] == "manual"
    kube.wait_event("runs", "RunStarted")
    kube.wait_event("runs", "ExecutionSucceeded")

    a.control("POST", "fail", {"pattern": "library/redis"})
    kube.annotate("replicationpolicy", "runs", f"{RUN}=2")
    # polled every few seconds while it runs, the execution may first show with its tasks
    # ended (tasksFinished) and Harbor not closed yet: wait for the close
    failed = wait_for(lambda: (status(kube, "runs").get("lastExecution") or {})
                      .get("failedTasks") and status(kube, "runs")["lastExecution"]
                      .get("status") == "Failed" and status(kube, "runs")["lastExecution"],
                      timeout=60, what="the failing run closed, with its failed task")
    assert failed["status"] == "Failed" and failed["failed"] == 1 and failed["succeeded"] == 1
    assert "library/redis" in failed["failedTasks"][0]["source"]
    assert failed["failedTasks"][0]["message"]
    assert "failed" in kube.wait_event("runs", "ExecutionFailed")["message"]
    a.control("DELETE", "fail")

    kube.annotate("replicationpolicy", "runs", f"{RUN}=3")
    wait_for(lambda: len(a.executions(policy_id)) == 3 and
             status(kube, "runs").get("lastExecution", {}).get("status") == "Succeed",
             timeout=60, what="the third run")
    st = status(kube, "runs")
    assert [e["status"] for e in st["executions"]] == ["Succeed", "Failed"], "historyLimit 2"
    assert st["executions"][0]["id"] > st["executions"][1]["id"]

    # the same value again starts nothing; a disabled policy refuses with an Event
    kube.annotate("replicationpolicy", "runs", f"{RUN}=3")
    kube.apply(policy("runs", source={"server": "harbor-a", "databases": ["library/*"]},
                      target={"server": "harbor-b", "namespace": "mirror"}, historyLimit=2,
                      enabled=False))
    kube.annotate("replicationpolicy", "runs", f"{RUN}=4")
    assert "spec.enabled" in kube.wait_event("runs", "RunSkipped")["message"]
    assert len(a.executions(policy_id)) == 3


def test_event_based_policy_runs_when_an_image_is_pushed(
        harbor_env: tuple[Kube, HarborAdmin, HarborAdmin]) -> None:
    kube, a, _ = harbor_env
    kube.apply(policy("on-push", source={"server": "harbor-a", "databases": ["apps/**"]},
                      target={"server": "harbor-b", "namespace": "mirror"},
                      trigger={"type": "eventBased"}))
    kube.wait_condition("replicationpolicy", "on-push")
    a.push("apps", "web", "v2")
    last = wait_for(lambda: (status(kube, "on-push").get("lastExecution") or {})
                    .get("status") == "Succeed" and status(kube, "on-push")["lastExecution"],
                    timeout=60, what="an event-based execution in status")
    assert last["trigger"] == "event_based"


def test_server_errors_and_throttling_then_recovery(
        harbor_env: tuple[Kube, HarborAdmin, HarborAdmin]) -> None:
    kube, a, _ = harbor_env
    kube.apply(policy("flaky", source={"server": "harbor-a", "databases": ["library/*"]},
                      target={"server": "harbor-b", "namespace": "mirror"}))
    kube.wait_condition("replicationpolicy", "flaky")
    for fault in ({"status": 503, "count": 1000},
                  {"status": 429, "count": 1000, "retry_after": 1}):
        a.control("POST", "faults", {**fault, "path_prefix": f"{API}/replication"})
        cond = kube.wait_condition("replicationpolicy", "flaky", status="False",
                                   reason="BackendUnavailable", timeout=60)
        assert str(fault["status"]) in cond["message"]
        assert kube.condition("replicationpolicy", "flaky", "Stalled")["status"] == "False"
        a.control("DELETE", "faults")
        kube.wait_condition("replicationpolicy", "flaky", timeout=60)


def test_deletion_stops_running_executions_and_removes_the_registry(
        harbor_env: tuple[Kube, HarborAdmin, HarborAdmin]) -> None:
    kube, a, _ = harbor_env
    spec = {"source": {"server": "harbor-a", "databases": ["library/*"]},
            "target": {"server": "harbor-b", "namespace": "mirror"}}
    kube.apply(policy("slow", **spec), policy("sibling", **spec))
    kube.wait_condition("replicationpolicy", "slow")
    kube.wait_condition("replicationpolicy", "sibling")
    registry = status(kube, "slow")["registries"][0]["name"]
    policy_id = status(kube, "slow")["externalName"]
    a.control("POST", "settings", {"task_seconds": 600})
    try:
        kube.annotate("replicationpolicy", "slow", f"{RUN}=go")
        wait_for(lambda: (status(kube, "slow").get("lastExecution") or {})
                 .get("status") == "InProgress", timeout=60, what="a running execution")
        a.control("DELETE", "requests")
        kube.delete("replicationpolicy", "slow")
        wait_for(lambda: kube.get("replicationpolicy", "slow") is None, timeout=90,
                 what="the ReplicationPolicy gone")
    finally:
        a.control("POST", "settings", {"task_seconds": 2})
    assert a.policy(policy_id) is None
    assert [e["status"] for e in a.executions(policy_id)] in ([], ["Stopped"])
    writes = a.writes("/replication")
    stop = next(i for i, w in enumerate(writes) if w.startswith("PUT") and "executions" in w)
    delete = writes.index(f"DELETE {API}/replication/policies/{policy_id}")
    assert stop < delete, writes
    assert registry in a.registries(), "the sibling policy still uses the registry"

    kube.delete("replicationpolicy", "sibling")
    wait_for(lambda: registry not in a.registries(), timeout=60,
             what="the registry removed with its last policy")


def test_adopting_an_existing_policy(harbor_env: tuple[Kube, HarborAdmin, HarborAdmin]
                                     ) -> None:
    kube, a, b = harbor_env
    made = a.http.post(f"{API}/registries", json={
        "name": "by-hand", "type": "harbor", "url": b.sim.url,
        "credential": {"type": "basic", "access_key": b.sim.username,
                       "access_secret": b.sim.password}})
    made.raise_for_status()
    registry_id = int(made.headers["location"].rsplit("/", 1)[-1])
    created = a.http.post(f"{API}/replication/policies", json={
        "name": f"legacy-{kube.ns}", "dest_registry": {"id": registry_id},
        "dest_namespace": "old", "trigger": {"type": "manual"}, "enabled": True,
        "filters": [{"type": "name", "value": "library/**"}]})
    created.raise_for_status()
    policy_id = created.headers["location"].rsplit("/", 1)[-1]
    kube.apply(policy("legacy", externalName=policy_id,
                      source={"server": "harbor-a", "databases": ["library/**"]},
                      target={"server": "harbor-b", "namespace": "mirror"}))
    kube.wait_condition("replicationpolicy", "legacy")
    kube.wait_event("legacy", "Adopted")
    adopted = a.policy(policy_id) or {}
    assert adopted["name"] == f"legacy-{kube.ns}", "an adopted policy keeps its name"
    assert adopted["dest_namespace"] == "mirror"
    assert status(kube, "legacy")["externalName"] == policy_id


def test_robot_token_delivered_rotated_and_removed(
        harbor_env: tuple[Kube, HarborAdmin, HarborAdmin], secret_values: set[str]) -> None:
    kube, _, b = harbor_env
    kube.apply({"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "Token",
                "metadata": {"name": "puller"},
                "spec": {"server": "harbor-b", "permissions": {"read": ["mirror"]},
                         "expiresInDays": 30}})
    kube.wait_condition("token", "puller")
    robot_name = f"robot$mirror+{kube.ns}.puller"

    def credential() -> tuple[str, str]:
        data = kube.cluster.kubectl("get", "secret", "puller", "-n", kube.ns, "-o",
                                    "jsonpath={.data.username} {.data.token}").stdout.split()
        username, token = (base64.b64decode(v).decode() for v in data)
        secret_values.add(token)
        return username, token

    username, first = credential()
    assert username == robot_name and robot_name in b.robots()
    st = (kube.get("token", "puller") or {})["status"]
    assert st["expiresAt"] and st["username"] == robot_name

    def works(robot: str, token: str) -> int:
        return httpx.get(f"{b.sim.url}{API}/projects/mirror/repositories",
                         auth=(robot, token), timeout=10).status_code

    assert works(robot_name, first) == 200
    # make-before-break: a second robot is issued; the first goes once nothing uses it
    # (no Replication depends on this Token, so at once)
    kube.annotate("token", "puller", f"{ROTATE}=now")
    second_name, second = wait_for(lambda: (lambda c: c if c[1] != first else None)(
        credential()), timeout=60, what="a new robot in the Secret")
    assert second_name == f"{robot_name}-b" and works(second_name, second) == 200
    kube.wait_event("puller", "Revoked")
    wait_for(lambda: robot_name not in b.robots(), timeout=30, what="the old robot revoked")
    assert works(robot_name, first) == 401

    kube.delete("token", "puller")
    wait_for(lambda: not {robot_name, second_name} & set(b.robots()), timeout=60,
             what="the robots removed")
    wait_for(lambda: kube.cluster.kubectl("get", "secret", "puller", "-n", kube.ns,
                                          check=False).returncode != 0,
             timeout=60, what="the Secret removed")


def test_policy_to_a_plain_registry(harbor_env: tuple[Kube, HarborAdmin, HarborAdmin],
                                    registry: Any, secret_values: set[str]) -> None:
    """A real Distribution registry (htpasswd auth) declared in the policy: the registry
    endpoint is created, kept (hand edits put back), follows its Secret, and goes with
    the policy. Harbor (the simulator) checks it with a real /v2/ request, as Harbor does."""
    kube, a, _ = harbor_env
    secret_values.update({registry.password, registry.alt_password})
    kube.apply(secret("mirror-creds", username=registry.username, password=registry.password))
    declared = {"type": "docker-registry", "url": registry.url,
                "secretRef": {"name": "mirror-creds"}}
    spec = {"source": {"server": "harbor-a", "databases": ["library/**"]},
            "target": {"registry": declared, "namespace": "mirror"}}
    kube.apply(policy("to-mirror", **spec))
    kube.wait_condition("replicationpolicy", "to-mirror")
    st = status(kube, "to-mirror")
    [entry] = st["registries"]
    # dbops.<namespace>.docker-registry-<hash>, shortened to Harbor's 64 characters
    assert entry["url"] == registry.url and len(entry["name"]) <= 64
    assert entry["name"].startswith(f"dbops.{kube.ns}"[:40])
    made = a.sim.store.get_registry(entry["id"])
    assert (made.type, made.url, made.access_key, made.access_secret) == (
        "docker-registry", registry.url, registry.username, registry.password)
    on_server = a.policy(st["externalName"]) or {}
    assert on_server["dest_registry"]["id"] == entry["id"]

    # an update of the spec: one full-replace PUT of the policy, the registry untouched
    a.control("DELETE", "requests")
    kube.apply(policy("to-mirror", **{**spec, "target": {**spec["target"],
                                                          "namespace": "mirror2"}}))
    wait_for(lambda: (a.policy(st["externalName"]) or {}).get("dest_namespace") == "mirror2",
             timeout=30, what="the policy updated")
    assert a.writes("/registries") == []

    # a hand edit of the registry is put back (made in the simulator's store: Harbor's API
    # would refuse a URL that does not answer)
    a.sim.store.get_registry(entry["id"]).url = "http://127.0.0.1:9"
    wait_for(lambda: a.sim.store.get_registry(entry["id"]).url == registry.url, timeout=30,
             what="the registry URL put back")
    # the registry's creation was a RegistryUpdated Event too: find the one naming the URL
    wait_for(lambda: any(e["reason"] == "RegistryUpdated" and "url" in e["message"]
                         for e in kube.events("to-mirror")), what="RegistryUpdated naming url")

    # a wrong credential in the Secret: Harbor refuses it, the status names the Secret
    kube.apply(secret("mirror-creds", username=registry.username, password="not-it"))
    cond = kube.wait_condition("replicationpolicy", "to-mirror", status="False",
                               reason="RegistryUnhealthy", timeout=60)
    assert "Secret 'mirror-creds'" in cond["message"]
    assert kube.condition("replicationpolicy", "to-mirror", "Stalled")["status"] == "True"
    assert a.sim.store.get_registry(entry["id"]).access_secret == registry.password

    # another account that works: applied to the same registry, Ready again
    kube.apply(secret("mirror-creds", username=registry.alt_username,
                      password=registry.alt_password))
    kube.wait_condition("replicationpolicy", "to-mirror", timeout=60)
    wait_for(lambda: a.sim.store.get_registry(entry["id"]).access_key
             == registry.alt_username, timeout=30, what="the new credential applied")
    assert a.sim.store.get_registry(entry["id"]).access_secret == registry.alt_password

    kube.delete("replicationpolicy", "to-mirror")
    wait_for(lambda: entry["name"] not in a.registries(), timeout=60,
             what="the registry removed with its policy")
    assert a.policy(st["externalName"]) is None
