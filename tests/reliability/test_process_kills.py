"""The operator killed with SIGKILL at random moments while a hundred Replications,
Tokens and ReplicationPolicies are created, changed and deleted: one process restarted
after each kill, then two replicas with a Lease where the active one is killed. At the
end everything is as declared, on the cluster and on the servers.

RELIABILITY_SEED=<n> replays a run's workload and kill moments (the seed is printed).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Kube, OperatorProcess, wait_for
from rel_support import (
    Churn,
    Servers,
    Workload,
    credential_problems,
    delete_all,
    inventory,
    new_seed,
    objects,
    operator,
    ownership_problems,
    prepare_servers,
    random_moment,
    scan_for_values,
    server_manifests,
    wait_settled,
)

# resources created, spec/annotation changes, deletions; kills. RELIABILITY_SCALE=0.2
# runs a fifth of it (while working on the suite).
SCALE = float(os.environ.get("RELIABILITY_SCALE") or 1)
SIZE, CHANGES, DELETES = int(100 * SCALE), int(60 * SCALE), int(25 * SCALE)
KILLS = max(1, int(20 * SCALE))
FAILOVERS = max(1, int(8 * SCALE))
PACE = 0.3  # seconds between two workload steps (each is a kubectl call as well)


def seeded() -> tuple[int, random.Random]:
    seed = int(os.environ.get("RELIABILITY_SEED") or new_seed())
    return seed, random.Random(seed)


def check_alive(*procs: OperatorProcess) -> None:
    for proc in procs:
        if proc.proc is not None and proc.proc.poll() is not None and \
                proc.proc.returncode not in (-signal.SIGKILL, 1):
            raise AssertionError(f"operator exited ({proc.proc.returncode}):\n"
                                 f"{proc.log_tail()}")


def final_checks(kube: Kube, servers: Servers, workload: Workload,
                 procs: list[OperatorProcess], label: str, converged: float) -> None:
    """Ownership and credentials on the servers, figures printed, then everything
    deleted and the servers left with nothing of the namespace."""
    values = servers.admin_values()
    problems = ownership_problems(servers, kube, workload)
    problems += credential_problems(servers, kube, workload.live("Token"), values)
    counts = inventory(servers, kube.ns).counts()
    print(f"\n{label}: {workload.summary()}")
    print(f"{label}: converged {converged:.1f} s after the last start; on the servers: "
          f"{counts}")
    assert not problems, "\n".join(problems)
    # no credential (the servers' own, the Tokens' current ones) in a status or Event
    scan_for_values(json.dumps(objects(kube)), values, "status of a resource")
    events = kube.cluster.kubectl("get", "events", "-n", kube.ns, "-o", "json").stdout
    scan_for_values(events, values, "Events")
    gone = delete_all(kube)
    left = inventory(servers, kube.ns)
    print(f"{label}: all deleted {gone:.1f} s after the delete; left on the servers: "
          f"{left.counts()}")
    assert left.empty(), f"left on the servers after deletion: {left}"
    for proc in procs:
        scan_for_values(proc.log_text(), values, f"log of {proc.log_path}")


@pytest.mark.timeout(1200)
def test_kill_9_loop(cluster: Any, rel_kube: Kube, servers: Servers,
                     tmp_path: Path) -> None:
    kube = rel_kube
    seed, rng = seeded()
    print(f"\nkill loop: seed {seed}")
    prepare_servers(servers)
    kube.apply(*server_manifests(servers))
    proc = operator(cluster, tmp_path, kube.ns)
    workload = Workload(kube, rng, size=SIZE, changes=CHANGES, deletes=DELETES)
    churn = Churn(workload, PACE).start()
    starts, moments = [], []
    try:
        for k in range(KILLS):
            began = time.monotonic()
            proc.start()  # returns once /healthz answers
            starts.append(time.monotonic() - began)
            moments.append(random_moment(proc, rng))
            # the kills are spread over the whole workload, at random points of it
            workload.wait_for_step((k + rng.random()) / KILLS * workload.planned)
            moments[-1] += f" (workload step {workload.steps})"
            proc.kill(signal.SIGKILL)
        print(f"kill loop: {KILLS} kills, live in {min(starts):.1f}-{max(starts):.1f} s "
              f"after each start; killed {'; '.join(moments)}")
        churn.join()
        proc.start()
        converged = wait_settled(kube, workload.resources.values(), timeout=300,
                                 alive=lambda: check_alive(proc))
        final_checks(kube, servers, workload, [proc], "kill loop", converged)
    finally:
        churn.stop()
        proc.stop()


def lease_holder(kube: Kube) -> str:
    out = kube.cluster.kubectl("get", "lease", "replication-operator", "-n", kube.ns, "-o",
                               "json", check=False)
    if out.returncode != 0:
        return ""
    return str(json.loads(out.stdout)["spec"].get("holderIdentity") or "")


def holder_of(kube: Kube, replicas: list[OperatorProcess]) -> OperatorProcess | None:
    """The replica whose process holds the Lease (identity: host-pid-random)."""
    identity = lease_holder(kube)
    parts = identity.rsplit("-", 2)
    if len(parts) != 3:
        return None
    return next((r for r in replicas if r.proc is not None and r.proc.poll() is None
                 and str(r.proc.pid) == parts[1]), None)


def supervise(replicas: list[OperatorProcess]) -> None:
    """Restart replicas that exited (a leader that lost its Lease exits, to come back as
    a standby): what the kubelet does."""
    for replica in replicas:
        if replica.proc is not None and replica.proc.poll() is not None:
            check_alive(replica)
            replica.start()


@pytest.mark.timeout(1200)
def test_failover_kill_the_active_replica(cluster: Any, rel_kube: Kube, servers: Servers,
                                          tmp_path: Path) -> None:
    kube = rel_kube
    seed, rng = seeded()
    print(f"\nfailover: seed {seed}")
    prepare_servers(servers)
    kube.apply(*server_manifests(servers))
    replicas = [operator(cluster, tmp_path / f"replica-{i}", kube.ns, "--leader-elect",
                         "--leader-election-namespace", kube.ns, "--lease-duration", "6",
                         "--renew-deadline", "4", "--retry-period", "1") for i in (1, 2)]
    for replica in replicas:
        replica.start()
    workload = Workload(kube, rng, size=SIZE, changes=CHANGES, deletes=DELETES)
    churn = Churn(workload, PACE).start()
    takeovers, moments = [], []

    def leader() -> OperatorProcess | None:
        supervise(replicas)
        return holder_of(kube, replicas)

    try:
        for k in range(FAILOVERS):
            active = wait_for(leader, timeout=60, interval=0.5, what="a replica holding "
                                                                     "the Lease")
            moments.append(random_moment(active, rng))
            workload.wait_for_step((k + rng.random()) / FAILOVERS * workload.planned)
            moments[-1] += f" (workload step {workload.steps})"
            active.kill(signal.SIGKILL)
            killed = time.monotonic()
            active.start()  # back as a standby, as a restarted pod would be
            wait_for(lambda: (lambda h: h if h is not None else None)(leader()),
                     timeout=60, interval=0.5, what="a new Lease holder")
            takeovers.append(time.monotonic() - killed)
        print(f"failover: {FAILOVERS} kills of the active replica; Lease taken over "
              f"{', '.join(f'{t:.1f}' for t in takeovers)} s after each kill (lease "
              f"duration 6 s); killed {'; '.join(moments)}")
        churn.join()
        converged = wait_settled(kube, workload.resources.values(), timeout=300,
                                 alive=lambda: supervise(replicas))
        final_checks(kube, servers, workload, replicas, "failover", converged)
    finally:
        churn.stop()
        for replica in replicas:
            replica.stop()
