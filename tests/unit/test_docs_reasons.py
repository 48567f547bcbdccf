"""docs/reference/conditions.md documents exactly the reasons the operator can write.

The reasons are collected from the source by `reason_scan` (see its docstring for the
roads a reason takes); the page's tables whose first column is `reason` are read.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import reason_scan

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "conditions.md"
ROW = re.compile(r"^\|\s*`([A-Za-z]+)`\s*\|")


def documented(text: str) -> set[str]:
    """Reasons in the first column of the tables headed `| reason |`."""
    found: set[str] = set()
    in_reasons = False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_reasons = False
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == "reason":
            in_reasons = True
        elif in_reasons and (match := ROW.match(line)):
            found.add(match.group(1))
    return found


@pytest.fixture(scope="module")
def collected() -> reason_scan.Found:
    return reason_scan.collect()


def test_every_reason_is_traced_to_its_source(collected: reason_scan.Found) -> None:
    """A reason the scan cannot follow back to a literal could reach the API unseen."""
    assert collected.unresolved == []
    assert len(collected.reasons) > 50  # the scan found the sinks at all


def test_every_reason_the_operator_writes_is_documented(collected: reason_scan.Found) -> None:
    missing = {r: sorted(set(w)) for r, w in collected.reasons.items()
               if r not in documented(PAGE.read_text())}
    assert missing == {}, f"add these to {PAGE.name} (reason: where it is written)"


def test_every_documented_reason_is_written_somewhere(collected: reason_scan.Found) -> None:
    stale = documented(PAGE.read_text()) - set(collected.reasons)
    assert stale == set(), f"{PAGE.name} documents reasons the operator never writes"


def test_the_page_parser_reads_only_reason_tables() -> None:
    page = textwrap.dedent("""\
        | condition | x |
        |---|---|
        | `Ready` | y |

        | reason | meaning |
        |---|---|
        | `Created` | made |
        | `Idle` | nothing |
        text
        | `Outside` | not in a reason table |
        """)
    assert documented(page) == {"Created", "Idle"}


def test_the_scan_follows_every_road(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kind of sink yields its literal, and an untraceable reason is reported."""
    package = tmp_path / "replication_operator"
    package.mkdir()
    (package / "consts.py").write_text('IMPORTED = "FromAnotherModule"\n')
    (package / "mod.py").write_text(textwrap.dedent("""\
        from replication_operator.consts import IMPORTED
        from replication_operator import events

        TABLE = {1: "FromTable"}

        def classify(x):
            if x:
                return "FromReturn"
            return "FromReturnToo"

        def handler(body, error, step, unknown):
            events.warning(body, "EventPositional", "m")
            events.normal(body, reason="EventKeyword", message="m")
            Condition(READY, True, "ConditionReason")
            raise Error("m", code="ErrorCode")
            seen.phase, seen.reason = 1, "TupleAssigned"
            label = "ViaLocal" if error else IMPORTED
            emit(body, label, "m")
            emit(body, classify(body), "m")
            kind = {1: "DictGet"}.get(error, "DictDefault")
            events.warning(body, kind, "m")
            fail(code=TABLE[error])
            outcome.events.append(("Appended", "m"))
            step.events.append(("Warning", "AppendedTyped", "m"))
            status = {"type": "Ready", "reason": "HandWritten"}
            events.warning(body, error.code, "carried")
            for reason, message in outcome.events:
                events.normal(body, reason, message)
            events.normal(body, unknown.label, "untraceable")

        def make(message, code="DefaultCode"):
            pass
        """))
    monkeypatch.setattr(reason_scan, "PACKAGE", package)
    found = reason_scan.collect()
    assert set(found.reasons) == {
        "FromAnotherModule", "FromTable", "FromReturn", "FromReturnToo", "EventPositional",
        "EventKeyword", "ConditionReason", "ErrorCode", "TupleAssigned", "ViaLocal",
        "DictGet", "DictDefault", "Appended", "AppendedTyped", "HandWritten", "DefaultCode"}
    assert [u.split(": ", 1)[1] for u in found.unresolved] == ["unknown.label"]
