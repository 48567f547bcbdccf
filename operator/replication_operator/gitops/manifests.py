"""Manifests from files (pure, but for reading them): what `plan -f` is given, the
defaults the API server would add, and which spec fields a change touches."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from replication_operator import GROUP
from replication_operator.gitops.cluster import PLURALS

SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """The files cannot be planned (unreadable, not YAML, a duplicate object)."""


@dataclass(frozen=True)
class Manifest:
    kind: str  # DatabaseServer | Replication | ReplicationPolicy | Token | Secret
    namespace: str
    name: str
    body: dict[str, Any]
    origin: str  # file it came from

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.body.get("spec") or {})

    @property
    def annotations(self) -> dict[str, str]:
        return dict((self.body.get("metadata") or {}).get("annotations") or {})


def _files(paths: Sequence[str]) -> list[Path | None]:
    """Every manifest file under `paths` (directories recursively, sorted); None for
    standard input ("-")."""
    out: list[Path | None] = []
    for raw in paths:
        if raw == "-":
            out.append(None)
            continue
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES
                              and p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise ManifestError(f"{raw}: no such file or directory")
    return out


def _documents(text: str, origin: str) -> Iterable[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{origin}: not YAML ({exc.__class__.__name__})") from None
    for doc in docs:
        if not doc:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"{origin}: a document is not an object")
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            yield from (item for item in doc["items"] if isinstance(item, dict))
        else:
            yield doc


def load(paths: Sequence[str], namespace: str) -> tuple[list[Manifest], list[str]]:
    """The operator's objects (and Secrets) in the files, in `namespace` unless they say
    otherwise; and a note for each object that is none of those (not planned)."""
    manifests: list[Manifest] = []
    ignored: list[str] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in _files(paths):
        origin = "<stdin>" if path is None else str(path)
        text = sys.stdin.read() if path is None else path.read_text()
        for doc in _documents(text, origin):
            kind = str(doc.get("kind", ""))
            api = str(doc.get("apiVersion", ""))
            meta = doc.get("metadata") or {}
            name = str(meta.get("name") or "")
            ours = api.split("/")[0] == GROUP and kind in PLURALS
            if not (ours or (api == "v1" and kind == "Secret")) or not name:
                ignored.append(f"{origin}: {api} {kind} {name or '(no name)'} is not planned "
                               f"(not a kind the operator handles)")
                continue
            ns = str(meta.get("namespace") or namespace)
            key = (kind, ns, name)
            if key in seen:
                raise ManifestError(f"{kind} {ns}/{name} is in {seen[key]} and in {origin}")
            seen[key] = origin
            manifests.append(Manifest(kind, ns, name, doc, origin))
    return manifests, ignored


def with_defaults(schema: Mapping[str, Any] | None, value: Any) -> Any:
    """`value` with the defaults of a structural schema filled in, as the API server
    does when the object is written (a default applies where its parent exists)."""
    if not schema:
        return value
    if isinstance(value, dict):
        out = dict(value)
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = with_defaults(sub, out[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in set(out) - set(properties):
                out[key] = with_defaults(extra, out[key])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [with_defaults(schema["items"], item) for item in value]
    return value


def spec_schema(schema: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return ((schema or {}).get("properties") or {}).get("spec")


def changed_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted paths of what differs (names only, never values); lists count whole."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[str] = []
        for key in sorted(set(before) | set(after)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in before or key not in after:
                out.append(path)
            else:
                out.extend(changed_paths(before[key], after[key], path))
        return out
    if json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True):
        return []
    return [prefix or "(whole)"]
