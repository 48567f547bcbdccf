"""`plan`'s pure parts: manifests from files, the API server's defaults, which spec
fields change, exit codes and the table (no cluster, no server)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from replication_operator.gitops.manifests import (
    ManifestError,
    changed_paths,
    load,
    spec_schema,
    with_defaults,
)
from replication_operator.gitops.plan import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_SAME,
    exit_code,
    render_table,
)
from replication_operator.gitops.planner import Row

ROOT = Path(__file__).resolve().parents[2]


def crd_schema(name: str) -> dict:
    crd = yaml.safe_load((ROOT / "crds" / f"{name}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_defaults_are_those_the_api_server_adds() -> None:
    spec = {"source": {"server": "a", "database": "x"},
            "target": {"server": "b", "database": "y"}, "filter": {"docIds": ["1"]}}
    filled = with_defaults(spec_schema(crd_schema("replications")), spec)
    assert filled["continuous"] is True and filled["suspend"] is False
    assert filled["deletionPolicy"] == "Delete"
    assert filled["target"]["create"] is False and filled["source"]["create"] is False
    assert "externalName" not in filled and "filter" in filled
    policy = with_defaults(spec_schema(crd_schema("replicationpolicies")),
                           {"source": {"databases": ["x"]}, "target": {"server": "h"},
                            "trigger": {}})
    assert policy["override"] is True and policy["trigger"] == {"type": "manual"}
    assert policy["target"]["create"] is True and "speed" in policy
    assert spec == {"source": {"server": "a", "database": "x"},
                    "target": {"server": "b", "database": "y"},
                    "filter": {"docIds": ["1"]}}, "the input is left alone"


def test_changed_paths_name_fields_never_values() -> None:
    before = {"source": {"server": "a", "database": "x"}, "filter": {"selector": {"t": 1}},
              "continuous": True}
    after = {"source": {"server": "a", "database": "y"}, "filter": {"selector": {"t": 2}},
             "options": {"k": "secret-ish"}, "continuous": True}
    paths = changed_paths(before, after)
    assert paths == ["filter.selector.t", "options", "source.database"]
    assert "secret-ish" not in json.dumps(paths)
    assert changed_paths(before, before) == []


def test_files_and_directories_are_read_and_other_kinds_ignored(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text(yaml.safe_dump_all([
        {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "Replication",
         "metadata": {"name": "r1"}, "spec": {}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}]))
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": [{
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "other"},
        "stringData": {"password": "x"}}]}))
    (tmp_path / "README.md").write_text("not a manifest")
    manifests, ignored = load([str(tmp_path)], "team")
    assert [(m.kind, m.namespace, m.name) for m in manifests] == [
        ("Replication", "team", "r1"), ("Secret", "other", "s")]
    assert len(ignored) == 1 and "Deployment" in ignored[0]
    with pytest.raises(ManifestError, match="r1"):
        load([str(tmp_path / "a.yaml"), str(tmp_path / "a.yaml")], "team")
    with pytest.raises(ManifestError, match="no such file"):
        load([str(tmp_path / "missing")], "team")


def row(**fields: object) -> Row:
    return Row(**{"kind": "Replication", "namespace": "t", "name": "r", **fields})  # type: ignore[arg-type]


def test_exit_codes_are_terraforms_detailed_ones() -> None:
    quiet = row(resource="unchanged", action="nothing")
    assert exit_code([]) == EXIT_SAME and exit_code([quiet]) == EXIT_SAME
    assert exit_code([quiet, row(resource="unchanged", action="update")]) == EXIT_CHANGES
    assert exit_code([row(resource="new", action="adopt")]) == EXIT_CHANGES
    assert exit_code([row(resource="changed", action="nothing")]) == EXIT_CHANGES
    assert exit_code([row(resource="pruned", action="delete")]) == EXIT_CHANGES
    problem = row(resource="unchanged", action="error", problems=["ReferenceNotFound: x"])
    assert exit_code([problem, row(resource="new", action="create")]) == EXIT_ERROR


def test_the_table_names_fields_and_problems() -> None:
    out = io.StringIO()
    render_table([
        row(name="users", server="couch-b", resource="changed", action="update",
            target="job t.users", fields=["selector"], spec_fields=["filter.selector"]),
        row(name="legacy", server="couch-b", resource="new", action="adopt",
            target="job legacy", reason="Adopted"),
        row(name="broken", resource="new", action="error",
            problems=["ReferenceNotFound: Secret 'x' (spec.auth.secretRef) not found"])],
        ["a note"], out)
    text = out.getvalue()
    assert "job t.users: selector" in text and "spec changes: filter.selector" in text
    assert "job legacy as it is (it matches the spec: nothing written)" in text
    assert "Secret 'x'" in text and "Note: a note" in text
    assert "1 to update" in text and "1 to adopt" in text and "1 problem(s)" in text
