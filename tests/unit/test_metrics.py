"""The resources gauge: counts per (kind, phase, ready), moved by one per change."""

from __future__ import annotations

from replication_operator.metrics import REGISTRY, ResourceTally


def count(kind: str, phase: str, ready: str) -> float | None:
    return REGISTRY.get_sample_value("replication_operator_resources",
                                     {"kind": kind, "phase": phase, "ready": ready})


def test_counts_follow_each_change_and_drop() -> None:
    tally = ResourceTally()
    for i in range(3):
        tally.set("TestKind", f"ns/r{i}", "Running", True)
    assert count("TestKind", "Running", "true") == 3
    tally.set("TestKind", "ns/r0", "Completed", True)
    tally.set("TestKind", "ns/r0", "Completed", True)  # unchanged: no move
    assert count("TestKind", "Running", "true") == 2
    assert count("TestKind", "Completed", "true") == 1
    tally.drop("TestKind", "ns/r0")
    tally.drop("TestKind", "ns/unknown")
    assert count("TestKind", "Completed", "true") is None  # a zero count is removed
    assert count("TestKind", "Running", "true") == 2
