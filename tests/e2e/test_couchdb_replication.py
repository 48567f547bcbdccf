"""CouchDB-protocol replications end to end: real API server, two pouchdb-servers,
the operator as its own process."""

from __future__ import annotations

import json
import time
from typing import Any

from e2e_support import (
    Couch,
    Kube,
    OperatorProcess,
    metric_sum,
    replication,
    secret,
    stopped,
    wait_for,
)

KIND = "replication"


def spec(src: str, dst: str, **extra: Any) -> dict[str, Any]:
    return {"source": {"server": "couch-a", "database": src},
            "target": {"server": "couch-b", "database": dst, "create": True}, **extra}


def ready_replication(kube: Kube, a: Couch, name: str, db: str) -> None:
    """A continuous couch-a → couch-b replication of a fresh database, Ready."""
    a.create_db(db)
    kube.apply(replication(name, **spec(db, db)))
    kube.wait_condition(KIND, name)


def test_one_shot_replication_completes_and_documents_arrive(
        couch_env: tuple[Kube, Couch, Couch], operator: OperatorProcess,
        unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("orders")
    a.create_db(db)
    for i in range(5):
        a.put(db, f"order-{i}", type="order", n=i)
    kube.apply(replication("once", **spec(db, db, continuous=False)))
    kube.wait_condition(KIND, "once")
    wait_for(lambda: (kube.get(KIND, "once") or {}).get("status", {}).get("phase") ==
             "Completed", what="phase Completed")
    assert b.ids(db) == {f"order-{i}" for i in range(5)}
    status = kube.get(KIND, "once")["status"]  # type: ignore[index]
    assert status["externalName"] == f"{kube.ns}.once"
    assert status["progress"]["docsWritten"] == 5
    assert status["observedGeneration"] == kube.get(KIND, "once")["metadata"]["generation"]  # type: ignore[index]
    kube.wait_event("once", "Created")

    # a quiet cluster makes no API writes: several resyncs later nothing was written
    version = kube.get(KIND, "once")["metadata"]["resourceVersion"]  # type: ignore[index]
    window_end = time.monotonic() + 3 * operator.resync
    wait_for(lambda: time.monotonic() >= window_end, timeout=4 * operator.resync,
             what="three resync intervals")
    assert kube.get(KIND, "once")["metadata"]["resourceVersion"] == version  # type: ignore[index]


def test_continuous_replication_follows_a_selector_change(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("mixed")
    a.create_db(db)
    a.put(db, "o1", type="order")
    a.put(db, "u1", type="user")
    kube.apply(replication("live", **spec(db, db, filter={"selector": {"type": "order"}})))
    kube.wait_condition(KIND, "live")
    wait_for(lambda: "o1" in b.ids(db), what="o1 replicated")
    a.put(db, "o2", type="order")
    wait_for(lambda: "o2" in b.ids(db), what="o2 replicated continuously")
    assert "u1" not in b.ids(db)

    kube.apply(replication("live", **spec(db, db, filter={"selector": {"type": "user"}})))
    kube.wait_event("live", "Updated")
    a.put(db, "u2", type="user")
    wait_for(lambda: {"u1", "u2"} <= b.ids(db), what="users replicated after the change")
    kube.wait_condition(KIND, "live")


def test_delete_policy_removes_the_job_and_orphan_keeps_it(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("del")
    a.create_db(db)
    kube.apply(replication("gone", **spec(db, db)),
               replication("kept", **spec(db, db + "-copy", deletionPolicy="Orphan")))
    kube.wait_condition(KIND, "gone")
    kube.wait_condition(KIND, "kept")
    assert {f"{kube.ns}.gone", f"{kube.ns}.kept"} <= set(b.replicator_docs())

    kube.delete(KIND, "gone")
    kube.delete(KIND, "kept")
    wait_for(lambda: kube.get(KIND, "gone") is None and kube.get(KIND, "kept") is None,
             what="both resources deleted")
    jobs = b.replicator_docs()
    assert f"{kube.ns}.gone" not in jobs
    assert f"{kube.ns}.kept" in jobs
    kube.wait_event("gone", "Deleted")
    kube.wait_event("kept", "Orphaned")
    kube.wait_event("couch-b", "Connected")


def test_job_removed_or_edited_by_hand_is_put_back(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("drift")
    ready_replication(kube, a, "drifty", db)
    job_id = f"{kube.ns}.drifty"
    doc = b.replicator_docs()[job_id]
    b.http.delete(f"/_replicator/{job_id}", params={"rev": doc["_rev"]}).raise_for_status()
    kube.wait_event("drifty", "DriftCorrected")
    wait_for(lambda: job_id in b.replicator_docs(), what="job restored")
    a.put(db, "after-restore", v=1)
    wait_for(lambda: "after-restore" in b.ids(db), what="restored job replicates")


def test_server_down_is_backend_unavailable_and_recovers_without_restart(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("outage")
    ready_replication(kube, a, "outage", db)
    with stopped(b.part):
        kube.wait_condition(KIND, "outage", status="False", reason="BackendUnavailable")
        kube.wait_condition("databaseserver", "couch-b", status="False",
                            reason="BackendUnavailable")
    kube.wait_condition("databaseserver", "couch-b")
    kube.wait_condition(KIND, "outage")


def test_a_changed_secret_takes_effect_without_restarting_the_operator(
        couch_env: tuple[Kube, Couch, Couch]) -> None:
    kube, a, _ = couch_env
    kube.apply(secret("couch-a-admin", username=a.part.username, password="not-the-password"))
    cond = kube.wait_condition("databaseserver", "couch-a", status="False",
                               reason="CredentialsRefused")
    assert "not-the-password" not in json.dumps(cond)
    assert "Secret 'couch-a-admin'" in cond["message"]
    kube.apply(secret("couch-a-admin", username=a.part.username, password=a.part.password))
    kube.wait_condition("databaseserver", "couch-a")


def test_killed_operator_restarts_without_duplicate_jobs(
        couch_env: tuple[Kube, Couch, Couch], operator: OperatorProcess,
        unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("crash")
    a.create_db(db)
    names = [f"crash-{i}" for i in range(6)]
    kube.apply(*[replication(n, **spec(db, f"{db}-{i}")) for i, n in enumerate(names)])
    wait_for(lambda: any(f"{kube.ns}.{n}" in b.replicator_docs() for n in names),
             what="first job created")
    operator.kill()
    operator.start()
    for n in names:
        kube.wait_condition(KIND, n)
    jobs = [d for d in b.replicator_docs().values()
            if d.get("dbops_owner", "").startswith(f"{kube.ns}/crash-")]
    assert sorted(d["dbops_owner"] for d in jobs) == sorted(f"{kube.ns}/{n}" for n in names)


def test_filter_for_another_backend_is_stalled_with_the_field_named(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, _ = couch_env
    db = unique_name("bad")
    a.create_db(db)
    kube.apply(replication("wrongfilter", **spec(db, db, filter={"entries": ["x*"]})))
    cond = kube.wait_condition(KIND, "wrongfilter", "Stalled", "True")
    assert "spec.filter.entries" in cond["message"]


def test_requests_per_resync_do_not_grow_with_the_number_of_replications(
        couch_env: tuple[Kube, Couch, Couch], operator: OperatorProcess,
        unique_name: Any) -> None:
    kube, a, _ = couch_env
    db = unique_name("scale")
    a.create_db(db)
    server = f"{kube.ns}/couch-b"

    def requests_over(resyncs: int) -> float:
        """Requests the operator sent to couch-b during a window of `resyncs` intervals."""
        wait_for(lambda: _quiet(kube), timeout=180, what="all replications settled")
        before = metric_sum(operator.metrics(), "replication_operator_backend_requests_total",
                            server=server)
        window_end = time.monotonic() + resyncs * operator.resync
        wait_for(lambda: time.monotonic() >= window_end, timeout=resyncs * operator.resync + 5,
                 what="measurement window")
        return metric_sum(operator.metrics(), "replication_operator_backend_requests_total",
                          server=server) - before

    kube.apply(replication("scale-0", **spec(db, f"{db}-0")))
    one = requests_over(3)
    kube.apply(*[replication(f"scale-{i}", **spec(db, f"{db}-{i}")) for i in range(1, 50)])
    fifty = requests_over(3)
    print(f"requests to couch-b over 3 resyncs: 1 replication={one}, 50 replications={fifty}")
    assert fifty <= max(3 * one, one + 6), (one, fifty)


def _quiet(kube: Kube) -> bool:
    out = kube.cluster.kubectl("get", KIND, "-n", kube.ns, "-o", "json")
    items = json.loads(out.stdout)["items"]
    return all(any(c["type"] == "Ready" and c["status"] == "True"
                   for c in (i.get("status") or {}).get("conditions", [])) for i in items
               if not i["metadata"]["name"].startswith("wrong"))


def test_deletion_blocked_by_a_down_server_is_reported_and_can_be_forced(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("stuck")
    ready_replication(kube, a, "stuck", db)
    with stopped(b.part):
        kube.delete(KIND, "stuck")
        cond = kube.wait_condition(KIND, "stuck", status="False", reason="CleanupBlocked",
                                   timeout=150)
        assert "replication.dbops.dev/skip-cleanup" in cond["message"]
        kube.annotate(KIND, "stuck", "replication.dbops.dev/skip-cleanup=true")
        wait_for(lambda: kube.get(KIND, "stuck") is None, timeout=150,
                 what="forced deletion")
        kube.wait_event("stuck", "CleanupSkipped")
