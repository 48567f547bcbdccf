"""Benchmark: `export` and `plan` over a fleet of N hand-made jobs on one server.

Against the dev/up stack: makes a namespace with DatabaseServer couch-a, writes N
one-shot `_replicator` jobs on couch A by hand (not through the operator), then runs
`replication-operator export` and `plan` on the export as a user would, and prints
- wall time of each command,
- requests the server saw during each (pouchdb-server's own request log), by method:
  the writes must be zero, the reads should not grow with N,
- what plan decided for the N jobs (all `adopt`: nothing would be written).

    dev/up && .venv/bin/python bench/export_plan.py --count 200
Figures only: nothing here asserts a time. The namespace and jobs are removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchkit import read_dev_env

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"- - (GET|PUT|POST|DELETE|HEAD|COPY) (\S+) (\d+)")


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                          env=env, check=True)
    return done.stdout


def requests_since(log: Path, mark: int) -> Counter[str]:
    with open(log, "rb") as handle:
        handle.seek(mark)
        text = handle.read().decode(errors="replace")
    return Counter(m.group(1) for m in LINE.finditer(text))


def cli(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "replication_operator", *args],
                          capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT / "operator")})
    return done, time.perf_counter() - started


def main() -> None:
    env = read_dev_env()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    url, user, password = env.get("COUCHDB_A_URL"), env.get("COUCHDB_USER", "admin"), \
        env.get("COUCHDB_PASSWORD", "")
    state = ROOT / ".dev" / "state.json"
    if not url or not state.exists():
        raise SystemExit("no dev stack: run dev/up first")
    log = Path(json.loads(state.read_text())["workdir"]) / "couch-a-data" / "pouch.log"
    namespace = f"bench-export-{secrets.token_hex(3)}"
    prefix = f"{namespace}-job"
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    admin = httpx.Client(base_url=url, auth=(user, password), timeout=30)
    kubectl(env, "create", "namespace", namespace)
    try:
        kubectl(env, "apply", "-n", namespace, "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "couch-a-admin"},
                 "stringData": {"username": user, "password": password}},
                {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "DatabaseServer",
                 "metadata": {"name": "couch-a"},
                 "spec": {"type": "couchdb", "url": url, "auth": {
                     "type": "basic", "secretRef": {"name": "couch-a-admin"}}}}]}))
        admin.put("/bench-export-src")
        endpoint: dict[str, Any] = {"headers": {"Authorization": header}}
        for i in range(args.count):
            admin.put(f"/_replicator/{prefix}-{i}", json={
                "source": {"url": f"{url}/bench-export-src", **endpoint},
                "target": {"url": f"{url}/bench-export-dst-{i % 10}", **endpoint},
                "create_target": True, "worker_processes": 1}).raise_for_status()
        print(f"{args.count} hand-made one-shot jobs on {url}")

        mark = log.stat().st_size
        exported, seconds = cli(env, "export", "-n", namespace, "--server", "couch-a", "-o",
                                "json")
        if exported.returncode != 0:
            raise SystemExit(exported.stderr)
        items = [i for i in json.loads(exported.stdout)["items"]
                 if i["spec"]["externalName"].startswith(prefix)]
        seen = requests_since(log, mark)
        print(f"export: {seconds:.1f} s, {len(items)} manifests of ours; server requests "
              f"{dict(seen)}")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as files:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, files)
            files.flush()
            mark = log.stat().st_size
            planned, seconds = cli(env, "plan", "-n", namespace, "-f", files.name, "-o",
                                   "json")
            rows = json.loads(planned.stdout)["rows"] if planned.stdout else []
            seen = requests_since(log, mark)
        print(f"plan: {seconds:.1f} s, exit {planned.returncode}, actions "
              f"{dict(Counter(r['action'] for r in rows))}; server requests {dict(seen)}")
    finally:
        kubectl(env, "delete", "namespace", namespace, "--wait=false")
        docs = admin.get("/_replicator/_all_docs").json().get("rows", [])
        for row in docs:
            if row["id"].startswith(prefix):
                admin.delete(f"/_replicator/{row['id']}", params={"rev": row["value"]["rev"]})
        admin.close()


if __name__ == "__main__":
    main()
