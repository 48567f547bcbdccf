"""Bringing a fleet under GitOps, end to end: jobs, replications and policies made by
hand on real servers (pouchdb-server, ReductStore) and the Harbor simulators are
exported, the output is `kubectl apply`-ed, every resource becomes Ready, and the
servers see no write at all. `plan` predicts what an apply does, writes nothing
anywhere, and the operator then does exactly what it said."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from e2e_support import (
    ROOT,
    Couch,
    Kube,
    OperatorProcess,
    database_server,
    metric_sum,
    replication,
    secret,
    wait_for,
)

from replication_operator.http import NoCookies

API = "/api/v2.0"
WRITES = ("PUT", "POST", "PATCH", "DELETE")


def cli(cluster: Any, *args: str, program: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """The command line as a user runs it (`replication-operator ...`, or `program`)."""
    env = {**cluster.env, "PYTHONPATH": str(ROOT / "operator")}
    command = [program] if program else [sys.executable, "-m", "replication_operator"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env,
                          timeout=180)


def export(kube: Kube, server: str, *extra: str) -> tuple[str, list[dict[str, Any]]]:
    result = cli(kube.cluster, "export", "-n", kube.ns, "--server", server, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout, [d for d in yaml.safe_load_all(result.stdout) if d]


def assert_no_secret(secret_values: set[str], *texts: str) -> None:
    for value in secret_values:
        for text in texts:
            assert value not in text, "a credential was printed"


def operator_writes(operator: OperatorProcess, server_key: str) -> float:
    text = operator.metrics()
    return sum(metric_sum(text, "replication_operator_backend_requests_total",
                          server=server_key, method=method) for method in WRITES)


def operator_reads(operator: OperatorProcess, server_key: str) -> float:
    return metric_sum(operator.metrics(), "replication_operator_backend_requests_total",
                      server=server_key, method="GET")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class PouchLog:
    """The request log pouchdb-server writes (its own record of every request)."""

    LINE = re.compile(r"- - (GET|PUT|POST|DELETE|HEAD|COPY) (\S+) (\d+)")

    def __init__(self, part: Any) -> None:
        self.path = Path(part.data_dir) / "pouch.log"

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, mark: int) -> list[tuple[str, str]]:
        with open(self.path, "rb") as log:
            log.seek(mark)
            text = log.read().decode(errors="replace")
        return [(m.group(1), m.group(2)) for m in self.LINE.finditer(text)]


def settled(couch: Couch, ids: set[str], done: Collection[str] = ()
            ) -> dict[str, str] | None:
    """The `_rev` of each job once the replicator has written its last state into it
    (PouchDB Server writes `_replication_state` into the doc: `triggered` for a
    continuous job, then nothing more; `completed` with its stats for a one-shot job,
    the ones in `done`)."""
    jobs = couch.replicator_docs()
    if not ids <= set(jobs):
        return None
    for job_id in ids:
        state = jobs[job_id].get("_replication_state")
        if state != ("completed" if job_id in done else "triggered"):
            return None
    return {i: jobs[i]["_rev"] for i in ids}


@pytest.fixture
def couch_env(cluster: Any, operator: OperatorProcess, namespace: str, couch_a: Any,
              couch_b: Any, secret_values: set[str]) -> Iterator[tuple[Kube, Couch, Couch]]:
    kube = Kube(cluster, namespace)
    secret_values.update({couch_a.password, couch_b.password})
    kube.apply(secret("couch-a-admin", username=couch_a.username, password=couch_a.password),
               secret("couch-b-admin", username=couch_b.username, password=couch_b.password),
               database_server("couch-a", couch_a.url, secret="couch-a-admin"),
               database_server("couch-b", couch_b.url, secret="couch-b-admin"))
    for name in ("couch-a", "couch-b"):
        kube.wait_condition("databaseserver", name)
    yield kube, Couch(couch_a), Couch(couch_b)


def test_couchdb_jobs_made_by_hand_are_exported_and_adopted_without_a_write(
        couch_env: tuple[Kube, Couch, Couch], operator: OperatorProcess,
        unique_name: Any, secret_values: set[str]) -> None:
    kube, a, b = couch_env
    src, src2 = unique_name("orders"), unique_name("users")
    for db in (src, src2):
        a.create_db(db)
        a.put(db, "o1", type="order")
        a.put(db, "u1", type="user")
    a.http.put(f"/{src2}/_design/app", json={"filters": {
        "by_type": "function(doc, req) { return doc.type === req.query.type; }"}}
    ).raise_for_status()
    auth_a = basic(a.part.username, a.part.password)
    auth_b = basic(b.part.username, b.part.password)

    def endpoint(server: Couch, db: str, auth: str) -> dict[str, Any]:
        return {"url": f"{server.url}/{db}", "headers": {"Authorization": auth}}

    hand_made = {
        f"{kube.ns}-live": {"source": endpoint(a, src, auth_a),
                            "target": endpoint(b, src, auth_b), "continuous": True,
                            "worker_processes": 2, "note": "made by the old cron job"},
        f"{kube.ns}-once": {"source": endpoint(a, src, auth_a),
                            "target": endpoint(b, f"{src}-ids", auth_b),
                            "create_target": True, "doc_ids": ["o1"]},
        f"{kube.ns}-typed": {"source": endpoint(a, src2, auth_a),
                             "target": endpoint(b, src2, auth_b), "continuous": True,
                             "filter": "app/by_type", "query_params": {"type": "order"}},
    }
    for doc_id, body in hand_made.items():
        b.http.put(f"/_replicator/{doc_id}", json=body).raise_for_status()
    # one the operator owns already: never exported
    kube.apply(replication("owned", source={"server": "couch-a", "database": src2},
                           target={"server": "couch-b", "database": f"{src2}-owned",
                                   "create": True}))
    kube.wait_condition("replication", "owned")
    one_shot = {f"{kube.ns}-once"}
    revs = wait_for(lambda: settled(b, set(hand_made), one_shot), timeout=90,
                    what="the replicator's last state in the hand-made jobs")
    assert b.ids(f"{src}-ids") == {"o1"}

    text, docs = export(kube, "couch-b")
    assert_no_secret(secret_values, text)
    exported = {d["spec"]["externalName"]: d for d in docs}
    mine = {k: v for k, v in exported.items() if k.startswith(kube.ns)}
    assert set(mine) == set(hand_made), "every hand-made job, and only those"
    assert f"{kube.ns}.owned" not in exported
    assert "owned by Replication" in text
    live = mine[f"{kube.ns}-live"]["spec"]
    assert live["source"] == {"server": "couch-a", "database": src}
    assert live["target"] == {"server": "couch-b", "database": src}
    assert live["options"] == {"worker_processes": 2} and live["continuous"] is True
    once = mine[f"{kube.ns}-once"]["spec"]
    assert once["continuous"] is False and once["filter"] == {"docIds": ["o1"]}
    assert once["target"]["create"] is True
    assert mine[f"{kube.ns}-typed"]["spec"]["filter"] == {
        "designFilter": "app/by_type", "queryParams": {"type": "order"}}
    assert text.count("nothing is written to the server") >= 3
    assert "note" in text and "drops them" in text, "the unmanaged field is named"

    log = PouchLog(b.part)
    mark, writes_before = log.mark(), operator_writes(operator, f"{kube.ns}/couch-b")
    kube.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(list(mine.values())))
    names = [d["metadata"]["name"] for d in mine.values()]
    for name in names:
        kube.wait_condition("replication", name)
        kube.wait_event(name, "Adopted")
    reads = operator_reads(operator, f"{kube.ns}/couch-b")
    wait_for(lambda: operator_reads(operator, f"{kube.ns}/couch-b") >= reads + 6,
             timeout=60, what="a few resyncs of couch-b")

    assert operator_writes(operator, f"{kube.ns}/couch-b") == writes_before
    # this test's jobs only: the session's operator may meanwhile delete what an earlier
    # test in another namespace left behind on the same server
    replicator_writes = [(m, p) for m, p in log.since(mark)
                         if m in WRITES and p.startswith(f"/_replicator/{kube.ns}")]
    assert replicator_writes == [], "the server saw a write to _replicator"
    assert settled(b, set(hand_made), one_shot) == revs, "a job document changed"
    assert b.replicator_docs()[f"{kube.ns}-live"]["note"] == "made by the old cron job"
    a.put(src, "o2", type="order")
    wait_for(lambda: "o2" in b.ids(src), what="the adopted job still replicates")
    status = (kube.get("replication", f"{kube.ns}-live") or {})["status"]
    assert status["externalName"] == f"{kube.ns}-live" and status["phase"] == "Running"

    # round trip: nothing new to export
    text, docs = export(kube, "couch-b")
    assert [d for d in docs if d["spec"]["externalName"].startswith(kube.ns)] == []
    assert_no_secret(secret_values, text)


@pytest.fixture
def reduct_api(reduct_env: tuple[Kube, Any, Any], reduct_a: Any, reduct_b: Any
               ) -> Iterator[tuple[Kube, httpx.Client, httpx.Client]]:
    """The shared ReductStore namespace, with plain clients of the two servers' API."""

    def client(part: Any) -> httpx.Client:
        return httpx.Client(base_url=f"{part.url}/api/v1", timeout=10,
                            headers={"Authorization": f"Bearer {part.token}"})
    with client(reduct_a) as a, client(reduct_b) as b:
        yield reduct_env[0], a, b


