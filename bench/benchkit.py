"""What the status benchmarks share: the dev stack, a plain asyncio Kubernetes client,
the operator as its own process, and figures.

The Kubernetes client here is httpx with the kubeconfig's client certificate: the
same plain client drives the benchmarks and the floor script, so the operator is
compared with a program that does the same API calls without any framework.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION = "replication.dbops.dev", "v1alpha1"
T = TypeVar("T")


def read_dev_env() -> dict[str, str]:
    """The environment with what `dev/up` wrote into .dev/env on top, and on top of
    that the exports of $BENCH_ENV_FILE if set (to run against other servers, e.g. a
    real CouchDB's COUCHDB_A_URL / COUCHDB_B_URL / COUCHDB_USER / COUCHDB_PASSWORD)."""
    values: dict[str, str] = {}
    for env_file in (ROOT / ".dev" / "env", Path(os.environ.get("BENCH_ENV_FILE") or "/-")):
        if env_file.is_file():
            for line in env_file.read_text().splitlines():
                if line.startswith("export ") and "=" in line:
                    key, _, value = line[7:].partition("=")
                    values[key] = value.strip("'\"")
    return {**os.environ, **values}


def dev_env() -> dict[str, str]:
    env = read_dev_env()
    if "KUBECONFIG" not in env or "COUCHDB_A_URL" not in env:
        raise SystemExit("no dev stack: run dev/up first")
    return env


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f}s, p95 {percentile(values, 95):.2f}s, "
            f"max {max(values):.2f}s over {len(values)}")


