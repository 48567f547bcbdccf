"""ReplicationPolicy fan-out end to end: a policy on CouchDB (PouchDB Server) or
ReductStore expands into one child Replication per matching database, on the real API
server with the operator as its own process."""

from __future__ import annotations

import json
import time
from typing import Any

from e2e_support import (
    Couch,
    Kube,
    OperatorProcess,
    Reduct,
    replication,
    wait_for,
)

POLICY = "replicationpolicy"
LABEL = "replication.dbops.dev/policy"


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "ReplicationPolicy",
            "metadata": {"name": name}, "spec": spec}


def couch_policy(name: str, patterns: list[str], **extra: Any) -> dict[str, Any]:
    return policy(name, **{"source": {"server": "couch-a", "databases": patterns},
                           "target": {"server": "couch-b", "databasePrefix": "eu-",
                                      "create": True},
                           "trigger": {"type": "continuous"}, **extra})


def children(kube: Kube, name: str) -> dict[str, dict[str, Any]]:
    out = kube.cluster.kubectl("get", "replications", "-n", kube.ns, "-l", f"{LABEL}={name}",
                               "-o", "json")
    return {i["metadata"]["name"]: i for i in json.loads(out.stdout)["items"]}


def ready(obj: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def status(kube: Kube, name: str) -> dict[str, Any]:
    return dict((kube.get(POLICY, name) or {}).get("status") or {})


def databases_of(items: dict[str, dict[str, Any]]) -> set[str]:
    return {i["spec"]["source"]["database"] for i in items.values()}


def test_couchdb_policy_keeps_one_replication_per_matching_database(
        couch_env: tuple[Kube, Couch, Couch], operator: OperatorProcess,
        unique_name: Any) -> None:
    kube, a, b = couch_env
    base = unique_name("orders")
    dbs = [f"{base}-{i}" for i in (1, 2, 3)]
    for db in [*dbs, f"{base}-tmp-1", unique_name("other")]:
        a.create_db(db)
        a.put(db, "doc-1", type="order")
    kube.apply(couch_policy("orders", [f"{base}-*", f"!{base}-tmp-*"]))
    kube.wait_condition(POLICY, "orders", timeout=120)
    st = status(kube, "orders")
    assert (st["matched"], st["ready"], st["failed"]) == (3, 3, 0)
    items = children(kube, "orders")
    assert databases_of(items) == set(dbs)
    for item in items.values():
        assert ready(item), item["status"]
        owner = item["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "ReplicationPolicy" and owner["controller"] is True
        assert item["spec"]["target"]["database"] == "eu-" + item["spec"]["source"]["database"]
        assert len(item["metadata"]["name"]) <= 63
    for db in dbs:
        wait_for(lambda db=db: "doc-1" in b.ids(f"eu-{db}"), what=f"data of {db} on couch-b")
    kube.wait_event("orders", "Created")

    # a new matching database gets its child within one resync
    new = f"{base}-4"
    started = time.monotonic()
    a.create_db(new)
    a.put(new, "doc-1", type="order")
    wait_for(lambda: new in databases_of(children(kube, "orders")), timeout=60,
             what="a child for the new database")
    delay = time.monotonic() - started
    print(f"new database picked up after {delay:.1f}s (resync {operator.resync}s)")
    assert delay <= 2 * operator.resync + 5, delay
    wait_for(lambda: "doc-1" in b.ids(f"eu-{new}"), what="data of the new database")
    wait_for(lambda: status(kube, "orders").get("ready") == 4, what="4 ready")

    # a database that disappears loses its child, and its job
    gone = dbs[1]
    gone_child = next(n for n, i in children(kube, "orders").items()
                      if i["spec"]["source"]["database"] == gone)
    a.http.delete(f"/{gone}").raise_for_status()
    wait_for(lambda: gone_child not in children(kube, "orders"), timeout=60,
             what="the child of the deleted database removed")
    wait_for(lambda: f"{kube.ns}.{gone_child}" not in b.replicator_docs(),
             what="its job removed")
    kube.wait_event("orders", "Removed")

    # a child edited by hand is put back; one deleted by hand comes back
    edited = next(iter(children(kube, "orders")))
    kube.cluster.kubectl("patch", "replication", edited, "-n", kube.ns, "--type=merge", "-p",
                         json.dumps({"spec": {"filter": {"docIds": ["nothing"]}}}))
    wait_for(lambda: "filter" not in (kube.get("replication", edited) or {"spec": {
        "filter": 1}})["spec"], what="the hand edit put back")
    kube.wait_event("orders", "DriftCorrected")
    uid = (kube.get("replication", edited) or {})["metadata"]["uid"]
    kube.delete("replication", edited)

    def back() -> bool:
        obj = kube.get("replication", edited) or {"metadata": {"uid": uid}}
        return obj["metadata"]["uid"] != uid and ready(obj)

    wait_for(back, timeout=90, what="the deleted child back and Ready")

    # the pattern changes: the children follow
    kube.apply(couch_policy("orders", [f"{base}-1"]))
    wait_for(lambda: databases_of(children(kube, "orders")) == {dbs[0]}, timeout=60,
             what="children follow the new pattern")
    kube.wait_condition(POLICY, "orders")
    assert status(kube, "orders")["matched"] == 1

    # deleting the policy (Delete) removes the children and their jobs
    remaining = next(iter(children(kube, "orders")))
    kube.delete(POLICY, "orders")
    wait_for(lambda: kube.get(POLICY, "orders") is None and not children(kube, "orders"),
             timeout=90, what="policy and children gone")
    assert f"{kube.ns}.{remaining}" not in b.replicator_docs()
    kube.wait_event("orders", "Deleted")


def test_orphan_policy_leaves_the_jobs(couch_env: tuple[Kube, Couch, Couch],
                                       operator: OperatorProcess, unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("keep")
    a.create_db(db)
    kube.apply(couch_policy("keeper", [db], deletionPolicy="Orphan"))
    kube.wait_condition(POLICY, "keeper", timeout=90)
    (child,) = children(kube, "keeper")
    wait_for(lambda: status(kube, "keeper").get("ready") == 1, what="1 ready")

    # a quiet policy makes no API writes: several resyncs later nothing was written
    versions = (kube.get(POLICY, "keeper") or {})["metadata"]["resourceVersion"], \
        children(kube, "keeper")[child]["metadata"]["resourceVersion"]
    window_end = time.monotonic() + 3 * operator.resync
    wait_for(lambda: time.monotonic() >= window_end, timeout=4 * operator.resync,
             what="three resync intervals")
    assert ((kube.get(POLICY, "keeper") or {})["metadata"]["resourceVersion"],
            children(kube, "keeper")[child]["metadata"]["resourceVersion"]) == versions
    assert f"{kube.ns}.{child}" in b.replicator_docs()
    kube.delete(POLICY, "keeper")
    wait_for(lambda: kube.get(POLICY, "keeper") is None and not children(kube, "keeper"),
             timeout=90, what="policy and children gone")
    assert f"{kube.ns}.{child}" in b.replicator_docs()


def test_a_pattern_that_matches_nothing_is_ready_and_says_so(
        couch_env: tuple[Kube, Couch, Couch]) -> None:
    kube, _, _ = couch_env
    kube.apply(couch_policy("typo", ["ordesr-*"]))
    cond = kube.wait_condition(POLICY, "typo", reason="NoMatch")
    assert "ordesr-*" in cond["message"] and "0 matched" in cond["message"]
    assert status(kube, "typo")["matched"] == 0


def test_bad_input_is_stalled_naming_the_field(couch_env: tuple[Kube, Couch, Couch],
                                                unique_name: Any) -> None:
    kube, a, _ = couch_env
    db = unique_name("bad")
    a.create_db(db)
    cases = {
        "wrongfilter": ({"filter": {"entries": ["x*"]}}, "spec.filter.entries"),
        "harborfield": ({"filters": [{"type": "tag", "value": "v*"}]}, "spec.filters"),
        "upperprefix": ({"target": {"server": "couch-b", "databasePrefix": "EU-"}},
                        "spec.target.databasePrefix"),
        "badglob": ({"source": {"server": "couch-a", "databases": ["a]b"]}},
                    "spec.source.databases[0]"),
    }
    for name, (extra, _) in cases.items():
        kube.apply({**couch_policy(name, [db]), "spec": {**couch_policy(name, [db])["spec"],
                                                          **extra}})
    for name, (_, field) in cases.items():
        cond = kube.wait_condition(POLICY, name, "Stalled", "True")
        assert field in cond["message"], (name, cond)
        assert not children(kube, name)


def test_a_name_taken_by_another_replication_is_reported_not_taken_over(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, _ = couch_env
    db = unique_name("taken")
    a.create_db(db)
    name = f"mine-{db}"
    kube.apply(replication(name, source={"server": "couch-a", "database": db},
                           target={"server": "couch-b", "database": "handmade", "create": True}))
    kube.apply(couch_policy("mine", [db]))
    cond = kube.wait_condition(POLICY, "mine", "Stalled", "True", reason="OwnedByAnother")
    assert name in cond["message"]
    hand = kube.get("replication", name) or {}
    assert hand["spec"]["target"]["database"] == "handmade"
    assert not hand["metadata"].get("ownerReferences")


def test_scheduled_reductstore_policy_backs_up_buckets_and_records_its_runs(
        reduct_env: tuple[Kube, Reduct, Reduct], unique_name: Any) -> None:
    kube, a, b = reduct_env
    base = unique_name("sensor")
    buckets = [f"{base}-{i}" for i in (1, 2)]
    for bucket in buckets:
        a.bucket(bucket)  # the target buckets are made by the children (target.create)
    kube.apply(policy("backup", source={"server": "reduct-a", "databases": [f"{base}-*"]},
                      target={"server": "reduct-b", "databasePrefix": "bk-"},
                      trigger={"type": "scheduled", "schedule": "*/15 * * * * *"},
                      historyLimit=3))
    kube.wait_condition(POLICY, "backup", timeout=90)
    items = children(kube, "backup")
    assert databases_of(items) == set(buckets)
    # between runs the replications are paused (they queue what is written)
    wait_for(lambda: all(r.get("mode") == "paused" for n, r in a.replications().items()
                         if n.startswith(f"{kube.ns}__backup-")) and len(
        [n for n in a.replications() if n.startswith(f"{kube.ns}__backup-")]) == 2,
        what="paused replications on reduct-a")
    stamps = {bucket: a.write(bucket, "temp", b"21.5") for bucket in buckets}

    def finished_runs() -> list[dict[str, Any]]:
        return [e for e in status(kube, "backup").get("executions") or []
                if e["status"] in ("Succeed", "Failed")]

    wait_for(lambda: finished_runs(), timeout=60, what="a finished run")
    run = finished_runs()[0]
    assert run["status"] == "Succeed" and run["trigger"] == "scheduled", run
    assert (run["total"], run["succeeded"], run["failed"]) == (2, 2, 0), run
    for bucket, ts in stamps.items():
        wait_for(lambda bucket=bucket, ts=ts: b.read(f"bk-{bucket}", "temp", ts) == b"21.5",
                 what=f"record of {bucket} backed up")
    wait_for(lambda: all(r.get("mode") == "paused" for n, r in a.replications().items()
                         if n.startswith(f"{kube.ns}__backup-")), what="paused after the run")
    kube.wait_event("backup", "ExecutionSucceeded")
    # a second run, recorded newest first
    later = {bucket: a.write(bucket, "temp", b"22.0") for bucket in buckets}
    wait_for(lambda: len(finished_runs()) >= 2 and finished_runs()[0]["id"] > run["id"],
             timeout=60, what="a second run")
    for bucket, ts in later.items():
        wait_for(lambda bucket=bucket, ts=ts: b.read(f"bk-{bucket}", "temp", ts) == b"22.0",
                 what=f"second record of {bucket} backed up")
    st = status(kube, "backup")
    assert st["nextRunTime"] and st["lastExecution"]["id"] == st["executions"][0]["id"]

    kube.delete(POLICY, "backup")
    wait_for(lambda: kube.get(POLICY, "backup") is None, timeout=90, what="policy gone")
    assert not [n for n in a.replications() if n.startswith(f"{kube.ns}__backup-")]


def test_couchdb_policy_runs_on_request_as_one_shot_jobs(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, b = couch_env
    base = unique_name("nightly")
    dbs = [f"{base}-{i}" for i in (1, 2)]
    for db in dbs:
        a.create_db(db)
        a.put(db, "before", v=1)
    kube.apply(couch_policy("nightly", [f"{base}-*"], trigger={"type": "manual"}))
    kube.wait_condition(POLICY, "nightly", timeout=90)
    # before the first run: a one-shot child each, suspended (no job yet)
    items = children(kube, "nightly")
    assert {(i["spec"]["continuous"], i["spec"]["suspend"]) for i in items.values()} == \
        {(False, True)}
    assert not any(f"{kube.ns}.{n}" in b.replicator_docs() for n in items)

    def runs() -> list[dict[str, Any]]:
        return list(status(kube, "nightly").get("executions") or [])

    kube.annotate(POLICY, "nightly", "replication.dbops.dev/run-requested=first")
    wait_for(lambda: runs() and runs()[0]["status"] == "Succeed", timeout=90,
             what="first run succeeded")
    first = runs()[0]
    assert (first["trigger"], first["total"], first["succeeded"]) == ("manual", 2, 2), first
    for db in dbs:
        assert "before" in b.ids(f"eu-{db}")
    items = children(kube, "nightly")
    assert {i["status"]["phase"] for i in items.values()} == {"Completed"}
    kube.wait_event("nightly", "RunStarted")
    kube.wait_event("nightly", "ExecutionSucceeded")

    for db in dbs:
        a.put(db, "after", v=2)
    kube.annotate(POLICY, "nightly", "replication.dbops.dev/run-requested=second")
    wait_for(lambda: len(runs()) == 2 and runs()[0]["status"] == "Succeed", timeout=90,
             what="second run succeeded")
    for db in dbs:
        assert "after" in b.ids(f"eu-{db}"), db
    st = status(kube, "nightly")
    assert st["lastRunRequest"] == "second" and st["lastExecution"]["id"] == runs()[0]["id"]
    assert runs()[0]["id"] > runs()[1]["id"]
