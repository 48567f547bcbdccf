"""docs/reference/<kind>.md are what dev/gen-reference renders from crds/*.yaml."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

import gen_reference

GENERATED = gen_reference.HEADER.split("{")[0]


def test_the_reference_pages_are_generated_from_the_current_crds() -> None:
    stale = [str(path.relative_to(gen_reference.ROOT))
             for path, text in gen_reference.pages().items()
             if not path.exists() or path.read_text() != text]
    assert stale == [], "run dev/gen-reference and commit the pages"


def test_no_generated_page_is_left_over() -> None:
    """A page of a kind whose CRD is gone is deleted, not left to drift."""
    expected = set(gen_reference.pages())
    left = [p.name for p in gen_reference.OUT.glob("*.md")
            if p.read_text().startswith(GENERATED) and p not in expected]
    assert left == []


def _crd(path: str) -> dict[str, Any]:
    return dict(yaml.safe_load((gen_reference.CRDS / path).read_text()))


def _properties(schema: dict[str, Any], path: str = "") -> list[str]:
    found = []
    for name, child in (schema.get("properties") or {}).items():
        if path == "" and name in ("metadata", "apiVersion", "kind"):
            continue
        here = f"{path}.{name}" if path else name
        found += [here, *_properties(child, here)]
    items = schema.get("items")
    if isinstance(items, dict):
        found += _properties(items, f"{path}[]")
    return found


@pytest.mark.parametrize("file", sorted(p.name for p in gen_reference.CRDS.glob("*.yaml")))
def test_every_field_has_a_row(file: str) -> None:
    crd = _crd(file)
    page = gen_reference.render(crd, file)
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [p for p in _properties(root) if f"| `{p}`" not in page]
    assert missing == []


def test_a_field_without_a_description_fails_the_reference() -> None:
    crd = _crd("tokens.yaml")
    broken = copy.deepcopy(crd)
    spec = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["rotation"]["properties"]["everyDays"]["description"]
    gen_reference.render(crd, "tokens.yaml")
    with pytest.raises(gen_reference.MissingDescription, match=r"spec\.rotation\.everyDays"):
        gen_reference.render(broken, "tokens.yaml")


def test_a_changed_field_makes_the_pages_stale(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    crds, out = tmp_path / "crds", tmp_path / "reference"
    crds.mkdir()
    (crds / "tokens.yaml").write_text((gen_reference.CRDS / "tokens.yaml").read_text())
    monkeypatch.setattr(gen_reference, "CRDS", crds)
    monkeypatch.setattr(gen_reference, "OUT", out)
    monkeypatch.setattr(gen_reference, "ROOT", tmp_path)
    assert gen_reference.main([]) == 0 and gen_reference.main(["--check"]) == 0
    crd = _crd("tokens.yaml")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["newField"] = {"type": "string", "description": "New.", "default": "x"}
    (crds / "tokens.yaml").write_text(yaml.safe_dump(crd))
    assert gen_reference.main(["--check"]) == 1
    assert "| `spec.newField` | string | `x` |  | New. |" in \
        gen_reference.pages()[out / "token.md"]


def test_rules_defaults_and_bounds_are_rendered() -> None:
    page = (gen_reference.OUT / "databaseserver.md").read_text()
    assert "| `spec.requestTimeoutSeconds` | integer | `30` | ≥ 1<br>≤ 600 |" in page
    assert "one of `couchdb`, `cloudant`, `reductstore`, `harbor`, `eden`" in page
    assert "rule: spec.type is immutable" in page
    assert "`self == oldSelf`" in page
