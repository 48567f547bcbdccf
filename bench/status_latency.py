"""Benchmark: from "the server says completed" to ".status says Completed", with 1 and
with N Replications on the job server.

Against the running `dev/up` stack: a fresh namespace and the operator as its own
process (resync 30 s unless --resync). For each count in --counts (default 1,1000):
Replications are added until that many exist on couch B (one-shot jobs, settled:
Completed), then --jobs new one-shot Replications are created one after the other
(each copying --source-docs documents, so it runs a moment), and for each the
benchmark notes when couch B's `_replicator` feed first shows the job completed and
when a watch on the API server first shows `phase: Completed` — both on this
process's clock. Prints the median and p95 of the difference, and the load average.

    dev/up && .venv/bin/python bench/status_latency.py --counts 1,1000 --jobs 20
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

from benchkit import (
    Couch,
    Kube,
    Operator,
    dev_env,
    load,
    one_shot,
    poll,
    setup_namespace,
    summary,
    tear_down,
)

SOURCE = "bench-latency-src"
BACKGROUND_SOURCE = "bench-conv-src"


async def main() -> None:
    env = dev_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,1000",
                        help="Replications on the server while measuring (comma-separated)")
    parser.add_argument("--jobs", type=int, default=20, help="jobs measured per count")
    parser.add_argument("--source-docs", type=int, default=200)
    parser.add_argument("--resync", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="leave the namespace and jobs")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    kube = Kube(env)
    a = Couch(env["COUCHDB_A_URL"], env["COUCHDB_USER"], env["COUCHDB_PASSWORD"])
    b = Couch(env["COUCHDB_B_URL"], env["COUCHDB_USER"], env["COUCHDB_PASSWORD"])
    await a.ensure_db(SOURCE, docs=args.source_docs)
    await a.ensure_db(BACKGROUND_SOURCE, docs=5)
    ns = f"bench-lat-{secrets.token_hex(3)}"
    await setup_namespace(kube, ns, env)
    operator = Operator(env, ns, args.resync, f"bench-{ns}.log")
    server_done: dict[str, float] = {}
    status_done: dict[str, float] = {}
    completed_names: set[str] = set()

    def completed(doc_id: str, when: float) -> None:
        server_done.setdefault(doc_id.partition(".")[2], when)

    async def follow_status() -> None:
        async for seen, obj in kube.watch(ns, "replications"):
            if (obj.get("status") or {}).get("phase") == "Completed":
                name = obj["metadata"]["name"]
                completed_names.add(name)
                status_done.setdefault(name, seen)

    try:
        await operator.ready()
        since = await b.update_seq("_replicator")
        feed = asyncio.ensure_future(b.completions(
            since, lambda doc: str(doc.get("dbops_owner", "")).startswith(f"{ns}/"), completed))
        watch = asyncio.ensure_future(follow_status())
        existing = 0  # Replications in the namespace, probes included
        for count in counts:
            background = max(0, count - 1 - existing)
            if background:
                started = time.monotonic()
                await asyncio.gather(*(kube.create(ns, "replications", one_shot(
                    ns, f"bg{existing + i:05d}", BACKGROUND_SOURCE, f"{ns}-bg{existing + i:05d}"))
                    for i in range(background)))
                existing += background

                async def settled(total: int = existing) -> bool:
                    return len(completed_names) >= total

                await poll(settled, 3600, f"{existing} background Replications Completed")
                print(f"{existing} background Replications Completed in "
                      f"{time.monotonic() - started:.0f}s")
            latencies: list[float] = []
            first = existing + 1
            for j in range(args.jobs):
                name = f"probe-{count}-{j:03d}"
                await kube.create(ns, "replications",
                                  one_shot(ns, name, SOURCE, f"{ns}-{name}"))

                async def both(name: str = name) -> bool:
                    return name in server_done and name in status_done

                await poll(both, 300, f"{name} completed on the server and in status",
                           every=0.05)
                latencies.append(max(0.0, status_done[name] - server_done[name]))
                existing += 1
            print(f"N = {first}..{existing} Replications on the server: server completed → "
                  f"status Completed {summary(latencies)} jobs; {load()}")
        feed.cancel()
        watch.cancel()
    finally:
        operator.stop()
        await tear_down(kube, a, b, [ns], keep=args.keep)


if __name__ == "__main__":
    asyncio.run(main())
