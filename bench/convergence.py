"""Benchmark: N one-shot Replications on one CouchDB-protocol server until all are
Completed, against a floor script doing the same API and server calls without kopf.

Against the running `dev/up` stack (API server, couch A and B). Operator run: a fresh
namespace, the operator as its own process watching it, N Replications created at
once (16 requests in flight) from one small database on couch A to N new databases
on couch B (the job server); the time until every one says `Completed`, as seen by a
watch. Floor run: the same N custom-resource creates, `_replicator` writes and status
patches (as many per object as the operator made: see its API writes) done by a plain
asyncio + httpx program, which follows couch B's `_replicator` feed to patch
`Completed`; the time until its last patch. Prints both, their ratio (goal 1.3), the
API writes each made (the API server's own counters: nothing else may run on the
stack meanwhile), the operator's CPU time and RSS, and the load average.

    dev/up && .venv/bin/python bench/convergence.py --count 1000
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import time
from typing import Any

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
RESOURCES = ("replications", "events", "databaseservers")


async def until_completed(kube: Kube, ns: str, count: int, timeout: float) -> float:
    """Seconds (monotonic clock) when the watch saw the last of `count` Completed."""
    done: set[str] = set()

    async def watch() -> float:
        async for seen, obj in kube.watch(ns, "replications"):
            if (obj.get("status") or {}).get("phase") == "Completed":
                done.add(obj["metadata"]["name"])
                if len(done) >= count:
                    return seen
        raise SystemExit("the watch ended")

    try:
        return await asyncio.wait_for(watch(), timeout)
    except TimeoutError:
        raise SystemExit(f"timed out: {len(done)} of {count} Completed") from None


async def operator_run(env: dict[str, str], kube: Kube, count: int, resync: float,
                       timeout: float) -> dict[str, Any]:
    ns = f"bench-conv-{secrets.token_hex(3)}"
    await setup_namespace(kube, ns, env)
    operator = Operator(env, ns, resync, f"bench-{ns}.log")
    try:
        await operator.ready()

        async def servers_ready() -> bool:
            items = await kube.items(ns, "databaseservers")
            return len(items) == 2 and all(
                any(c["type"] == "Ready" and c["status"] == "True"
                    for c in (i.get("status") or {}).get("conditions", [])) for i in items)

        await poll(servers_ready, 120, "the DatabaseServers Ready")
        writes_before = await kube.apiserver_writes()
        cpu_before = cpu_seconds(operator.proc.pid)
        started = time.monotonic()
        watcher = asyncio.ensure_future(until_completed(kube, ns, count, timeout))
        await asyncio.gather(*(kube.create(ns, "replications",
                                           one_shot(ns, f"r{i:05d}", SOURCE, f"{ns}-t{i:05d}"))
                               for i in range(count)))
        created = time.monotonic() - started
        finished = await watcher
        seconds = finished - started
        cpu = cpu_seconds(operator.proc.pid) - cpu_before
        writes = difference(await kube.apiserver_writes(), writes_before, only=RESOURCES)
        return {"ns": ns, "seconds": seconds, "created": created, "writes": writes,
                "cpu": cpu, "rss": rss_mib(operator.proc.pid)}
    finally:
        operator.stop()


def job_doc(env: dict[str, str], ns: str, target: str) -> dict[str, Any]:
    """The `_replicator` doc a one-shot job needs (what the operator writes)."""
    auth = base64.b64encode(f"{env['COUCHDB_USER']}:{env['COUCHDB_PASSWORD']}".encode())
    header = {"Authorization": f"Basic {auth.decode()}"}
    return {"source": {"url": f"{env['COUCHDB_A_URL']}/{SOURCE}", "headers": header},
            "target": {"url": f"{env['COUCHDB_B_URL']}/{target}", "headers": header},
            "continuous": False, "create_target": True, "dbops_owner": ns}


async def floor_run(env: dict[str, str], kube: Kube, couch_b: Couch, count: int,
                    patches: int, timeout: float) -> dict[str, Any]:
    """The same work with no framework: create, write the job, patch Running (when the
    operator patched more than once per object), follow the feed, patch Completed."""
    ns = f"bench-floor-{secrets.token_hex(3)}"
    await setup_namespace(kube, ns, env)
    since = await couch_b.update_seq("_replicator")
    writes_before = await kube.apiserver_writes()
    names = {f"{ns}.r{i:05d}": f"r{i:05d}" for i in range(count)}
    patched: set[str] = set()
    done = asyncio.Event()
    started = time.monotonic()

    async def finish(doc_id: str) -> None:
        await kube.patch_status(ns, "replications", names[doc_id], {
            "phase": "Completed", "conditions": [{"type": "Ready", "status": "True",
                                                  "reason": "Completed"}]})
        patched.add(doc_id)
        if len(patched) == count:
            done.set()

    pending: set[asyncio.Task[None]] = set()

    def completed(doc_id: str, _when: float) -> None:
        if doc_id in names and doc_id not in patched and doc_id not in completed_ids:
            completed_ids.add(doc_id)
            task = asyncio.ensure_future(finish(doc_id))
            pending.add(task)
            task.add_done_callback(pending.discard)

    completed_ids: set[str] = set()

    async def follow() -> None:
        await couch_b.completions(since, lambda doc: doc.get("dbops_owner") == ns, completed)

    async def one(i: int) -> None:
        name = f"r{i:05d}"
        await kube.create(ns, "replications", one_shot(ns, name, SOURCE, f"{ns}-t{i:05d}"))
        async with kube.slots:
            (await couch_b.http.put(f"/_replicator/{ns}.{name}",
                                    json=job_doc(env, ns, f"{ns}-t{i:05d}"))).raise_for_status()
        for _ in range(max(0, patches - 1)):
            await kube.patch_status(ns, "replications", name, {"phase": "Running"})

    follower = asyncio.ensure_future(follow())
    try:
        await asyncio.gather(*(one(i) for i in range(count)))
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        follower.cancel()
    seconds = time.monotonic() - started
    writes = difference(await kube.apiserver_writes(), writes_before, only=RESOURCES)
    return {"ns": ns, "seconds": seconds, "writes": writes}


async def main() -> None:
    env = dev_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--resync", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--keep", action="store_true", help="leave namespaces and jobs")
    args = parser.parse_args()
    kube = Kube(env)
    a = Couch(env["COUCHDB_A_URL"], env["COUCHDB_USER"], env["COUCHDB_PASSWORD"])
    b = Couch(env["COUCHDB_B_URL"], env["COUCHDB_USER"], env["COUCHDB_PASSWORD"])
    await a.ensure_db(SOURCE, docs=5)
    print(f"before: {load()}")
    namespaces: list[str] = []
    try:
        op = await operator_run(env, kube, args.count, args.resync, args.timeout)
        namespaces.append(op["ns"])
        print(f"operator: {args.count} one-shot Replications Completed {op['seconds']:.1f}s "
              f"after the first create (creates took {op['created']:.1f}s); operator CPU "
              f"{op['cpu']:.1f}s, RSS {op['rss']:.0f} MiB; {load()}")
        print(f"  API writes: {op['writes']}")
        status_patches = op["writes"].get("PATCH replications/status", 0)
        per_object = max(1, round(status_patches / args.count))
        floor = await floor_run(env, kube, b, args.count, per_object, args.timeout)
        namespaces.append(floor["ns"])
        print(f"floor (asyncio + httpx, no framework; {per_object} status patch(es) per "
              f"object): all {args.count} Completed after {floor['seconds']:.1f}s; {load()}")
        print(f"  API writes: {floor['writes']}")
        print(f"ratio operator / floor: {op['seconds'] / floor['seconds']:.2f} (goal <= 1.3)")
    finally:
        await tear_down(kube, a, b, namespaces, keep=args.keep)


if __name__ == "__main__":
    asyncio.run(main())
