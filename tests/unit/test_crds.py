"""The CRDs as files: structure, descriptions everywhere, messages on every rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS = sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml"))
KINDS = {"DatabaseServer", "Replication", "ReplicationPolicy", "Token"}


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in (schema.get("properties") or {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += walk(schema["items"], f"{path}[]")
    return found


def test_one_file_per_kind() -> None:
    assert {load(p)["spec"]["names"]["kind"] for p in CRDS} == KINDS


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.stem)
def test_crd_shape(path: Path) -> None:
    crd = load(path)
    spec = crd["spec"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert spec["group"] == "replication.dbops.dev" and spec["scope"] == "Namespaced"
    assert "dbops" in spec["names"]["categories"] and spec["names"]["shortNames"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["storage"] and version["served"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Age"} <= columns and ({"Ready"} <= columns or "Type" in columns)
    root = version["schema"]["openAPIV3Schema"]
    assert root["required"] == ["spec"]
    status = root["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions"} <= set(status)


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.stem)
def test_every_field_has_a_description(path: Path) -> None:
    root = load(path)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [p for p, s in walk(root)
               if p and not p.endswith(".metadata") and not s.get("description")]
    assert missing == []


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.stem)
def test_every_rule_has_a_message_naming_a_field(path: Path) -> None:
    root = load(path)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = [r for _, s in walk(root) for r in s.get("x-kubernetes-validations", [])]
    assert rules
    for rule in rules:
        assert "spec." in rule.get("message", ""), rule



def test_chart_crds_equal_the_top_level_crds() -> None:
    chart = Path(__file__).resolve().parents[2] / "charts" / "replication-operator" / "crds"
    assert {p.name: p.read_text() for p in chart.glob("*.yaml")} == \
        {p.name: p.read_text() for p in CRDS}
