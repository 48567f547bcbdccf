"""Benchmark: one ReplicationPolicy over N databases on one CouchDB-protocol server.

Against the running `dev/up` stack (API server, couch A and B): creates N source
databases on couch A (kept for the next run), starts the operator as its own process
on a fresh namespace, applies one continuous policy matching them (children pull
from couch A into couch B), and prints
- the time until the policy says all N children are Ready,
- backend requests per resync once everything is Ready, per server (the source's
  database list must not grow with N; the job server's `_replicator` list neither),
- the operator's resident memory (VmRSS) with N children.
Then it deletes the policy (its children and their jobs go) and the namespace.

    dev/up && .venv/bin/python bench/policy_fanout.py --count 500
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from benchkit import read_dev_env

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(check: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def requests_by_server(metrics: str, servers: list[str]) -> dict[str, float]:
    totals = dict.fromkeys(servers, 0.0)
    for line in metrics.splitlines():
        if not line.startswith("replication_operator_backend_requests_total{"):
            continue
        head, _, value = line.rpartition(" ")
        for server in servers:
            if f'server="{server}"' in head:
                totals[server] += float(value)
    return totals


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    env = read_dev_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--resync", type=float, default=10.0, help="operator resync interval")
    parser.add_argument("--resyncs", type=int, default=3, help="resyncs measured when Ready")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    if "KUBECONFIG" not in env or "COUCHDB_A_URL" not in env:
        raise SystemExit("no dev stack: run dev/up first")
    user, password = env["COUCHDB_USER"], env["COUCHDB_PASSWORD"]
    a = httpx.Client(base_url=env["COUCHDB_A_URL"], auth=(user, password), timeout=30)
    b = httpx.Client(base_url=env["COUCHDB_B_URL"], auth=(user, password), timeout=30)
    names = [f"bench-fan-{i:04d}" for i in range(args.count)]
    existing = set(a.get("/_all_dbs").json())
    started = time.monotonic()
    for name in names:
        if name not in existing:
            a.put(f"/{name}").raise_for_status()
            a.put(f"/{name}/doc-1", json={"n": 1}).raise_for_status()
    print(f"{args.count} source databases on couch A ready "
          f"({time.monotonic() - started:.1f}s to create the missing ones)")

    ns = f"bench-{secrets.token_hex(3)}"

    def kubectl(*cmd: str, input: str | None = None) -> str:
        out = subprocess.run(["kubectl", *cmd], input=input, capture_output=True, text=True,
                             env=env, timeout=300)
        if out.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(cmd)}: {out.stderr}")
        return out.stdout

    kubectl("create", "namespace", ns)
    manifests: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "admin"},
         "stringData": {"username": user, "password": password}},
        *[{"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "DatabaseServer",
           "metadata": {"name": name}, "spec": {"type": "couchdb", "url": url, "auth": {
               "type": "basic", "secretRef": {"name": "admin"}}}}
          for name, url in (("couch-a", env["COUCHDB_A_URL"]),
                            ("couch-b", env["COUCHDB_B_URL"]))]]
    policy = {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "ReplicationPolicy",
              "metadata": {"name": "bench"}, "spec": {
                  "source": {"server": "couch-a", "databases": ["bench-fan-*"]},
                  "target": {"server": "couch-b", "databasePrefix": f"{ns}-", "create": True},
                  "trigger": {"type": "continuous"}}}
    metrics_port, liveness_port = free_port(), free_port()
    log = open(ROOT / ".dev" / f"bench-{ns}.log", "wb")  # noqa: SIM115 - kept for the run
    operator = subprocess.Popen(
        [sys.executable, "-m", "replication_operator", "run", "--namespace", ns,
         "--resync-interval", str(args.resync), "--metrics-port", str(metrics_port),
         "--liveness-port", str(liveness_port)],
        env={**env, "PYTHONPATH": str(ROOT / "operator")}, stdout=log, stderr=subprocess.STDOUT)
    servers = [f"{ns}/couch-a", f"{ns}/couch-b"]
    try:
        kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(manifests))

        def alive() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{liveness_port}/healthz").is_success
            except httpx.HTTPError:
                return False

        poll(alive, 60, "the operator's liveness endpoint", every=0.5)
        applied = time.monotonic()
        kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(policy))

        def status() -> dict[str, Any]:
            return dict(json.loads(kubectl("get", "replicationpolicy", "bench", "-n", ns,
                                           "-o", "json")).get("status") or {})

        poll(lambda: status().get("matched") == args.count, args.timeout,
             "the policy to match every database", every=0.5)
        matched_after = time.monotonic() - applied
        poll(lambda: status().get("ready") == args.count, args.timeout,
             "every child Ready", every=2.0)
        ready_after = time.monotonic() - applied
        print(f"policy matched {args.count} databases after {matched_after:.1f}s; all "
              f"{args.count} children Ready after {ready_after:.1f}s")
        print(f"operator RSS with {args.count} children: {rss_kib(operator.pid) / 1024:.0f} MiB")

        url = f"http://127.0.0.1:{metrics_port}/metrics"
        before = requests_by_server(httpx.get(url).text, servers)
        window = args.resyncs * args.resync
        window_end = time.monotonic() + window
        poll(lambda: time.monotonic() >= window_end, window + 5, "the measurement window")
        after = requests_by_server(httpx.get(url).text, servers)
        for server in servers:
            per = (after[server] - before[server]) / args.resyncs
            role = "source: database list" if server.endswith("couch-a") else \
                "job server: _replicator list"
            print(f"backend requests per resync to {server} ({role}): {per:.1f}")
        print(f"operator RSS after {args.resyncs} resyncs: "
              f"{rss_kib(operator.pid) / 1024:.0f} MiB")

        deleting = time.monotonic()
        kubectl("delete", "replicationpolicy", "bench", "-n", ns, "--timeout=1200s")
        print(f"policy and its {args.count} children deleted in "
              f"{time.monotonic() - deleting:.1f}s")
    finally:
        operator.terminate()
        operator.wait(timeout=60)
        kubectl("delete", "namespace", ns, "--wait=false")
        for name in names:  # the targets this run made on couch B
            b.delete(f"/{ns}-{name}")


if __name__ == "__main__":
    main()
