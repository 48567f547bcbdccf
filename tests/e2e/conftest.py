"""End-to-end fixtures: CRDs on the real API server, the operator as a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    ROOT,
    Couch,
    Kube,
    OperatorProcess,
    Reduct,
    crd_paths,
    database_server,
    secret,
)


@pytest.fixture(scope="session")
def crds(cluster: Any) -> None:
    """The project's CRDs, installed and established."""
    for path in crd_paths():
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", path)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"crd/{kind}.replication.dbops.dev" for kind in
                      ("databaseservers", "replications", "replicationpolicies", "tokens")])


@pytest.fixture(scope="session")
def secret_values() -> set[str]:
    """Every credential a test hands the operator; scanned for in logs/events/status."""
    return set()


@pytest.fixture(scope="session")
def operator(cluster: Any, crds: None, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster, tmp_path_factory.mktemp("operator"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def couch_env(cluster: Any, operator: OperatorProcess, namespace: str, couch_a: Any,
              couch_b: Any, secret_values: set[str]) -> Iterator[tuple[Kube, Couch, Couch]]:
    """A namespace with DatabaseServers couch-a and couch-b, both Ready."""
    kube = Kube(cluster, namespace)
    secret_values.update({couch_a.password, couch_b.password})
    kube.apply(secret("couch-a-admin", username=couch_a.username, password=couch_a.password),
               secret("couch-b-admin", username=couch_b.username, password=couch_b.password),
               database_server("couch-a", couch_a.url, secret="couch-a-admin"),
               database_server("couch-b", couch_b.url, secret="couch-b-admin"))
    for name in ("couch-a", "couch-b"):
        kube.wait_condition("databaseserver", name)
    yield kube, Couch(couch_a), Couch(couch_b)


@pytest.fixture
def reduct_env(cluster: Any, operator: OperatorProcess, namespace: str, reduct_a: Any,
               reduct_b: Any, secret_values: set[str]) -> Iterator[tuple[Kube, Reduct, Reduct]]:
    """A namespace with DatabaseServers reduct-a and reduct-b (admin tokens), both Ready."""
    kube = Kube(cluster, namespace)
    secret_values.update({reduct_a.token, reduct_b.token})
    kube.apply(secret("reduct-a-admin", token=reduct_a.token),
               secret("reduct-b-admin", token=reduct_b.token),
               database_server("reduct-a", reduct_a.url, "reductstore", "reduct-a-admin",
                               "bearer"),
               database_server("reduct-b", reduct_b.url, "reductstore", "reduct-b-admin",
                               "bearer"))
    for name in ("reduct-a", "reduct-b"):
        kube.wait_condition("databaseserver", name)
    yield kube, Reduct(reduct_a), Reduct(reduct_b)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(ROOT / "tests" / "e2e"):
            item.add_marker(pytest.mark.e2e)
