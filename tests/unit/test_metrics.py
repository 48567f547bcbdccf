"""The resources gauge (counts per (kind, phase, ready), moved by one per change) and
the per-Replication progress series."""

from __future__ import annotations

from replication_operator.metrics import PROGRESS, REGISTRY, ResourceTally


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


def progress(namespace: str, name: str, field: str) -> float | None:
    return REGISTRY.get_sample_value("replication_operator_replication_progress",
                                     {"namespace": namespace, "name": name, "field": field})


def test_progress_series_follow_the_latest_figures_and_go_with_the_replication() -> None:
    PROGRESS.set("ns", "r1", {"docsWritten": 5, "changesPending": 2})
    PROGRESS.set("ns", "r2", {"docsWritten": 1})
    assert progress("ns", "r1", "docsWritten") == 5
    assert progress("ns", "r1", "changesPending") == 2
    PROGRESS.set("ns", "r1", {"docsWritten": 7})  # a figure the server no longer reports
    assert progress("ns", "r1", "docsWritten") == 7
    assert progress("ns", "r1", "changesPending") is None
    PROGRESS.drop("ns", "r1")
    assert progress("ns", "r1", "docsWritten") is None, "a deleted Replication's series stay"
    assert progress("ns", "r2", "docsWritten") == 1
    PROGRESS.set("ns", "r2", None)
    assert progress("ns", "r2", "docsWritten") is None
