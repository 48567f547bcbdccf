"""Run a module (the operator) so that SIGUSR1 appends a memory dump to $MEMDUMP_OUT:
RSS and thread count from /proc, pymalloc's arena statistics (to $MEMDUMP_OUT.malloc),
the live objects by type, and, with MEMDUMP_TRACE=<frames> set, tracemalloc's top
allocation sites (plus, with frames > 1, the stacks holding parsed JSON; slow: minutes
with a few hundred objects). MEMDUMP_DEEP=TypeA,TypeB adds the deep size of all live
instances of those classes (by __qualname__; what they reach, each object once per
class). MEMDUMP_TRIM=1
also calls glibc's malloc_trim(0) and shows RSS after it. Each dump ends "==== end".

    MEMDUMP_OUT=/tmp/d.txt python bench/memdump.py replication_operator run ...
    kill -USR1 <pid>

benchkit.Operator runs the operator this way when MEMDUMP_OUT is set. A tool for
finding where memory goes; nothing here measures or asserts anything by itself.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import os
import re
import runpy
import signal
import sys
import tracemalloc
import types
from types import FrameType
from typing import TextIO

OUT = os.environ["MEMDUMP_OUT"]
TRACE = int(os.environ.get("MEMDUMP_TRACE") or 0)


def proc_status() -> str:
    with open("/proc/self/status") as f:
        return " ".join(line.strip() for line in f
                        if re.match(r"(VmRSS|VmHWM|RssAnon|Threads):", line))


def malloc_stats() -> None:
    """sys._debugmallocstats writes to the C stderr: point fd 2 at a file meanwhile."""
    saved = os.dup(2)
    target = os.open(OUT + ".malloc", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(target)
        os.close(saved)


def traced(out: TextIO) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>")])
    stats = snapshot.statistics("lineno")
    out.write(f"traced (imports left out) {sum(s.size for s in stats) / 2**20:.1f} MiB\n")
    for stat in stats[:40]:
        out.write(f"  {stat.size / 2**20:7.2f} MiB {stat.count:8d} {stat.traceback}\n")
    if TRACE > 1:
        parsed = snapshot.filter_traces([tracemalloc.Filter(True, "*json/decoder.py")])
        for stat in parsed.statistics("traceback")[:10]:
            out.write(f"--- parsed JSON {stat.size / 2**20:.2f} MiB {stat.count}\n")
            for line in stat.traceback.format()[-2 * TRACE:]:
                out.write(f"    {line}\n")


def deep_size(roots: list[object]) -> int:
    """Bytes of `roots` and everything they reach, each object once (modules, classes
    and functions are where the walk stops)."""
    seen: set[int] = set()
    total, stack = 0, list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def deep(out: TextIO, names: list[str]) -> None:
    for name in names:
        found = [o for o in gc.get_objects() if type(o).__qualname__ == name]
        out.write(f"deep size of {len(found)} {name}: {deep_size(found) / 2**20:.1f} MiB\n")


def dump(signum: int, frame: FrameType | None) -> None:
    with open(OUT, "a") as out:
        out.write(f"==== dump: {proc_status()}\n")
        malloc_stats()
        if os.environ.get("MEMDUMP_TRIM"):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            out.write(f"after malloc_trim(0): {proc_status()}\n")
        counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        out.write(f"objects tracked by gc: {sum(counts.values())}\n")
        for name, count in counts.most_common(30):
            out.write(f"  {count:8d} {name}\n")
        if os.environ.get("MEMDUMP_DEEP"):
            deep(out, os.environ["MEMDUMP_DEEP"].split(","))
        if tracemalloc.is_tracing():
            traced(out)
        out.write("==== end\n")


if __name__ == "__main__":
    if TRACE:
        tracemalloc.start(TRACE)
    signal.signal(signal.SIGUSR1, dump)
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
