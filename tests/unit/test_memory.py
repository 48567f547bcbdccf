"""Freed memory goes back to the system when the operator trims (glibc); kept JSON
shares its keys and short words."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from replication_operator import memory

CHILD = r"""
import re, sys
sys.path.insert(0, sys.argv[1])
from replication_operator import memory

def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) // 1024

keep = []
chunks = [bytes(2048) + i.to_bytes(4, "little") for i in range(60_000)]  # ~120 MiB
keep.append(bytes(4096))  # allocated last: the heap's top stays in use
del chunks
before = rss()
memory.trim()
print(before, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc")
def test_trim_gives_freed_heap_pages_back() -> None:
    if not memory.trim():
        pytest.skip("this C library has no malloc_trim")
    # a child process: this one's heap holds whatever the other tests left in it
    out = subprocess.run([sys.executable, "-c", CHILD, memory.__file__.rsplit("/", 2)[0]],
                         capture_output=True, text=True, check=True).stdout
    before, after = (int(n) for n in re.findall(r"\d+", out))
    assert before - after > 60, f"RSS {before} MiB before the trim, {after} MiB after"


def test_shared_strings_keeps_the_value_and_shares_keys_and_words() -> None:
    text = json.dumps({"status": {"conditions": [{"type": "Ready", "status": "True"}],
                                  "message": "x" * 100}, "n": [1, None, True]})
    first, second = json.loads(text), json.loads(text)
    assert first["status"]["conditions"][0]["type"] is not \
        second["status"]["conditions"][0]["type"], "parsed JSON has a copy each"
    a, b = memory.shared_strings(first), memory.shared_strings(second)
    assert a == b == json.loads(text)
    key_a = next(k for k in a["status"]["conditions"][0] if k == "status")
    key_b = next(k for k in b["status"]["conditions"][0] if k == "status")
    assert key_a is key_b
    assert a["status"]["conditions"][0]["type"] is b["status"]["conditions"][0]["type"]
    assert a["status"]["message"] is not b["status"]["message"], "long strings stay apart"