def test_reductstore_replications_and_tokens_are_exported_and_adopted_without_a_write(
        reduct_api: tuple[Kube, httpx.Client, httpx.Client], reduct_b: Any,
        operator: OperatorProcess, unique_name: Any, secret_values: set[str]) -> None:
    kube, a, b = reduct_api
    src, dst = unique_name("src"), unique_name("dst")
    assert a.post(f"/b/{src}", json={}).status_code == 200
    assert b.post(f"/b/{dst}", json={}).status_code == 200
    base = {"src_bucket": src, "dst_bucket": dst, "dst_host": reduct_b.url,
            "dst_token": reduct_b.token}
    made = {f"{kube.ns}-sensors": {**base, "entries": ["sensor-*"]},
            f"{kube.ns}-alarms": {**base, "when": {"&level": {"$eq": "alarm"}}}}
    for name, body in made.items():
        assert a.post(f"/replications/{name}", json=body).status_code == 200, name
    assert a.patch(f"/replications/{kube.ns}-alarms/mode",
                   json={"mode": "paused"}).status_code == 200
    token_value = b.post(f"/tokens/{kube.ns}-reader", json={
        "full_access": False, "read": [dst], "write": []}).json()["value"]
    secret_values.add(token_value)
    kube.apply(replication("owned", source={"server": "reduct-a", "database": src},
                           target={"server": "reduct-b", "database": dst}))
    kube.wait_condition("replication", "owned")
    before = {n: a.get(f"/replications/{n}").json()["settings"] for n in made}

    text, docs = export(kube, "reduct-a")
    assert_no_secret(secret_values, text)
    mine = {d["spec"]["externalName"]: d for d in docs
            if d["spec"]["externalName"].startswith(kube.ns)}
    assert set(mine) == set(made), "the owned replication (ns.owned) is not exported"
    sensors = mine[f"{kube.ns}-sensors"]["spec"]
    assert sensors["target"] == {"server": "reduct-b", "database": dst}
    assert sensors["filter"] == {"entries": ["sensor-*"]} and sensors["server"] == "reduct-a"
    alarms = mine[f"{kube.ns}-alarms"]["spec"]
    assert alarms["suspend"] is True and alarms["filter"] == {
        "when": {"&level": {"$eq": "alarm"}}}
    assert "never returns dst_token" in text

    tokens_text, token_docs = export(kube, "reduct-b", "--kind", "Token")
    assert token_docs == [], "a token is never exported as a resource"
    assert f"API token '{kube.ns}-reader'" in tokens_text and "rotate it into a Token" \
        in tokens_text
    assert "init-token" not in tokens_text or "provisioned" in tokens_text
    assert_no_secret(secret_values, tokens_text)

    writes_before = operator_writes(operator, f"{kube.ns}/reduct-a")
    kube.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(list(mine.values())))
    for doc in mine.values():
        kube.wait_condition("replication", doc["metadata"]["name"])
        kube.wait_event(doc["metadata"]["name"], "Adopted")
    reads = operator_reads(operator, f"{kube.ns}/reduct-a")
    wait_for(lambda: operator_reads(operator, f"{kube.ns}/reduct-a") >= reads + 6,
             timeout=60, what="a few resyncs of reduct-a")
    assert operator_writes(operator, f"{kube.ns}/reduct-a") == writes_before
    assert {n: a.get(f"/replications/{n}").json()["settings"] for n in made} == before
    phase = (kube.get("replication", mine[f"{kube.ns}-alarms"]["metadata"]["name"])
             or {})["status"]["phase"]
    assert phase == "Suspended"

    text, docs = export(kube, "reduct-a")
    assert [d for d in docs if d["spec"]["externalName"].startswith(kube.ns)] == []
    b.delete(f"/tokens/{kube.ns}-reader")  # made by hand: removed by hand


