"""Benchmark: the operator with N settled Replications — its memory, and what quiet
resyncs cost (Kubernetes API writes, backend requests per server).

Against the running `dev/up` stack: a fresh namespace, the operator as its own process
(resync 30 s unless --resync), N one-shot Replications from one small database on
couch A to --targets databases on couch B (job i writes into target i mod targets: the
server then holds N jobs without N databases). Once all are Completed and a resync
interval has passed, prints the operator's RSS, then measures four resync intervals
(rounded up to whole probe intervals):
the API server's write requests on the operator's kinds and Events (its own counters:
nothing else may run on the stack meanwhile), whether any Replication's
resourceVersion moved, the backend requests per server per resync (the operator's
metrics), the operator's CPU time, and the load average.

    dev/up && .venv/bin/python bench/settled.py --count 5000
Figures only: nothing here asserts a time or a size.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import time

from benchkit import (
    Couch,
    Kube,
    Operator,
    cpu_seconds,
    dev_env,
    difference,
    load,
    one_shot,
    poll,
    rss_mib,
    setup_namespace,
    tear_down,
)

SOURCE = "bench-conv-src"
PROBE_INTERVAL = 60.0  # DatabaseServer spec.probeIntervalSeconds default (the bench's servers)


async def main() -> None:
    env = dev_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--resync", type=float, default=30.0)
    parser.add_argument("--resyncs", type=int, default=4,
                        help="resync intervals to measure; the window is made a whole "
                             "number of probe intervals too (PROBE_INTERVAL)")
    parser.add_argument("--keep", action="store_true", help="leave the namespace and jobs")
    args = parser.parse_args()
    kube = Kube(env)
    a = Couch(env["COUCHDB_A_URL"], env["COUCHDB_USER"], env["COUCHDB_PASSWORD"])
    b = Couch(env["COUCHDB_B_URL"], env["COUCHDB_USER"], env["COUCHDB_PASSWORD"])
    await a.ensure_db(SOURCE, docs=5)
    ns = f"bench-set-{secrets.token_hex(3)}"
    await setup_namespace(kube, ns, env)
    operator = Operator(env, ns, args.resync, f"bench-{ns}.log")
    print(f"before: {load()}")
    try:
        await operator.ready()
        rss_idle = rss_mib(operator.proc.pid)
        started = time.monotonic()
        await asyncio.gather(*(kube.create(ns, "replications", one_shot(
            ns, f"r{i:05d}", SOURCE, f"{ns}-t{i % args.targets:04d}"))
            for i in range(args.count)))
        print(f"{args.count} Replications created in {time.monotonic() - started:.0f}s")

        async def all_completed() -> bool:
            items = await kube.items(ns, "replications")
            return sum(1 for i in items if (i.get("status") or {}).get("phase")
                       == "Completed") >= args.count

        await poll(all_completed, 7200, "every Replication Completed", every=10)
        print(f"all {args.count} Completed after {time.monotonic() - started:.0f}s; "
              f"operator RSS {rss_mib(operator.proc.pid):.0f} MiB (idle at start: "
              f"{rss_idle:.0f} MiB); {load()}")
        await asyncio.sleep(args.resync * 1.5)  # let the first resyncs after it pass

        versions = {i["metadata"]["name"]: i["metadata"]["resourceVersion"]
                    for i in await kube.items(ns, "replications")}
        servers = [f"{ns}/couch-a", f"{ns}/couch-b"]
        requests_before = {s: await operator.backend_requests(s) for s in servers}
        writes_before = await kube.apiserver_writes()
        cpu_before = cpu_seconds(operator.proc.pid)
        # Each server is also probed (2 requests) every PROBE_INTERVAL, on its own clock:
        # a window of 3 x 30 s holds one or two probes (1.0 or 1.3 requests per resync
        # on top of the lists). A whole number of probe intervals counts them fairly.
        window = args.resyncs * args.resync
        window = math.ceil(window / PROBE_INTERVAL) * PROBE_INTERVAL
        resyncs = window / args.resync
        await asyncio.sleep(window)  # the measurement window itself
        writes = difference(await kube.apiserver_writes(), writes_before,
                            only=("replications", "events", "databaseservers"))
        moved = sum(1 for i in await kube.items(ns, "replications")
                    if versions.get(i["metadata"]["name"]) != i["metadata"]["resourceVersion"])
        cpu = cpu_seconds(operator.proc.pid) - cpu_before
        print(f"{resyncs:g} quiet resyncs ({window:.0f}s, {window / PROBE_INTERVAL:g} probe "
              f"intervals) with {args.count} Replications:")
        print(f"  Kubernetes API writes: {sum(writes.values())} {writes or ''}; Replications "
              f"whose resourceVersion moved: {moved}")
        for server in servers:
            per = (await operator.backend_requests(server) - requests_before[server]) / \
                resyncs
            print(f"  backend requests per resync to {server}: {per:.1f}")
        print(f"  operator CPU {cpu:.1f}s over the window ({100 * cpu / window:.0f}% of one "
              f"core), RSS {rss_mib(operator.proc.pid):.0f} MiB; {load()}")
    finally:
        operator.stop()
        await tear_down(kube, a, b, [ns], keep=args.keep)


if __name__ == "__main__":
    asyncio.run(main())
