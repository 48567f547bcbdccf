"""Reliability fixtures: the real API server and servers of the session, namespaces
outside the session operator's `t*` scope (so only the operators a test starts act
there), the servers declared in them.

The tests reuse the end-to-end helpers (tests/e2e/e2e_support.py: the operator as its
own process, kubectl wrappers) and the fault proxy (tests/fault_proxy.py).
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from e2e_support import Kube, crd_paths  # noqa: E402
from rel_support import Servers, release_namespace  # noqa: E402


@pytest.fixture(scope="session")
def rel_crds(cluster: Any) -> None:
    """The project's CRDs, installed and established (also when no e2e test ran)."""
    for path in crd_paths():
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", path)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"crd/{kind}.replication.dbops.dev" for kind in
                      ("databaseservers", "replications", "replicationpolicies", "tokens")])


@pytest.fixture
def rel_kube(cluster: Any, rel_crds: None, request: pytest.FixtureRequest,
             tmp_path: Path) -> Iterator[Kube]:
    """A fresh `rel-*` namespace; afterwards its Events are kept in the test's temp dir
    (events.json, next to the operators' logs), whatever is left is let go (finalizers
    removed: the test's operators are gone by then) and the namespace deleted."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:30]
    name = f"rel-{slug.strip('-')}-{secrets.token_hex(2)}"
    cluster.kubectl("create", "namespace", name)
    kube = Kube(cluster, name)
    yield kube
    events = cluster.kubectl("get", "events", "-n", name, "-o", "json", check=False)
    (tmp_path / "events.json").write_text(events.stdout)
    release_namespace(kube)


@pytest.fixture
def servers(couch_a: Any, couch_b: Any, reduct_a: Any, reduct_b: Any, harbor_a: Any,
            harbor_b: Any) -> Servers:
    return Servers(couch_a, couch_b, reduct_a, reduct_b, harbor_a, harbor_b)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.reliability)