class HarborAdmin:
    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.http = httpx.Client(base_url=sim.url, auth=(sim.username, sim.password),
                                 timeout=10, cookies=NoCookies())

    def post(self, path: str, body: dict[str, Any]) -> int:
        response = self.http.post(f"{API}{path}", json=body)
        response.raise_for_status()
        return int(response.headers["location"].rsplit("/", 1)[-1])

    def policies(self) -> dict[int, dict[str, Any]]:
        answer = self.http.get(f"{API}/replication/policies", params={"page_size": 100})
        return {int(p["id"]): p for p in answer.json()}

    def requests(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_sim/requests").json())


def test_harbor_policies_made_by_hand_are_exported_and_adopted_without_a_write(
        cluster: Any, operator: OperatorProcess, namespace: str, harbor_a: Any,
        harbor_b: Any, registry: Any, secret_values: set[str]) -> None:
    kube = Kube(cluster, namespace)
    secret_values.update({harbor_a.password, harbor_b.password, registry.password})
    kube.apply(secret("harbor-a-admin", username=harbor_a.username, password=harbor_a.password),
               secret("harbor-b-admin", username=harbor_b.username, password=harbor_b.password),
               database_server("harbor-a", harbor_a.url, "harbor", "harbor-a-admin"),
               database_server("harbor-b", harbor_b.url, "harbor", "harbor-b-admin"))
    for name in ("harbor-a", "harbor-b"):
        kube.wait_condition("databaseserver", name)
    a = HarborAdmin(harbor_a)
    to_b = a.post("/registries", {
        "name": f"b-{kube.ns}", "type": "harbor", "url": harbor_b.url,
        "credential": {"type": "basic", "access_key": harbor_b.username,
                       "access_secret": harbor_b.password}})
    plain = a.post("/registries", {
        "name": f"mirror-{kube.ns}", "type": "docker-registry", "url": registry.url,
        "credential": {"type": "basic", "access_key": registry.username,
                       "access_secret": registry.password}})
    made = {
        a.post("/replication/policies", {
            "name": f"{kube.ns} push images", "description": "made in the UI",
            "dest_registry": {"id": to_b}, "dest_namespace": "mirror",
            "trigger": {"type": "manual"}, "enabled": True, "override": True,
            "filters": [{"type": "name", "value": "library/**"},
                        {"type": "tag", "value": "v*", "decoration": "matches"}]}),
        a.post("/replication/policies", {
            "name": f"{kube.ns} nightly pull", "src_registry": {"id": plain},
            "trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 0 3 * * *"}},
            "enabled": True, "replicate_deletion": True, "deletion": True,
            "filters": [{"type": "name", "value": "{base/*,tools/*}"},
                        {"type": "label", "value": ["gold"]}]}),
        a.post("/replication/policies", {
            "name": f"{kube.ns} events", "dest_registry": {"id": to_b},
            "trigger": {"type": "event_based"}, "speed": 1024,
            "filters": [{"type": "name", "value": "team/*"},
                        {"type": "resource", "value": "image"}]}),
    }
    before = a.policies()

    text, docs = export(kube, "harbor-a")
    assert_no_secret(secret_values, text)
    mine = {int(d["spec"]["externalName"]): d for d in docs
            if int(d["spec"]["externalName"]) in made}
    assert set(mine) == made
    specs = {policy_id: doc["spec"] for policy_id, doc in mine.items()}
    push, pull, events = sorted(made)
    assert specs[push]["target"] == {"server": "harbor-b", "namespace": "mirror"}
    assert specs[push]["filters"] == [{"type": "tag", "value": "v*"}]
    assert specs[pull]["source"] == {"registry": {"type": "docker-registry",
                                                  "url": registry.url},
                                     "databases": ["base/*", "tools/*"]}
    assert specs[pull]["trigger"] == {"type": "scheduled", "schedule": "0 0 3 * * *"}
    assert specs[pull]["replicateDeletion"] is True and specs[pull]["override"] is False
    assert specs[events]["enabled"] is False and specs[events]["speed"] == 1024
    assert specs[events]["trigger"] == {"type": "eventBased"}
    assert text.count("nothing is written to the server") == 3, text

    a.http.delete("/_sim/requests")
    kube.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(list(mine.values())))
    for doc in mine.values():
        kube.wait_condition("replicationpolicy", doc["metadata"]["name"])
        kube.wait_event(doc["metadata"]["name"], "Adopted")
    wait_for(lambda: sum(1 for r in a.requests() if r["method"] == "GET" and
                         r["path"] == f"{API}/replication/policies") >= 4, timeout=60,
             what="a few resyncs of harbor-a")
    writes = [f"{r['method']} {r['path']}" for r in a.requests() if r["method"] in WRITES]
    assert writes == [], "Harbor saw writes"
    after = a.policies()
    assert {i: after[i] for i in made} == {i: before[i] for i in made}
    assert not any(r["name"].startswith(f"dbops.{kube.ns}.") for r in
                   a.http.get(f"{API}/registries", params={"page_size": 100}).json()), \
        "no registry of the operator's"
    status = (kube.get("replicationpolicy", mine[push]["metadata"]["name"]) or {})["status"]
    assert status["registries"][0]["name"] == f"b-{kube.ns}"

    text, docs = export(kube, "harbor-a")
    assert [d for d in docs if int(d["spec"]["externalName"]) in made] == []


