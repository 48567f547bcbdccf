"""Benchmark: what one resync costs with N Eden Replications on one job server.

Starts two Eden simulators in this process (or uses `--url`/`--peer-url`), creates N
pull Replications spread over P peer DatabaseServers (all pointing at the peer Eden:
one sync repository each on the job server, N / P tasks per repository; a real Eden
allows one repository per peer URL, so against real servers use --peers 1), lets their
jobs run once, then observes all N the way the resync timers do, and prints
- backend requests per resync, by method (batched: grows with P, not with N),
- wall time of a resync of all N, and of the pure status computation per Replication,
- memory held by the server's snapshot (tracemalloc).

    .venv/bin/python bench/eden_resync.py --count 200 --peers 4
Figures only: nothing here asserts a time. In-process simulators share the GIL with
the operator code, so wall times are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from eden_sim import EdenSimulator  # noqa: E402
from replication_operator.backends.base import Endpoint, ReplicationRequest  # noqa: E402
from replication_operator.backends.eden.backend import EdenBackend  # noqa: E402
from replication_operator.credentials import Credentials  # noqa: E402
from replication_operator.http import ServerConnection, ServerSettings  # noqa: E402
from replication_operator.reconcile.replication import compute_status, plan  # noqa: E402


def settings(key: str, url: str, user: str, password: str) -> ServerSettings:
    return ServerSettings(key=key, type="eden", url=url, auth_type="basic",
                          credentials=Credentials(username=user, password=password))


async def run(args: argparse.Namespace, local: ServerSettings, peers: list[ServerSettings],
              tables: list[str]) -> None:
    calls: Counter[str] = Counter()

    def observe(server: str, method: str, code: str, seconds: float) -> None:
        calls[method] += 1

    conns: dict[ServerSettings, ServerConnection] = {}

    def conn_for(server: ServerSettings) -> ServerConnection:
        if server not in conns:
            conns[server] = ServerConnection(server, observer=observe
                                             if server == local else None)
        return conns[server]

    backend = EdenBackend(conn_for(local), conn_for)
    info = await backend.probe()
    per_peer = -(-args.count // len(peers))
    requests = [ReplicationRequest(
        key=f"bench/r{i}", external_name=f"bench.r{i}",
        source=Endpoint(peers[i // per_peer], tables[i % per_peer]),
        target=Endpoint(local, tables[i % per_peer])) for i in range(args.count)]
    started = time.perf_counter()
    for request in requests:
        seen = await backend.observe(request, max_age=60)
        if not seen.exists:
            await backend.create(request)
    created_in = time.perf_counter() - started

    calls.clear()
    durations = []
    for _ in range(args.resyncs):
        backend.invalidate()
        started = time.perf_counter()
        observations = await asyncio.gather(*(backend.observe(r, max_age=60)
                                              for r in requests))
        durations.append(time.perf_counter() - started)
    per_resync = sum(calls.values()) / args.resyncs
    assert all(o.exists and o.up_to_date for o in observations), "replications drifted"

    started = time.perf_counter()
    for request, seen in zip(requests, observations, strict=True):
        plan(key=request.key, external_name=request.external_name, seen=seen, suspend=False,
             suspend_deletes=False, adopted=False, spec_changed=False, created_before=True)
        compute_status(previous=None, generation=1, seen=seen, error=None, suspended=False,
                       external_name=request.external_name, server="bench/eden", now="now")
    pure_us = (time.perf_counter() - started) / len(requests) * 1e6

    tracemalloc.start()
    backend.invalidate()
    await backend.observe(requests[0], max_age=60)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"server: {info.flavour} {info.version} at {local.url}")
    print(f"replications: {args.count} over {len(peers)} peers / repositories (created in "
          f"{created_in:.2f}s, one at a time)")
    print(f"backend requests per resync of all {args.count}: {per_resync:.1f} "
          f"(by method over {args.resyncs} resyncs: {dict(calls)})")
    print(f"resync wall time: min {min(durations) * 1000:.0f} ms, "
          f"max {max(durations) * 1000:.0f} ms over {args.resyncs} resyncs")
    print(f"pure reconcile (plan + status) per Replication: {pure_us:.1f} us")
    print(f"memory of the server's snapshot (repositories, tasks, jobs, log rows): "
          f"{current / 1024:.0f} KiB ({current / args.count:.0f} B per Replication)")
    for conn in conns.values():
        await conn.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="the Eden running the jobs (default: simulator)")
    parser.add_argument("--peer-url", help="the Eden they pull from (default: simulator)")
    parser.add_argument("--user", default="admin@example.com")
    parser.add_argument("--password", default="eden")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--resyncs", type=int, default=5)
    args = parser.parse_args()
    per_peer = -(-args.count // args.peers)
    tables = [f"bench_t{i:03d}" for i in range(per_peer)]
    with ExitStack() as stack:
        urls = [args.url, args.peer_url]
        for index, url in enumerate(urls):
            if not url:
                sim = stack.enter_context(EdenSimulator(email=args.user,
                                                        password=args.password,
                                                        tables=tables))
                # P peer DatabaseServers on one peer URL: a real Eden keeps one
                # repository per peer URL, the simulator allows P with this off
                sim.store.set_settings(one_repository_per_peer=False)
                urls[index] = sim.url
        local = settings("bench/eden", str(urls[0]), args.user, args.password)
        peers = [settings(f"bench/peer-{p}", str(urls[1]), args.user, args.password)
                 for p in range(args.peers)]
        asyncio.run(run(args, local, peers, tables))


if __name__ == "__main__":
    main()
