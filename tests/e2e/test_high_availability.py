"""Two replicas with leader election (a Lease), and shards by label selector: the real API
server, the real pouchdb-servers, operators as their own processes.

These run in namespaces outside the `t*` scope of the session's operator, so only the
operators started here reconcile them.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    Couch,
    Kube,
    OperatorProcess,
    database_server,
    replication,
    secret,
    wait_for,
)


@pytest.fixture
def ha_namespace(cluster: Any, crds: None) -> Iterator[str]:
    name = f"ha-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def lease_holder(kube: Kube) -> str:
    out = kube.cluster.kubectl("get", "lease", "replication-operator", "-n", kube.ns, "-o",
                               "json", check=False)
    if out.returncode != 0:
        return ""
    return str(json.loads(out.stdout)["spec"].get("holderIdentity") or "")


def replica(cluster: Any, tmp: Path, ns: str, *extra: str) -> OperatorProcess:
    return OperatorProcess(cluster, tmp, scope=["--namespace", ns], extra_args=[
        "--leader-elect", "--leader-election-namespace", ns, "--lease-duration", "8",
        "--renew-deadline", "5", "--retry-period", "1", *extra])


def couch_servers(kube: Kube, couch_a: Any, couch_b: Any) -> None:
    kube.apply(secret("a-admin", username=couch_a.username, password=couch_a.password),
               secret("b-admin", username=couch_b.username, password=couch_b.password),
               database_server("couch-a", couch_a.url, secret="a-admin"),
               database_server("couch-b", couch_b.url, secret="b-admin"))


def one_shot(name: str, db: str) -> dict[str, Any]:
    return replication(name, source={"server": "couch-a", "database": db},
                       target={"server": "couch-b", "database": db, "create": True},
                       continuous=False)


def test_one_replica_works_the_standby_takes_over_after_kill_9(
        cluster: Any, ha_namespace: str, couch_a: Any, couch_b: Any, unique_name: Any,
        tmp_path_factory: pytest.TempPathFactory, secret_values: set[str]) -> None:
    kube = Kube(cluster, ha_namespace)
    secret_values.update({couch_a.password, couch_b.password})
    couch_servers(kube, couch_a, couch_b)
    a, b = Couch(couch_a), Couch(couch_b)
    first = replica(cluster, tmp_path_factory.mktemp("replica-1"), ha_namespace)
    second = replica(cluster, tmp_path_factory.mktemp("replica-2"), ha_namespace)
    first.start()
    leader = wait_for(lambda: lease_holder(kube), what="a Lease holder")
    second.start()  # live (its standby /healthz answers) but not working
    try:
        db = unique_name("ha")
        a.create_db(db)
        a.put(db, "doc", v=1)
        kube.apply(one_shot("before", db))
        kube.wait_condition("replication", "before", timeout=60)
        assert lease_holder(kube) == leader
        assert "standing by" in second.log_text() and "Handler" not in second.log_text()

        first.kill(signal.SIGKILL)
        killed = time.monotonic()
        kube.apply(one_shot("during", db))  # work that arrives while nobody leads
        new_leader = wait_for(lambda: (lambda h: h if h and h != leader else None)(
            lease_holder(kube)), timeout=60, what="the standby holding the Lease")
        took_over = time.monotonic() - killed
        kube.wait_condition("replication", "during", timeout=60)
        ready = time.monotonic() - killed
        print(f"\nfailover after kill -9: Lease taken over in {took_over:.1f} s, the waiting "
              f"Replication Ready {ready:.1f} s after the kill (lease duration 8 s)")
        assert new_leader != leader
        jobs = [d for d in b.replicator_docs() if d.startswith(f"{ha_namespace}.")]
        assert sorted(jobs) == [f"{ha_namespace}.before", f"{ha_namespace}.during"], \
            "exactly one job each, no duplicate"

        # a clean stop releases the Lease: a restarted replica takes over at once
        first.start()
        second.kill(signal.SIGTERM)
        stopped = time.monotonic()
        wait_for(lambda: lease_holder(kube) not in ("", new_leader), timeout=30,
                 what="the other replica after a clean stop")
        print(f"handover after SIGTERM: {time.monotonic() - stopped:.1f} s")
    finally:
        first.stop()
        second.stop()


def test_shards_by_label_selector_split_a_namespace(
        cluster: Any, ha_namespace: str, couch_a: Any, couch_b: Any, unique_name: Any,
        tmp_path_factory: pytest.TempPathFactory, secret_values: set[str]) -> None:
    kube = Kube(cluster, ha_namespace)
    secret_values.update({couch_a.password, couch_b.password})
    couch_servers(kube, couch_a, couch_b)
    for server in ("couch-a", "couch-b"):  # servers belong to shard a
        kube.cluster.kubectl("label", "databaseserver", server, "-n", ha_namespace,
                             "shard=a")
    db = unique_name("shard")
    Couch(couch_a).create_db(db)
    shard_a = OperatorProcess(cluster, tmp_path_factory.mktemp("shard-a"),
                              scope=["--namespace", ha_namespace],
                              extra_args=["--selector", "shard=a"])
    shard_b = OperatorProcess(cluster, tmp_path_factory.mktemp("shard-b"),
                              scope=["--namespace", ha_namespace],
                              extra_args=["--selector", "shard!=a"])
    shard_a.start()
    try:
        mine = one_shot("mine", db)
        mine["metadata"]["labels"] = {"shard": "a"}
        theirs = one_shot("theirs", db)
        theirs["metadata"]["labels"] = {"shard": "b"}
        kube.apply(mine, theirs)
        kube.wait_condition("replication", "mine", timeout=60)
        assert not (kube.get("replication", "theirs") or {}).get("status"), \
            "shard a leaves shard b's Replication alone"
        shard_b.start()
        kube.wait_condition("replication", "theirs", timeout=60)
        # shard a only indexes it (a Token of shard a must know every Replication using
        # it, whichever shard handles that Replication)
        handled = [line for line in shard_a.log_text().splitlines()
                   if "/theirs]" in line and "Indexer 'token_users'" not in line]
        assert handled == [], handled[:5]
    finally:
        shard_a.stop()
        shard_b.stop()