def resource_versions(kube: Kube) -> dict[str, str]:
    out = kube.cluster.kubectl("get", "dbops,secrets", "-n", kube.ns, "-o", "json")
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for o in json.loads(out.stdout)["items"]}


def test_plan_predicts_the_apply_writes_nothing_and_the_operator_does_what_it_said(
        couch_env: tuple[Kube, Couch, Couch], operator: OperatorProcess, unique_name: Any,
        secret_values: set[str], tmp_path: Path) -> None:
    kube, a, b = couch_env
    db = unique_name("plan")
    a.create_db(db)

    def job(name: str, target: str, **extra: Any) -> dict[str, Any]:
        return replication(name, source={"server": "couch-a", "database": db},
                           target={"server": "couch-b", "database": target, "create": True},
                           **extra)
    kube.apply(job("same", f"{db}-same"), job("changed", f"{db}-changed"),
               job("old", f"{db}-old"))
    for name in ("same", "changed", "old"):
        kube.wait_condition("replication", name)
    userinfo = a.url.replace("http://", f"http://{a.part.username}:{a.part.password}@")
    b.http.put(f"/_replicator/{kube.ns}-legacy", json={
        "source": f"{userinfo}/{db}", "target": f"{b.url}/{db}-legacy", "continuous": True,
        "create_target": True}).raise_for_status()
    wait_for(lambda: settled(b, {f"{kube.ns}-legacy"}), what="the hand-made job running")

    files = tmp_path / "gitops"
    files.mkdir()
    (files / "replications.yaml").write_text(yaml.safe_dump_all([
        job("same", f"{db}-same"),
        job("changed", f"{db}-changed", filter={"docIds": ["a", "b"]}),
        job("fresh", f"{db}-fresh"),
        job("adoptee", f"{db}-legacy", externalName=f"{kube.ns}-legacy")]))

    mark_a, mark_b = PouchLog(a.part).mark(), PouchLog(b.part).mark()
    versions = resource_versions(kube)
    planned = cli(kube.cluster, "plan", "-n", kube.ns, "-f", str(files), "--prune", "-o",
                  "json")
    assert planned.returncode == 2, planned.stderr
    table = cli(kube.cluster, "plan", "-n", kube.ns, "-f", str(files), "--prune")
    assert table.returncode == 2 and "to create" in table.stdout, table.stderr
    assert_no_secret(secret_values, planned.stdout, planned.stderr, table.stdout, table.stderr)

    # plan wrote nothing anywhere: not to the servers, not to the cluster
    for log, mark in ((PouchLog(a.part), mark_a), (PouchLog(b.part), mark_b)):
        assert [w for w in log.since(mark) if w[0] in WRITES and not w[1].startswith(
            f"/{db}")] == [], "plan wrote to a server"
    assert resource_versions(kube) == versions, "plan wrote to the cluster"

    rows = {r["name"]: r for r in json.loads(planned.stdout)["rows"]}
    assert {n: (r["resource"], r["action"]) for n, r in rows.items()} == {
        "same": ("unchanged", "nothing"), "changed": ("changed", "update"),
        "fresh": ("new", "create"), "adoptee": ("new", "update"),
        "old": ("pruned", "delete")}
    assert rows["changed"]["fields"] == ["doc_ids"]
    assert rows["changed"]["specFields"] == ["filter"]
    # its credentials are couch-a's, in the URL: rewritten into the header form
    assert rows["adoptee"]["reason"] == "Adopted" and rows["adoptee"]["fields"] == [
        "source", "target"]
    assert rows["old"]["target"] == f"job {kube.ns}.old"

    # apply, and the operator does exactly that
    kube.cluster.kubectl("apply", "-n", kube.ns, "-f", str(files))
    kube.delete("replication", "old")
    expected = {"changed": "Updated", "fresh": "Created", "adoptee": "Adopted",
                "old": "Deleted"}
    for name, reason in expected.items():
        kube.wait_event(name, reason)
    for name in ("same", "changed", "fresh", "adoptee"):
        wait_for(lambda n=name: (kube.get("replication", n) or {}).get("status", {}).get(
            "observedGeneration") == (kube.get("replication", n) or {})["metadata"][
            "generation"], what=f"{name} reconciled")
        kube.wait_condition("replication", name)
    reasons = {e["reason"] for e in kube.events("same")}
    assert reasons <= {"Created"}, f"'same' was planned as nothing, got {reasons}"
    jobs = b.replicator_docs()
    assert jobs[f"{kube.ns}.changed"]["doc_ids"] == ["a", "b"]
    assert f"{kube.ns}.fresh" in jobs and f"{kube.ns}.old" not in jobs
    assert "headers" in jobs[f"{kube.ns}-legacy"]["source"], "credentials in the header form"

    # afterwards nothing is left to do
    wait_for(lambda: cli(kube.cluster, "plan", "-n", kube.ns, "-f", str(files))
             .returncode == 0, timeout=60, what="a plan with nothing to do")


