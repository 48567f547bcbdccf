"""Benchmark: what one resync costs with N Replications on one CouchDB-protocol server.

Creates N one-shot `_replicator` jobs on a real server (default: couch A of dev/up),
then observes all N the way the operator's resync timers do, and prints
- backend requests per resync (batched: should not grow with N),
- wall time of a resync for N resources, and of the pure reconcile per resource,
- memory held by one server snapshot (tracemalloc).

    dev/up && .venv/bin/python bench/resync.py --count 200
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import httpx

from replication_operator.backends.base import Endpoint, ReplicationRequest
from replication_operator.backends.couchdb.backend import CouchDBBackend
from replication_operator.credentials import Credentials
from replication_operator.http import ServerConnection, ServerSettings
from replication_operator.reconcile.replication import compute_status, plan


def dev_env() -> dict[str, str]:
    env_file = Path(__file__).resolve().parents[1] / ".dev" / "env"
    values = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[7:].partition("=")
                values[key] = value.strip("'\"")
    return {**values, **os.environ}


async def main() -> None:
    env = dev_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=env.get("COUCHDB_A_URL"))
    parser.add_argument("--user", default=env.get("COUCHDB_USER", "admin"))
    parser.add_argument("--password", default=env.get("COUCHDB_PASSWORD", ""))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--resyncs", type=int, default=5)
    args = parser.parse_args()
    if not args.url:
        raise SystemExit("no server: run dev/up first or pass --url")

    calls: Counter[str] = Counter()
    settings = ServerSettings(key="bench/couch", type="couchdb", url=args.url,
                              auth_type="basic",
                              credentials=Credentials(username=args.user,
                                                      password=args.password))
    conn = ServerConnection(settings, observer=lambda s, m, c, t: calls.update([m]))
    backend = CouchDBBackend(conn, lambda s: conn)
    info = await backend.probe()
    async with httpx.AsyncClient(base_url=args.url, auth=(args.user, args.password)) as admin:
        await admin.put("/bench-src")
        requests = [ReplicationRequest(
            key=f"bench/r{i}", external_name=f"bench.r{i}",
            source=Endpoint(settings, "bench-src"), target=Endpoint(settings, f"bench-dst-{i}"),
            continuous=False, create_target=True) for i in range(args.count)]
        existing = await backend.observe(requests[0], max_age=0)
        started = time.perf_counter()
        sem = asyncio.Semaphore(8)

        async def create(request: ReplicationRequest) -> None:
            async with sem:
                seen = await backend.observe(request, max_age=60)
                if not seen.exists:
                    await backend.create(request)
        await asyncio.gather(*(create(r) for r in requests))
        created_in = time.perf_counter() - started
        del existing

    calls.clear()
    durations = []
    for _ in range(args.resyncs):
        started = time.perf_counter()
        observations = await asyncio.gather(*(backend.observe(r, max_age=0.5)
                                              for r in requests))
        durations.append(time.perf_counter() - started)
        backend.invalidate()
    per_resync = sum(calls.values()) / args.resyncs

    started = time.perf_counter()
    for request, seen in zip(requests, observations, strict=True):
        plan(key=request.key, external_name=request.external_name, seen=seen, suspend=False,
             suspend_deletes=True, adopted=False, spec_changed=False, created_before=True)
        compute_status(previous=None, generation=1, seen=seen, error=None, suspended=False,
                       external_name=request.external_name, server="couch", now="now")
    pure_us = (time.perf_counter() - started) / len(requests) * 1e6

    tracemalloc.start()
    snapshot = await backend._list_state()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del snapshot

    print(f"server: {info.flavour} {info.version} at {args.url}")
    print(f"replications: {args.count} (created/checked in {created_in:.2f}s at concurrency 8)")
    print(f"backend requests per resync of all {args.count}: {per_resync:.1f}")
    print(f"resync wall time: min {min(durations) * 1000:.0f} ms, "
          f"max {max(durations) * 1000:.0f} ms over {args.resyncs} resyncs")
    print(f"pure reconcile (plan + status) per resource: {pure_us:.1f} us")
    print(f"memory of one server snapshot: {current / 1024:.0f} KiB "
          f"({current / args.count:.0f} B per replication)")
    await conn.aclose()


if __name__ == "__main__":
    asyncio.run(main())
