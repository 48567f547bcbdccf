"""Run docs/argocd-health.lua in a real Lua interpreter (lupa), as Argo CD would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa

SCRIPT = (Path(__file__).resolve().parents[1] / "docs" / "argocd-health.lua").read_text()


def health(obj: dict[str, Any]) -> str:
    """Argo CD's health status for one custom resource."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([to_lua(v) for v in value])
        return value

    runtime.globals().obj = to_lua(obj)
    return str(runtime.execute(SCRIPT)["status"])
