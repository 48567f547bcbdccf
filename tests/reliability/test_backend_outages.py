"""Data servers that go away for a minute, seen through the TCP fault proxy
(tests/fault_proxy.py): one refuses connections, one resets them, one answers too late
and one swallows everything, all at once. Every resource on them says
BackendUnavailable (still trying, not Stalled), the operator does not hammer them
meanwhile, and everything is Ready again once they are back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Kube, OperatorProcess, metric_sum
from rel_support import (
    Resource,
    Servers,
    condition,
    delete_all,
    inventory,
    objects,
    operator,
    prepare_servers,
    server_manifests,
    wait_settled,
)

from fault_proxy import FaultProxy, Mode

OUTAGE = 60.0  # seconds every server is down
TIMEOUT = 5  # requestTimeoutSeconds of the DatabaseServers behind the proxies
RESYNC = 3.0
PROBE = 5  # probeIntervalSeconds (tests/e2e/e2e_support.database_server)
ATTEMPTS = 3  # one request and its two retries (http.ServerConnection.RETRIES)
FAULTS = {"couch-b": (Mode.REFUSE, 0.0), "reduct-a": (Mode.RESET, 0.0),
          "harbor-a": (Mode.DELAY, 2.0 * TIMEOUT), "reduct-b": (Mode.BLACKHOLE, 0.0)}


@pytest.fixture
def proxies(servers: Servers) -> Iterator[dict[str, FaultProxy]]:
    ports = {"couch-b": servers.couch_b.port, "reduct-a": servers.reduct_a.port,
             "harbor-a": servers.harbor_a.port, "reduct-b": servers.reduct_b.port}
    started = {key: FaultProxy("127.0.0.1", port).start() for key, port in ports.items()}
    yield started
    for proxy in started.values():
        proxy.stop()


def workload(ns: str) -> list[Resource]:
    """Resources whose job (or credential) lives on a server behind a proxy (`<server>-px`),
    while the servers talk to each other directly: only the operator's view is cut."""
    resources = []
    for i in range(3):
        resources.append(Resource("Replication", f"couch-{i}", "couch", {
            "server": "couch-b-px", "continuous": True,
            "source": {"server": "couch-a", "database": f"rel-src-{i}"},
            "target": {"server": "couch-b", "database": f"rel-{ns}-{i}", "create": True}}))
        resources.append(Resource("Replication", f"reduct-{i}", "reduct", {
            "server": "reduct-a-px",
            "source": {"server": "reduct-a", "database": "rel-src"},
            "target": {"server": "reduct-b", "database": f"rel-{ns}-{i}", "create": True}}))
    for i in range(2):
        resources.append(Resource("ReplicationPolicy", f"images-{i}", "harbor", {
            "server": "harbor-a-px",
            "source": {"server": "harbor-a-px", "databases": [f"library/*{i}*"]},
            "target": {"server": "harbor-b", "namespace": "mirror"}}))
        resources.append(Resource("Token", f"reduct-token-{i}", "reduct", {
            "server": "reduct-b-px", "permissions": {"read": [f"rel-shared-{i}"]}}))
    resources.append(Resource("Token", "couch-token", "couch", {
        "server": "couch-b-px", "permissions": {"read": ["rel-shared-0"]}}))
    resources.append(Resource("Token", "robot", "harbor", {
        "server": "harbor-a-px", "permissions": {"read": ["library"]}}))
    return resources


def behind(resource: Resource) -> str:
    """The proxied server the operator reaches this resource's job through."""
    return str(resource.spec["server"]).removesuffix("-px")


def requests_by_server(proc: OperatorProcess, ns: str) -> dict[str, float]:
    text = proc.metrics()
    return {key: metric_sum(text, "replication_operator_backend_requests_total",
                            server=f"{ns}/{key}-px") for key in FAULTS}