def test_plan_reports_problems_with_exit_code_1(
        couch_env: tuple[Kube, Couch, Couch], tmp_path: Path, secret_values: set[str]) -> None:
    kube, _, _ = couch_env
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all([
        database_server("couch-c", "http://127.0.0.1:9", secret="nowhere"),
        database_server("couch-down", "http://127.0.0.1:9"),
        replication("to-down", source={"server": "couch-a", "database": "x"},
                    target={"server": "couch-down", "database": "y"}),
        replication("wrong-filter", source={"server": "couch-a", "database": "x"},
                    target={"server": "couch-b", "database": "y"},
                    filter={"entries": ["sensor-*"]})]))
    result = cli(kube.cluster, "plan", "-n", kube.ns, "-f", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "Secret 'nowhere' (spec.auth.secretRef) not found" in out
    assert re.search(r"error\s+Replication\s+\S+/to-down.*BackendUnavailable", out), out
    assert "spec.filter.entries is not a CouchDB filter" in out
    assert_no_secret(secret_values, out, result.stderr)
    bad = cli(kube.cluster, "plan", "-n", kube.ns, "-f", str(tmp_path / "missing.yaml"))
    assert bad.returncode == 1 and "no such file" in bad.stderr


def test_the_cli_is_a_kubectl_plugin(couch_env: tuple[Kube, Couch, Couch],
                                     tmp_path: Path) -> None:
    kube, _, _ = couch_env
    plugin = Path(sys.executable).parent / "kubectl-dbops"
    assert plugin.exists(), "reinstall the package (pip install -e .) for the kubectl plugin"
    env = {**kube.cluster.env, "PYTHONPATH": str(ROOT / "operator"),
           "PATH": f"{kube.cluster.bin_dir}{os.pathsep}{plugin.parent}"}
    listed = subprocess.run(["kubectl", "plugin", "list"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert str(plugin) in listed.stdout, listed.stdout + listed.stderr
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(replication(
        "via-plugin", source={"server": "couch-a", "database": "x"},
        target={"server": "couch-b", "database": "y"})))
    planned = subprocess.run(["kubectl", "dbops", "plan", "-n", kube.ns, "-f", str(path)],
                             capture_output=True, text=True, env=env, timeout=120)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert re.search(r"create\s+Replication\s+\S+/via-plugin", planned.stdout)
    exported = subprocess.run(["kubectl", "dbops", "export", "-n", kube.ns, "--server",
                               "couch-b", "-o", "json"], capture_output=True, text=True,
                              env=env, timeout=120)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["kind"] == "List"
    usage = subprocess.run(["kubectl", "dbops", "--help"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert usage.stdout.startswith("usage: kubectl dbops")


def test_plan_on_eden_reads_only_and_export_says_it_is_not_available(
        cluster: Any, crds: None, namespace: str, eden_a: Any, eden_b: Any,
        tmp_path: Path, secret_values: set[str]) -> None:
    """DatabaseServers and Secrets in the files count for the resources that name
    them; Eden's probe (a write) is not run; the Eden simulators see no write."""
    kube = Kube(cluster, namespace)
    secret_values.update({eden_a.password, eden_b.password})
    servers = [secret("eden-a-admin", username=eden_a.email, password=eden_a.password),
               secret("eden-b-admin", username=eden_b.email, password=eden_b.password),
               database_server("eden-a", eden_a.url, type_="eden", secret="eden-a-admin"),
               database_server("eden-b", eden_b.url, type_="eden", secret="eden-b-admin")]
    path = tmp_path / "eden.yaml"
    path.write_text(yaml.safe_dump_all([*servers, replication(
        "orgs", source={"server": "eden-a", "database": "org_organisation"},
        target={"server": "eden-b", "database": "org_organisation"})]))
    for sim in (eden_a, eden_b):
        sim.store.requests.clear()
    planned = cli(cluster, "plan", "-n", kube.ns, "-f", str(path), "-o", "json")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(planned.stdout)["rows"]}
    assert rows[("Replication", "orgs")]["action"] == "create"
    assert rows[("Replication", "orgs")]["server"] == "eden-b"
    assert "not probed" in rows[("DatabaseServer", "eden-a")]["message"]
    for sim in (eden_a, eden_b):
        assert [r for r in sim.store.requests.list() if r.method in WRITES] == []
    assert eden_b.store.requests.list("GET"), "the plan read the job server"
    assert_no_secret(secret_values, planned.stdout, planned.stderr)

    kube.apply(*servers[::2])
    result = cli(cluster, "export", "-n", kube.ns, "--server", "eden-a")
    assert result.returncode == 0, result.stderr
    assert "not available yet" in result.stdout
    assert [d for d in yaml.safe_load_all(result.stdout) if d] == []


def reviewer_kubeconfig(kube: Kube, path: Path, resources: str) -> dict[str, str]:
    """An identity that may only get and list `resources` in the namespace."""
    cluster, ns = kube.cluster, kube.ns
    role = cluster.kubectl("create", "role", "reviewer", "-n", ns, "--verb=get,list",
                           f"--resource={resources}", "--dry-run=client", "-o", "yaml").stdout
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=role)
    cluster.kubectl("create", "serviceaccount", "reviewer", "-n", ns, check=False)
    cluster.kubectl("create", "rolebinding", "reviewer", "-n", ns, "--role=reviewer",
                    f"--serviceaccount={ns}:reviewer", check=False)
    token = cluster.kubectl("create", "token", "reviewer", "-n", ns,
                            "--duration=1h").stdout.strip()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "r",
        "clusters": [{"name": "c", "cluster": {
            "server": cluster.server,
            "certificate-authority": str(cluster.stack.apiserver.pki / "ca.crt")}}],
        "users": [{"name": "r", "user": {"token": token}}],
        "contexts": [{"name": "r", "context": {"cluster": "c", "user": "r",
                                               "namespace": ns}}]}))
    return {**cluster.env, "KUBECONFIG": str(path), "PYTHONPATH": str(ROOT / "operator")}


def test_plan_needs_only_get_and_list_and_says_what_it_may_not_read(
        couch_env: tuple[Kube, Couch, Couch], tmp_path: Path) -> None:
    kube, _, _ = couch_env
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(replication(
        "reviewed", source={"server": "couch-a", "database": "x"},
        target={"server": "couch-b", "database": "y"})))
    kinds = ",".join(f"{k}.replication.dbops.dev" for k in (
        "databaseservers", "replications", "replicationpolicies", "tokens"))
    command = [sys.executable, "-m", "replication_operator", "plan", "-f", str(path)]

    env = reviewer_kubeconfig(kube, tmp_path / "reader.yaml", f"{kinds},secrets")
    planned = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert re.search(r"create\s+Replication\s+\S+/reviewed", planned.stdout)
    assert "CRDs cannot be read" in planned.stdout, "no cluster-wide read was granted"

    env = reviewer_kubeconfig(kube, tmp_path / "no-secrets.yaml", kinds)
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Forbidden: the cluster refused a read" in refused.stdout
    assert "Traceback" not in refused.stderr
