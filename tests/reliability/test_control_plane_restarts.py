"""The API server, then etcd, restarted in the middle of the operator's work: it
reconnects by itself (watch timeouts are set), converges, and writes nothing twice.

The data servers sit behind fault proxies in pass mode: they count what the operator
sends (its requests carry httpx's User-Agent; the servers' own replication traffic
does not), so "created once" is read off the wire. The session's control plane is the
one every test shares: it is running again when this test ends, whatever happened.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Kube, OperatorProcess, wait_for
from rel_support import (
    Resource,
    Servers,
    Workload,
    delete_all,
    inventory,
    new_seed,
    objects,
    operator,
    ownership_problems,
    prepare_servers,
    reconciles,
    server_manifests,
    wait_settled,
)

from fault_proxy import FaultProxy

CREATES = 30  # resources the API server restart interrupts
CHANGES = 12  # changes the etcd restart interrupts
PROXIED = ("couch-b", "reduct-a", "reduct-b", "harbor-a", "harbor-b")


@pytest.fixture
def proxies(servers: Servers) -> Iterator[dict[str, FaultProxy]]:
    parts = {"couch-b": servers.couch_b, "reduct-a": servers.reduct_a,
             "reduct-b": servers.reduct_b, "harbor-a": servers.harbor_a,
             "harbor-b": servers.harbor_b}
    started = {key: FaultProxy("127.0.0.1", int(parts[key].port)).start() for key in PROXIED}
    yield started
    for proxy in started.values():
        proxy.stop()


def writes(proxies: dict[str, FaultProxy], since: float) -> Counter[str]:
    """The operator's writes since `since`: 'server METHOD path' → how many."""
    return Counter(f"{key} {r.method} {r.path.split('?')[0]}"
                   for key, proxy in proxies.items() for r in proxy.requests_since(since)
                   if r.user_agent.startswith("python-httpx")
                   and r.method in ("PUT", "POST", "DELETE", "PATCH"))


def created_once(ns: str, resources: list[Resource], seen: Counter[str]) -> list[str]:
    """Each resource's thing was created exactly once, and nothing was deleted."""
    expected: Counter[str] = Counter()
    for r in resources:
        if r.kind == "Replication" and r.backend == "couch":
            expected[f"couch-b PUT /_replicator/{ns}.{r.name}"] += 1
        elif r.kind == "Replication":
            expected[f"reduct-a POST /api/v1/replications/{ns}__{r.name}"] += 1
        elif r.kind == "ReplicationPolicy":
            expected["harbor-a POST /api/v2.0/replication/policies"] += 1
        elif r.backend == "couch":
            expected[f"couch-b PUT /_users/org.couchdb.user%3A{ns}.{r.name}"] += 1
        elif r.backend == "reduct":
            expected[f"reduct-b POST /api/v1/tokens/{ns}.{r.name}"] += 1
        else:
            expected["harbor-b POST /api/v2.0/robots"] += 1
    if any(r.kind == "ReplicationPolicy" for r in resources):
        expected["harbor-a POST /api/v2.0/registries"] += 1
    problems = [f"{what}: {seen[what]} times, expected {n}" for what, n in expected.items()
                if seen[what] != n]
    problems += [f"{what}: {n} times" for what, n in seen.items() if " DELETE " in what]
    return problems


def generation_problems(kube: Kube, workload: Workload) -> list[str]:
    """Every Token issued exactly as many credentials as it was asked for: one, plus
    one per rotation (a credential issued twice would be a write done twice)."""
    found = objects(kube)
    problems = []
    for token in workload.live("Token"):
        generation = str((found[token.key].get("status") or {}).get("generation"))
        if generation != str(token.credentials):
            problems.append(f"{token.key}: credential generation {generation}, expected "
                            f"{token.credentials}")
    return problems


def mid_work(proc: OperatorProcess, done: float, wanted: int) -> float:
    """Wait until the operator has done `wanted` more reconciles than `done`."""
    return wait_for(lambda: (lambda n: n if n >= done + wanted else None)(reconciles(proc)),
                    timeout=120, interval=0.2, what=f"{wanted} reconciles")


@pytest.mark.timeout(900)
def test_api_server_then_etcd_restart_in_the_middle_of_work(
        cluster: Any, stack: Any, rel_kube: Kube, servers: Servers,
        proxies: dict[str, FaultProxy], tmp_path: Path) -> None:
    kube = rel_kube
    prepare_servers(servers)
    kube.apply(*server_manifests(servers, urls={k: p.url for k, p in proxies.items()}))
    proc = operator(cluster, tmp_path, kube.ns)
    seed = new_seed()
    workload = Workload(kube, random.Random(seed), size=0, changes=0, deletes=0)

    def alive() -> None:
        if proc.proc is not None and proc.proc.poll() is not None:
            pytest.fail(f"operator exited ({proc.proc.returncode}):\n{proc.log_tail()}")

    proc.start()
    try:
        # 1. the API server restarts while new resources are being worked on
        started = time.monotonic()
        first = [workload.create() for _ in range(CREATES)]
        mid_work(proc, 0, CREATES // 3)
        stopped = time.monotonic()
        stack.apiserver.restart()
        down = time.monotonic() - stopped
        later = [workload.create() for _ in range(3)]  # seen only through new watches
        seen_later = wait_settled(kube, later, timeout=180, alive=alive)
        settled = wait_settled(kube, workload.resources.values(), timeout=180, alive=alive)
        print(f"\nAPI server restart (seed {seed}): down {down:.1f} s after "
              f"{int(reconciles(proc))} reconciles of {CREATES} new resources; 3 created "
              f"after it Ready {seen_later:.1f} s after it was back; all {settled:.1f} s")
        problems = created_once(kube.ns, first + later, writes(proxies, started))
        problems += generation_problems(kube, workload)
        problems += ownership_problems(servers, kube, workload)
        assert not problems, "\n".join(problems)

        # 2. etcd restarts while changes and rotations are being applied
        done = reconciles(proc)
        rng = random.Random(seed)
        changed = rng.sample(workload.live(), CHANGES)
        for resource in changed:
            workload.change(resource)
        mid_work(proc, done, CHANGES // 3)
        stopped = time.monotonic()
        stack.etcd.restart()
        down = time.monotonic() - stopped
        settled = wait_settled(kube, workload.resources.values(), timeout=180, alive=alive)
        print(f"etcd restart: down {down:.1f} s in the middle of {CHANGES} changes "
              f"({workload.done['rotation requested']} rotations); all settled "
              f"{settled:.1f} s after it was back")
        problems = generation_problems(kube, workload)
        problems += ownership_problems(servers, kube, workload)
        assert not problems, "\n".join(problems)
        delete_all(kube)
        assert inventory(servers, kube.ns).empty()
    finally:
        proc.stop()
        stack.start_part(stack.controller_manager)  # with etcd and the API server
