"""Benchmark: what one resync costs with N ReplicationPolicies on one Harbor.

Creates N push policies on a Harbor (default: two Harbor API simulators started in
this process; or `--url`/`--remote-url`, e.g. the ones `dev/up` runs), starts one
execution on every tenth policy, then observes all N the way the resync timers do,
and prints
- backend requests per resync, by method and path (batched: should not grow with N),
- wall time of a resync of all N, and of the pure reconcile per policy,
- memory held by the policy and execution snapshots (tracemalloc).

    .venv/bin/python bench/harbor_resync.py --count 200
Figures only: nothing here asserts a time. In-process simulators share the GIL with
the operator code, so wall times are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
import tracemalloc
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harbor_sim import HarborSimulator  # noqa: E402
from replication_operator.backends.harbor.backend import HarborBackend  # noqa: E402
from replication_operator.backends.policies import PolicyRequest, Remote  # noqa: E402
from replication_operator.credentials import Credentials  # noqa: E402
from replication_operator.http import ServerConnection, ServerSettings  # noqa: E402
from replication_operator.reconcile.policy import merge_history, policy_status  # noqa: E402
from replication_operator.reconcile.replication import plan  # noqa: E402


def settings(key: str, url: str, user: str, password: str) -> ServerSettings:
    return ServerSettings(key=key, type="harbor", url=url, auth_type="basic",
                          credentials=Credentials(username=user, password=password))


async def run(args: argparse.Namespace, local: ServerSettings, remote: ServerSettings
              ) -> None:
    calls: Counter[str] = Counter()

    def observe(server: str, method: str, code: str, seconds: float) -> None:
        calls[method] += 1

    conn = ServerConnection(local, observer=observe)
    backend = HarborBackend(conn, lambda s: conn)
    info = await backend.probe()
    requests = [PolicyRequest(key=f"bench/p{i}", name=f"bench.p{i}", external_id="",
                              adopted=False, remote=Remote(remote), push=True,
                              patterns=("library/*",), dest_namespace="mirror")
                for i in range(args.count)]
    started = time.perf_counter()
    ids = []
    for request in requests:
        seen = await backend.observe_policy(request, max_age=60)
        ids.append(seen.external_id if seen.exists else await backend.create_policy(request))
    created_in = time.perf_counter() - started
    requests = [dataclasses.replace(r, external_id=i) for r, i in zip(requests, ids, strict=True)]
    for policy_id in ids[::10]:
        await backend.run_policy(policy_id)

    calls.clear()
    durations = []
    for _ in range(args.resyncs):
        backend.invalidate()
        started = time.perf_counter()
        observations = await asyncio.gather(*(backend.observe_policy(r, max_age=60)
                                              for r in requests))
        durations.append(time.perf_counter() - started)
    per_resync = sum(calls.values()) / args.resyncs
    by_method = dict(calls)
    assert all(o.exists and o.up_to_date for o in observations), "policies drifted"

    started = time.perf_counter()
    for request, seen in zip(requests, observations, strict=True):
        plan(key=request.key, external_name=request.name, seen=seen, suspend=False,
             suspend_deletes=False, adopted=False, spec_changed=False, created_before=True,
             noun="policy")
        history = merge_history([], seen.executions, seen.gone)
        policy_status(previous=None, generation=1, seen=seen, history=history,
                      history_limit=10, error=None, next_run=None, failed_tasks=None,
                      fields={}, now="now")
    pure_us = (time.perf_counter() - started) / len(requests) * 1e6

    tracemalloc.start()
    backend.invalidate()
    await backend.observe_policy(requests[0], max_age=60)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"server: {info.flavour} {info.version} at {local.url}")
    print(f"policies: {args.count} (created/checked in {created_in:.2f}s, one at a time); "
          f"{len(ids[::10])} executions started")
    print(f"backend requests per resync of all {args.count}: {per_resync:.1f} "
          f"(by method over {args.resyncs} resyncs: {by_method})")
    print(f"resync wall time: min {min(durations) * 1000:.0f} ms, "
          f"max {max(durations) * 1000:.0f} ms over {args.resyncs} resyncs")
    print(f"pure reconcile (plan + history + status) per policy: {pure_us:.1f} us")
    print(f"memory of one server's snapshots (policies, executions, registries): "
          f"{current / 1024:.0f} KiB ({current / args.count:.0f} B per policy)")
    await conn.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="the Harbor holding the policies (default: simulator)")
    parser.add_argument("--remote-url", help="the Harbor they replicate to")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="Harbor12345")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--resyncs", type=int, default=5)
    args = parser.parse_args()
    with ExitStack() as stack:
        urls: list[Any] = [args.url, args.remote_url]
        for index, url in enumerate(urls):
            if not url:
                sim = stack.enter_context(HarborSimulator(username=args.user,
                                                          password=args.password))
                if index == 0:
                    sim.store.push_artifact("library", "nginx", "v1")
                urls[index] = sim.url
        local = settings("bench/harbor", urls[0], args.user, args.password)
        remote = settings("bench/harbor-dr", urls[1], args.user, args.password)
        asyncio.run(run(args, local, remote))


if __name__ == "__main__":
    main()
