"""StatusMemory: decisions read the status this process last wrote until a body shows
it; then the copy goes (a settled object keeps one status in memory, not two)."""

from __future__ import annotations

from replication_operator.status import StatusMemory


def test_a_stale_body_is_overruled_until_the_body_shows_the_write() -> None:
    memory = StatusMemory()
    stale = {"phase": "Pending", "observedGeneration": 1}
    patch = memory.write("u1", stale, {"phase": "Running", "message": None})
    assert patch == {"phase": "Running"}  # message: absent already
    assert memory.current("u1", stale) == {"phase": "Running", "observedGeneration": 1}
    assert len(memory) == 1, "kept while the body is behind"

    caught_up = {"phase": "Running", "observedGeneration": 1}
    assert memory.current("u1", caught_up) == caught_up
    assert len(memory) == 0, "the body shows the write: the copy is dropped"
    assert memory.current("u1", caught_up) == caught_up


def test_a_write_the_body_never_shows_stays_remembered() -> None:
    memory = StatusMemory()
    memory.write("u1", {"phase": "Running"}, {"phase": "Completed"})
    for _ in range(3):  # the patch failed: the body keeps the old phase
        assert memory.current("u1", {"phase": "Running"})["phase"] == "Completed"
    assert len(memory) == 1
    memory.forget("u1")
    assert memory.current("u1", {"phase": "Running"}) == {"phase": "Running"}


def test_no_body_status_yet() -> None:
    memory = StatusMemory()
    assert memory.current("u1", None) == {}
    memory.write("u1", None, {"phase": "Pending"})
    assert memory.current("u1", None) == {"phase": "Pending"}
    assert len(memory) == 1
