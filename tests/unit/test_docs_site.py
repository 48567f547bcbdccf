"""The README stays an entrance to the docs site, and user-facing text names no internal
issue numbers."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USER_FACING = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) < 150


def test_no_internal_issue_numbers() -> None:
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in USER_FACING
             for m in re.finditer(r"\bissues? #?\d+", p.read_text(), re.IGNORECASE)]
    assert found == []


def test_the_readme_links_exist() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    missing = [link for link in links if not link.startswith("http")
               and not (ROOT / link).exists()]
    assert links and missing == []