async def poll(check: Callable[[], Awaitable[T | None]], timeout: float, what: str,
               every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


class Kube:
    """The Kubernetes API over httpx, as the kubeconfig's user."""

    def __init__(self, env: dict[str, str], concurrency: int = 16) -> None:
        config = json.loads(json.dumps(yaml.safe_load(Path(env["KUBECONFIG"]).read_text())))
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        context.load_cert_chain(user["client-certificate"], user["client-key"])
        self.http = httpx.AsyncClient(base_url=cluster["server"], verify=context, timeout=120,
                                      limits=httpx.Limits(max_connections=concurrency))
        self.slots = asyncio.Semaphore(concurrency)
        self.env = env

    async def aclose(self) -> None:
        await self.http.aclose()

    def path(self, ns: str, plural: str, name: str = "", sub: str = "") -> str:
        core = plural in ("secrets", "events", "namespaces")
        base = "/api/v1" if core else f"/apis/{GROUP}/{VERSION}"
        where = "" if plural == "namespaces" else f"/namespaces/{ns}"
        return f"{base}{where}/{plural}" + (f"/{name}" if name else "") + (
            f"/{sub}" if sub else "")

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self.slots:
            response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 300 and response.status_code != 404:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    async def create(self, ns: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict((await self.call("POST", self.path(ns, plural), json=body)).json())

    async def patch_status(self, ns: str, plural: str, name: str, status: dict[str, Any]
                           ) -> None:
        await self.call("PATCH", self.path(ns, plural, name, "status"), json={"status": status},
                        headers={"Content-Type": "application/merge-patch+json"})

    async def patch(self, ns: str, plural: str, name: str, body: dict[str, Any]) -> None:
        await self.call("PATCH", self.path(ns, plural, name), json=body,
                        headers={"Content-Type": "application/merge-patch+json"})

    async def items(self, ns: str, plural: str) -> list[dict[str, Any]]:
        return list((await self.call("GET", self.path(ns, plural))).json()["items"])

    async def watch(self, ns: str, plural: str) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """Every object of the kind as the API server reports it, with the time seen
        (a list, then the watch from its resourceVersion)."""
        listed = (await self.call("GET", self.path(ns, plural))).json()
        for item in listed["items"]:
            yield time.monotonic(), item
        version = listed["metadata"]["resourceVersion"]
        while True:
            params = {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                      "timeoutSeconds": "300"}
            async with self.http.stream("GET", self.path(ns, plural), params=params,
                                        timeout=httpx.Timeout(30, read=400)) as response:
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        yield time.monotonic(), obj

    async def delete_namespace(self, ns: str) -> None:
        """Delete, taking the finalizers off what nobody will finalize any more."""
        for plural in ("replications", "replicationpolicies", "databaseservers"):
            for item in await self.items(ns, plural):
                if item["metadata"].get("finalizers"):
                    await self.patch(ns, plural, item["metadata"]["name"],
                                     {"metadata": {"finalizers": None}})
        await self.call("DELETE", self.path(ns, "namespaces", ns))

    async def apiserver_writes(self) -> dict[str, float]:
        """The API server's write requests so far, by resource and verb (its /metrics:
        every client, so nothing else may run on the stack during a measurement)."""
        text = (await self.call("GET", "/metrics")).text
        totals: dict[str, float] = {}
        pattern = re.compile(r'^apiserver_request_total\{(.*)\} (\S+)$')
        for line in text.splitlines():
            found = pattern.match(line)
            if not found:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            if labels.get("verb") not in ("POST", "PUT", "PATCH", "DELETE", "APPLY"):
                continue
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            key = f"{labels['verb']} {resource}"
            totals[key] = totals.get(key, 0.0) + float(found.group(2))
        return totals


def difference(after: dict[str, float], before: dict[str, float], *, only: tuple[str, ...]
               ) -> dict[str, int]:
    return {k: int(v - before.get(k, 0.0)) for k, v in sorted(after.items())
            if any(k.split(" ", 1)[1].split("/")[0] == o for o in only)
            and v - before.get(k, 0.0) > 0}


class Couch:
    """A CouchDB-protocol server as its admin."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, auth=(user, password), timeout=120,
                                      limits=httpx.Limits(max_connections=16))
        self.user, self.password = user, password

    async def aclose(self) -> None:
        await self.http.aclose()

    async def ensure_db(self, db: str, docs: int = 0) -> None:
        if (await self.http.put(f"/{db}")).status_code == 201 and docs:
            payload = {"docs": [{"_id": f"d{i}", "n": i} for i in range(docs)]}
            (await self.http.post(f"/{db}/_bulk_docs", json=payload)).raise_for_status()

    async def update_seq(self, db: str) -> str:
        seq = (await self.http.get(f"/{db}")).json()["update_seq"]
        return seq if isinstance(seq, str) else json.dumps(seq)

    async def completions(self, since: str, match: Callable[[dict[str, Any]], bool],
                          completed: Callable[[str, float], None]) -> None:
        """Follow `_replicator/_changes` from `since`; call `completed(doc id, when)`
        (this process's monotonic clock) each time a doc matching `match` shows the
        state completed. Runs until cancelled."""
        params = {"feed": "continuous", "since": since, "include_docs": "true",
                  "heartbeat": "5000"}
        async with self.http.stream("GET", "/_replicator/_changes", params=params,
                                    headers={"Accept-Encoding": "identity"},
                                    timeout=httpx.Timeout(30, read=60)) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                change = json.loads(line)
                doc = change.get("doc") or {}
                if doc.get("_replication_state") == "completed" and match(doc):
                    completed(change["id"], time.monotonic())

    async def delete_dbs(self, prefix: str) -> None:
        names = [n for n in (await self.http.get("/_all_dbs")).json() if n.startswith(prefix)]
        sem = asyncio.Semaphore(8)

        async def drop(name: str) -> None:
            async with sem:
                await self.http.delete(f"/{name}")

        await asyncio.gather(*(drop(n) for n in names))

    async def delete_jobs(self, prefix: str) -> None:
        rows = (await self.http.get("/_replicator/_all_docs")).json()["rows"]
        sem = asyncio.Semaphore(8)

        async def drop(row: dict[str, Any]) -> None:
            async with sem:
                await self.http.delete(f"/_replicator/{row['id']}",
                                       params={"rev": row["value"]["rev"]})

        await asyncio.gather(*(drop(r) for r in rows if r["id"].startswith(prefix)))


class Operator:
    """`replication-operator run` on one namespace, as its own process."""

    def __init__(self, env: dict[str, str], ns: str, resync: float, log_name: str) -> None:
        self.metrics_port, self.liveness_port = free_port(), free_port()
        self.log_path = ROOT / ".dev" / log_name
        # BENCH_PROFILE=path: the operator runs under cProfile, stats written on exit
        profile = ["-m", "cProfile", "-o", env["BENCH_PROFILE"]] if env.get("BENCH_PROFILE") \
            else []
        # MEMDUMP_OUT=path: the operator runs under bench/memdump.py (SIGUSR1 → a dump)
        runner = [str(ROOT / "bench" / "memdump.py")] if env.get("MEMDUMP_OUT") else ["-m"]
        self.proc = subprocess.Popen(
            [sys.executable, *profile, *runner, "replication_operator", "run", "--namespace", ns,
             "--resync-interval", str(resync), "--metrics-port", str(self.metrics_port),
             "--liveness-port", str(self.liveness_port)],
            env={**env, "PYTHONPATH": str(ROOT / "operator")},
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115

    async def ready(self) -> None:
        async def alive() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit(f"the operator exited; see {self.log_path}")
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(
                        f"http://127.0.0.1:{self.liveness_port}/healthz")).is_success
            except httpx.HTTPError:
                return False
        await poll(alive, 120, "the operator's liveness endpoint")

    async def backend_requests(self, server: str) -> float:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith("replication_operator_backend_requests_total{")
                   and f'server="{server}"' in line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def servers(ns: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """A Secret and DatabaseServers couch-a and couch-b for the dev stack's servers."""
    user, password = env["COUCHDB_USER"], env["COUCHDB_PASSWORD"]
    return [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "admin", "namespace": ns},
             "stringData": {"username": user, "password": password}},
            *[{"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseServer",
               "metadata": {"name": name, "namespace": ns},
               "spec": {"type": "couchdb", "url": url, "maxConcurrentRequests": 16,
                        "auth": {"type": "basic", "secretRef": {"name": "admin"}}}}
              for name, url in (("couch-a", env["COUCHDB_A_URL"]),
                                ("couch-b", env["COUCHDB_B_URL"]))]]


def one_shot(ns: str, name: str, source: str, target: str) -> dict[str, Any]:
    """A one-shot Replication couch-a/source → couch-b/target (the job on couch-b)."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Replication",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"source": {"server": "couch-a", "database": source},
                     "target": {"server": "couch-b", "database": target, "create": True},
                     "continuous": False}}


async def tear_down(kube: Kube, a: Couch, b: Couch, namespaces: list[str], *,
                    keep: bool) -> None:
    """Unless `keep`: each namespace, its jobs on couch B (`<ns>.`) and its databases
    there (`<ns>-`); then close the clients."""
    if not keep:
        for ns in namespaces:
            await kube.delete_namespace(ns)
            await b.delete_jobs(f"{ns}.")
            await b.delete_dbs(f"{ns}-")
    for client in (kube, a, b):
        await client.aclose()


async def setup_namespace(kube: Kube, ns: str, env: dict[str, str]) -> None:
    await kube.call("POST", "/api/v1/namespaces", json={"metadata": {"name": ns}})
    for item in servers(ns, env):
        plural = "secrets" if item["kind"] == "Secret" else "databaseservers"
        await kube.create(ns, plural, item)