@pytest.mark.timeout(600)
def test_outages_say_backend_unavailable_without_hot_loop_and_recover(
        cluster: Any, rel_kube: Kube, servers: Servers, proxies: dict[str, FaultProxy],
        tmp_path: Path) -> None:
    kube = rel_kube
    prepare_servers(servers)
    proxied = {k: p.url for k, p in proxies.items()}
    kube.apply(*server_manifests(servers),
               *server_manifests(servers, urls=proxied, timeout=TIMEOUT, only=set(proxied),
                                 names={k: f"{k}-px" for k in proxied}))
    proc = operator(cluster, tmp_path, kube.ns, resync=RESYNC)
    resources = workload(kube.ns)
    proc.start()
    try:
        kube.apply(*(r.manifest() for r in resources))
        wait_settled(kube, resources, timeout=120)

        before, reconciles = requests_by_server(proc, kube.ns), metric_sum(
            proc.metrics(), "replication_operator_reconciles_total")
        started = time.monotonic()
        for key, (mode, delay) in FAULTS.items():
            proxies[key].set_mode(mode, delay)
        unavailable: dict[str, float] = {}
        stalled: dict[str, str] = {}
        while time.monotonic() - started < OUTAGE:
            found = objects(kube)
            for resource in resources:
                obj = found.get(resource.key) or {}
                ready = condition(obj)
                if condition(obj, "Stalled").get("status") == "True":
                    stalled[resource.key] = f"{ready.get('reason')}: {ready.get('message')}"
                if ready.get("status") == "False" and ready.get("reason") == \
                        "BackendUnavailable":
                    unavailable.setdefault(resource.key, time.monotonic() - started)
            for key in FAULTS:
                server = kube.get("databaseserver", f"{key}-px") or {}
                if condition(server).get("reason") == "BackendUnavailable":
                    unavailable.setdefault(f"DatabaseServer/{key}-px",
                                           time.monotonic() - started)
            time.sleep(2)  # polling interval for the length of the outage
        ended = time.monotonic()
        after = requests_by_server(proc, kube.ns)
        reconciled = metric_sum(proc.metrics(), "replication_operator_reconciles_total") - \
            reconciles

        print(f"\noutage of {OUTAGE:.0f} s (request timeout {TIMEOUT} s, resync {RESYNC:g} s, "
              f"probe every {PROBE} s); {reconciled:.0f} reconciles in all meanwhile")
        budgets = {}
        for key, (mode, delay) in FAULTS.items():
            proxy = proxies[key]
            seen = proxy.requests_since(started, ended)
            count = after[key] - before[key]
            mine = [r for r in resources if behind(r) == key]
            # what a patient client may send: every attempt of one request per resource
            # per resync plus one probe per probe interval, and the change handlers'
            # backoff (2, 4, 8, 16, 32 s: five) on top
            budgets[key] = ATTEMPTS * 2 * (len(mine) * (OUTAGE / RESYNC + 5) + OUTAGE / PROBE)
            went = [unavailable[r.key] for r in mine if r.key in unavailable]
            print(f"  {key:8s} {mode.value:9s}{f' {delay:g}s' if delay else '':5s} "
                  f"{len(mine)} resources: the operator sent {count:.0f} requests "
                  f"(budget {budgets[key]:.0f}); the proxy saw {len(seen)} requests on "
                  f"{proxy.connections} connections in all; {len(went)} resources "
                  f"BackendUnavailable within {max(went, default=0):.0f} s, the "
                  f"DatabaseServer after "
                  f"{unavailable.get(f'DatabaseServer/{key}-px', float('nan')):.0f} s")
        for proxy in proxies.values():
            proxy.pass_through()
        back = time.monotonic()
        recovered = wait_settled(kube, resources, timeout=180)
        servers_back = [kube.wait_condition("databaseserver", f"{key}-px", timeout=60)
                        for key in FAULTS]
        print(f"  everything Ready again {recovered:.1f} s after the servers came back "
              f"({time.monotonic() - back:.1f} s with the DatabaseServers)")

        assert not stalled, f"Stalled during an outage: {stalled}"
        missing = [r.key for r in resources if r.key not in unavailable]
        missing += [f"DatabaseServer/{k}-px" for k in FAULTS
                    if f"DatabaseServer/{k}-px" not in unavailable]
        assert not missing, f"never said BackendUnavailable during the outage: {missing}"
        for key in FAULTS:
            count = after[key] - before[key]
            assert count <= budgets[key], \
                f"{key}: {count:.0f} requests in a {OUTAGE:.0f} s outage (a hot loop?)"
        assert len(servers_back) == len(FAULTS)
        delete_all(kube)
        assert inventory(servers, kube.ns).empty()
        proc_alive = proc.proc is not None and proc.proc.poll() is None
        assert proc_alive, proc.log_tail()
    finally:
        proc.stop()
