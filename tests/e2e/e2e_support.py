"""Helpers for end-to-end tests: the operator as its own process, polling, manifests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
SEEN_OBJECTS: list[dict[str, Any]] = []
"""Every custom resource a test read, as the API server returned it: the last e2e
module replays their statuses through the Argo CD health check."""


def wait_for(predicate: Callable[[], T | None], *, timeout: float = 60.0,
             interval: float = 0.25, what: str = "condition") -> T:
    """Poll until `predicate` returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Kube:
    """kubectl wrappers bound to a namespace."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace

    def apply(self, *docs: dict[str, Any]) -> None:
        text = yaml.safe_dump_all([{**d, "metadata": {"namespace": self.ns, **d["metadata"]}}
                                   for d in docs])
        self.cluster.kubectl("apply", "-f", "-", input=text)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.cluster.kubectl("get", kind, name, "-n", self.ns, "-o", "json", check=False)
        if out.returncode != 0:
            return None
        obj: dict[str, Any] = json.loads(out.stdout)
        if obj.get("apiVersion", "").startswith("replication.dbops.dev/") and \
                len(SEEN_OBJECTS) < 5000:
            SEEN_OBJECTS.append(obj)
        return obj

    def delete(self, kind: str, name: str, wait: bool = False) -> None:
        self.cluster.kubectl("delete", kind, name, "-n", self.ns, f"--wait={str(wait).lower()}",
                             "--ignore-not-found")

    def annotate(self, kind: str, name: str, annotation: str) -> None:
        self.cluster.kubectl("annotate", kind, name, "-n", self.ns, "--overwrite", annotation)

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any] | None:
        obj = self.get(kind, name) or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == type_:
                return dict(cond)
        return None

    def wait_condition(self, kind: str, name: str, type_: str = "Ready", status: str = "True",
                       *, reason: str | None = None, timeout: float = 90) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            cond = self.condition(kind, name, type_)
            if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
                return cond
            return None
        return wait_for(ok, timeout=timeout,
                        what=f"{kind}/{name} {type_}={status}{' ' + reason if reason else ''}")

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("get", "events", "-n", self.ns, "-o", "json",
                                   "--field-selector", f"involvedObject.name={name}")
        return list(json.loads(out.stdout)["items"])

    def wait_event(self, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(lambda: next((e for e in self.events(name) if e["reason"] == reason),
                                     None), timeout=timeout, what=f"event {reason} on {name}")


class OperatorProcess:
    """`replication-operator run` in its own process, like in production."""

    def __init__(self, cluster: Any, log_dir: Path, *, resync: float = 3.0,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 scope: list[str] | None = None, verbose: bool = True) -> None:
        self.cluster = cluster
        self.verbose = verbose
        self.log_path = log_dir / "operator.log"
        self.resync = resync
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.extra_args = extra_args or []
        self.env = env
        # test namespaces start with "t" (tests/conftest.py); others (the Helm RBAC test's)
        # stay out of reach of the admin operator
        self.scope = scope or ["--namespace", "t*"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "replication_operator", "run", *self.scope,
                "--resync-interval", str(self.resync), "--probe-interval", "3",
                "--cleanup-grace", "20", "--metrics-port", str(self.metrics_port),
                "--liveness-port", str(self.liveness_port),
                *(["--verbose"] if self.verbose else []), *self.extra_args]
        env = {**self.cluster.env, **(self.env or {}),
               "PYTHONPATH": str(ROOT / "operator")}
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT)
        wait_for(self._alive, timeout=60, what="operator liveness endpoint")

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.liveness_port}/healthz",
                             timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError(f"operator still running 30 s after signal {sig}:\n"
                                     f"{self.log_tail(120)}") from None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text


def metric_sum(text: str, family: str, /, **labels: str) -> float:
    """Sum of a Prometheus metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(family + "{") and not line.startswith(family + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def crd_paths() -> list[str]:
    return sorted(str(p) for p in (ROOT / "crds").glob("*.yaml"))


def database_server(name: str, url: str, type_: str = "couchdb", secret: str | None = None,
                    auth: str = "basic") -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "url": url, "probeIntervalSeconds": 5}
    if secret:
        spec["auth"] = {"type": auth, "secretRef": {"name": secret}}
    return {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "DatabaseServer",
            "metadata": {"name": name}, "spec": spec}


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "type": "Opaque", "stringData": data}


def replication(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "Replication",
            "metadata": {"name": name}, "spec": spec}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


class Couch:
    """Direct access to a CouchDB-protocol server, as its admin (for checks)."""

    def __init__(self, part: Any) -> None:
        self.url = part.url.rstrip("/")
        self.part = part
        self.http = httpx.Client(base_url=self.url, auth=(part.username, part.password),
                                 timeout=10)

    def create_db(self, db: str) -> None:
        self.http.put(f"/{db}").raise_for_status()

    def put(self, db: str, doc_id: str, **fields: Any) -> None:
        self.http.put(f"/{db}/{doc_id}", json=fields).raise_for_status()

    def doc(self, db: str, doc_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/{db}/{doc_id}")
        return response.json() if response.status_code == 200 else None

    def ids(self, db: str) -> set[str]:
        response = self.http.get(f"/{db}/_all_docs")
        if response.status_code != 200:
            return set()
        return {r["id"] for r in response.json()["rows"] if not r["id"].startswith("_design/")}

    def replicator_docs(self) -> dict[str, dict[str, Any]]:
        response = self.http.get("/_replicator/_all_docs", params={"include_docs": "true"})
        if response.status_code != 200:
            return {}
        return {r["id"]: r["doc"] for r in response.json()["rows"]
                if not r["id"].startswith("_design/")}


@contextlib.contextmanager
def stopped(part: Any) -> Iterator[None]:
    """The server is down inside the block and up again (same port, same data) after."""
    part.stop()
    try:
        yield
    finally:
        part.start()


class Reduct:
    """Direct access to a ReductStore (as its admin, or with `token`), for checks."""

    def __init__(self, part: Any, token: str | None = None) -> None:
        self.part = part
        self.http = httpx.Client(base_url=part.url.rstrip("/"), timeout=10,
                                 headers={"Authorization": f"Bearer {token or part.token}"})

    def bucket(self, name: str) -> None:
        response = self.http.post(f"/api/v1/b/{name}", json={})
        assert response.status_code in (200, 409), response.headers.get("x-reduct-error")

    def write(self, bucket: str, entry: str, data: bytes, **labels: str) -> int:
        ts = int(time.time() * 1_000_000)
        headers = {f"x-reduct-label-{k}": v for k, v in labels.items()}
        self.http.post(f"/api/v1/b/{bucket}/{entry}", params={"ts": ts}, content=data,
                       headers=headers).raise_for_status()
        return ts

    def read(self, bucket: str, entry: str, ts: int) -> bytes | None:
        response = self.http.get(f"/api/v1/b/{bucket}/{entry}", params={"ts": ts})
        return response.content if response.status_code == 200 else None

    def replications(self) -> dict[str, dict[str, Any]]:
        items = self.http.get("/api/v1/replications").json()["replications"]
        return {r["name"]: r for r in items}

    def tokens(self) -> set[str]:
        return {t["name"] for t in self.http.get("/api/v1/tokens").json()["tokens"]}
