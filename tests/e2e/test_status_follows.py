"""Status follows the servers, not the resync: a CouchDB job's completion through the
`_replicator` change feed, a Harbor execution through polling while it runs. Proven
with an operator whose resync is ten minutes, so nothing else could have reported it;
and the feed's state on the DatabaseServer, broken while the server is down and live
again after."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_support import (
    Couch,
    Kube,
    OperatorProcess,
    database_server,
    replication,
    secret,
    stopped,
    wait_for,
)

SLOW_RESYNC = 600.0  # no resync happens during these tests
SOURCE_DOCS = 3000  # a one-shot job that runs long enough to be seen running first


@pytest.fixture
def slow(cluster: Any, crds: None, tmp_path: Any) -> Iterator[tuple[Kube, OperatorProcess]]:
    """A namespace of its own (outside the session operator's `t*`) and an operator
    that watches only it, with a resync of ten minutes."""
    ns = f"slow-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns)
    operator = OperatorProcess(cluster, tmp_path, resync=SLOW_RESYNC,
                               scope=["--namespace", ns])
    operator.start()
    try:
        yield Kube(cluster, ns), operator
    finally:
        for kind in ("replications", "replicationpolicies"):  # their jobs go too
            cluster.kubectl("delete", kind, "--all", "-n", ns, "--timeout=60s", check=False)
        operator.stop()
        # nothing left to remove the finalizers: the namespace goes with its resources
        for kind in ("replications", "replicationpolicies", "databaseservers"):
            out = cluster.kubectl("get", kind, "-n", ns, "-o", "name", check=False)
            for name in out.stdout.split():
                cluster.kubectl("patch", name, "-n", ns, "--type=merge", "-p",
                                '{"metadata":{"finalizers":null}}', check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def couch_servers(kube: Kube, couch_a: Any, couch_b: Any) -> tuple[Couch, Couch]:
    kube.apply(secret("couch-a-admin", username=couch_a.username, password=couch_a.password),
               secret("couch-b-admin", username=couch_b.username, password=couch_b.password),
               database_server("couch-a", couch_a.url, secret="couch-a-admin"),
               database_server("couch-b", couch_b.url, secret="couch-b-admin"))
    for name in ("couch-a", "couch-b"):
        kube.wait_condition("databaseserver", name)
    return Couch(couch_a), Couch(couch_b)


def phase(kube: Kube, name: str) -> str | None:
    return ((kube.get("replication", name) or {}).get("status") or {}).get("phase")


def feed(kube: Kube, server: str) -> dict[str, Any]:
    status = (kube.get("databaseserver", server) or {}).get("status") or {}
    return dict(status.get("changeFeed") or {})


def test_a_finished_one_shot_job_shows_through_the_change_feed(
        slow: tuple[Kube, OperatorProcess], couch_a: Any, couch_b: Any,
        unique_name: Any) -> None:
    kube, _ = slow
    a, b = couch_servers(kube, couch_a, couch_b)
    db = unique_name("feed")
    a.create_db(db)
    docs = [{"_id": f"d{i:05d}"} for i in range(SOURCE_DOCS)]
    a.http.post(f"/{db}/_bulk_docs", json={"docs": docs}, timeout=60).raise_for_status()
    kube.apply(replication("once", source={"server": "couch-a", "database": db},
                           target={"server": "couch-b", "database": db, "create": True},
                           continuous=False))
    wait_for(lambda: phase(kube, "once") == "Running", what="phase Running")
    wait_for(lambda: phase(kube, "once") == "Completed", timeout=120,
             what="phase Completed (only the change feed can say so before the resync)")
    status = (kube.get("replication", "once") or {})["status"]
    assert status["progress"]["docsWritten"] == SOURCE_DOCS
    assert len(b.ids(db)) == SOURCE_DOCS
    live = feed(kube, "couch-b")
    assert live["live"] is True and "_replicator/_changes" in live["message"]
    assert "live" not in feed(kube, "couch-a")  # no job runs there: nothing to follow


def test_a_running_harbor_execution_is_polled_until_it_ends(
        slow: tuple[Kube, OperatorProcess], harbor_a: Any, harbor_b: Any) -> None:
    kube, _ = slow
    kube.apply(secret("harbor-a-admin", username=harbor_a.username, password=harbor_a.password),
               secret("harbor-b-admin", username=harbor_b.username, password=harbor_b.password),
               database_server("harbor-a", harbor_a.url, type_="harbor", secret="harbor-a-admin"),
               database_server("harbor-b", harbor_b.url, type_="harbor", secret="harbor-b-admin"))
    with httpx.Client(base_url=harbor_a.url, auth=(harbor_a.username, harbor_a.password),
                      timeout=10) as admin:
        admin.post("/_sim/artifacts", json={"project": "library", "repository": "busybox",
                                            "tag": "v1"}).raise_for_status()
    with httpx.Client(base_url=harbor_b.url, auth=(harbor_b.username, harbor_b.password),
                      timeout=10) as admin:
        admin.post("/api/v2.0/projects", json={"project_name": "mirror",
                                               "metadata": {"public": "false"}})
    for name in ("harbor-a", "harbor-b"):
        kube.wait_condition("databaseserver", name)
    kube.apply({"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "ReplicationPolicy",
                "metadata": {"name": "images"},
                "spec": {"source": {"server": "harbor-a", "databases": ["library/busybox"]},
                         "target": {"server": "harbor-b", "namespace": "mirror"}}})
    kube.wait_condition("replicationpolicy", "images")
    kube.annotate("replicationpolicy", "images", "replication.dbops.dev/run-requested=1")

    def last() -> dict[str, Any]:
        status = (kube.get("replicationpolicy", "images") or {}).get("status") or {}
        return dict(status.get("lastExecution") or {})

    wait_for(lambda: last().get("id"), what="the execution in status")
    wait_for(lambda: last().get("status") == "Succeed", timeout=120,
             what="the execution's end (only polling while it runs can say so)")


def test_the_feed_is_reported_broken_while_the_server_is_down(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any) -> None:
    kube, a, b = couch_env
    db = unique_name("feedstate")
    a.create_db(db)
    kube.apply(replication("live", source={"server": "couch-a", "database": db},
                           target={"server": "couch-b", "database": db, "create": True}))
    kube.wait_condition("replication", "live")
    wait_for(lambda: feed(kube, "couch-b").get("live") is True, what="the feed live")
    with stopped(b.part):
        broken = wait_for(lambda: feed(kube, "couch-b").get("live") is False and
                          feed(kube, "couch-b"), what="the feed reported broken")
        assert "reconnecting" in broken["message"] and "resync" in broken["message"]
    wait_for(lambda: feed(kube, "couch-b").get("live") is True, timeout=120,
             what="the feed live again")
    kube.wait_condition("replication", "live")
