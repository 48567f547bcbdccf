"""The Helm chart on the real API server, and its RBAC proven sufficient and necessary:
the operator runs with the chart's ServiceAccount token (no admin rights), the CouchDB
smoke (a Replication, and a ReplicationPolicy that makes one) passes; with the status
rule removed it fails, and without create/delete on Replications the policy cannot
make its Replication."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import (
    ROOT,
    Couch,
    Kube,
    OperatorProcess,
    database_server,
    replication,
    secret,
    wait_for,
)

CHART = ROOT / "charts" / "replication-operator"


def helm(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(cluster.bin_dir / "helm"), *args], capture_output=True,
                            text=True, env=cluster.env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def service_account_kubeconfig(cluster: Any, namespace: str, account: str, path: Path
                               ) -> Path:
    token = cluster.kubectl("create", "token", account, "-n", namespace,
                            "--duration=1h").stdout.strip()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {
            "server": cluster.server,
            "certificate-authority": str(cluster.stack.apiserver.pki / "ca.crt")}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa",
                                                "namespace": namespace}}]}))
    return path


def smoke(kube: Kube, couch_a: Any, couch_b: Any, name: str, timeout: float) -> bool:
    """DatabaseServer + Replication → Ready; delete → the job is gone from the server."""
    b = Couch(couch_b)
    db = f"{name}-db"
    Couch(couch_a).create_db(db)
    kube.apply(secret("admin", username=couch_a.username, password=couch_a.password),
               database_server("couch-a", couch_a.url, secret="admin"),
               database_server("couch-b", couch_b.url, secret="admin"),
               replication(name, source={"server": "couch-a", "database": db},
                           target={"server": "couch-b", "database": db, "create": True}))
    try:
        kube.wait_condition("replication", name, timeout=timeout)
    except AssertionError:
        return False
    job = f"{kube.ns}.{name}"
    assert job in b.replicator_docs()
    kube.delete("replication", name)
    wait_for(lambda: kube.get("replication", name) is None, timeout=timeout,
             what="replication deleted")
    return job not in b.replicator_docs() and policy_smoke(kube, name, db, timeout)


def policy(name: str, db: str) -> dict[str, Any]:
    return {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "ReplicationPolicy",
            "metadata": {"name": name}, "spec": {
                "source": {"server": "couch-a", "databases": [db]},
                "target": {"server": "couch-b", "databasePrefix": "p-"},
                "trigger": {"type": "continuous"}}}


def policy_smoke(kube: Kube, name: str, db: str, timeout: float) -> bool:
    """A CouchDB ReplicationPolicy makes a Ready child Replication, and removes it."""
    kube.apply(policy(name, db))
    try:
        kube.wait_condition("replicationpolicy", name, timeout=timeout)
    except AssertionError:
        return False
    child = f"{name}-{db}"
    kube.wait_condition("replication", child, timeout=timeout)
    kube.delete("replicationpolicy", name)
    wait_for(lambda: kube.get("replication", child) is None and
             kube.get("replicationpolicy", name) is None, timeout=timeout,
             what="policy and its replication deleted")
    return True


@pytest.fixture
def namespace(cluster: Any) -> Iterator[str]:
    """Outside the "t*" namespaces the session's admin operator watches: only the
    operator running with the chart's ServiceAccount acts here."""
    name = f"rbac-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def release(cluster: Any, crds: None, namespace: str) -> str:
    helm(cluster, "lint", str(CHART))
    helm(cluster, "install", "ro", str(CHART), "-n", namespace, "--set",
         f"watchNamespaces={{{namespace}}}", "--wait=false")
    return "ro-replication-operator"


def test_chart_installs_with_restricted_pod_security(cluster: Any, namespace: str,
                                                     release: str) -> None:
    deployment = json.loads(cluster.kubectl("get", "deployment", release, "-n", namespace,
                                            "-o", "json").stdout)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 2, "a standby by default"
    assert "--leader-elect" in container["args"]
    assert pod["affinity"]["podAntiAffinity"], "replicas prefer different nodes"
    assert container["env"][0]["name"] == "POD_NAMESPACE"
    pdb = json.loads(cluster.kubectl("get", "pdb", release, "-n", namespace, "-o",
                                     "json").stdout)
    assert pdb["spec"]["minAvailable"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    cluster.kubectl("get", "role,rolebinding,serviceaccount,service", "-n", namespace)


def test_operator_works_under_exactly_the_charts_rbac(
        cluster: Any, namespace: str, release: str, couch_a: Any, couch_b: Any,
        tmp_path: Path) -> None:
    kubeconfig = service_account_kubeconfig(cluster, namespace, release, tmp_path / "sa.yaml")
    kube = Kube(cluster, namespace)

    def run_smoke(name: str, timeout: float) -> tuple[bool, str]:
        proc = OperatorProcess(cluster, tmp_path, scope=["--namespace", namespace],
                               env={"KUBECONFIG": str(kubeconfig)},
                               extra_args=["--leader-elect", "--leader-election-namespace",
                                           namespace, "--leader-election-id", release])
        proc.start()
        try:
            return smoke(kube, couch_a, couch_b, name, timeout), proc.log_text()
        finally:
            proc.stop()

    ok, log = run_smoke("allowed", timeout=90)
    assert ok, log[-3000:]
    # kopf's discovery (CRDs, namespaces) is allowed too: no minute of refused retries
    assert "APIForbiddenError" not in log, log[:3000]
    denied = cluster.kubectl("get", "secrets", "-n", "default",
                             f"--as=system:serviceaccount:{namespace}:{release}", check=False)
    assert denied.returncode != 0  # nothing outside the watched namespace

    original = json.loads(cluster.kubectl("get", "role", release, "-n", namespace, "-o",
                                          "json").stdout)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        original["metadata"].pop(key, None)
    as_sa = f"--as=system:serviceaccount:{namespace}:{release}"

    def without(drop: Any, verb: str, resource: str, sub: str = "") -> None:
        role = {**original, "rules": [r for r in original["rules"] if not drop(r)]}
        cluster.kubectl("replace", "-f", "-", input=json.dumps(role))
        extra = [f"--subresource={sub}"] if sub else []
        wait_for(lambda: cluster.kubectl("auth", "can-i", verb, resource, *extra, "-n",
                                         namespace, as_sa, check=False).stdout.strip() == "no",
                 what="the RBAC change to reach the authorizer")

    without(lambda r: any(res.endswith("/status") for res in r["resources"]), "patch",
            "replications", "status")
    ok, _ = run_smoke("denied", timeout=30)
    assert not ok, "the smoke passed without the status rule: the RBAC test cannot fail"

    without(lambda r: "create" in r["verbs"] and "replications" in r["resources"], "create",
            "replications")
    db = f"nocreate-{secrets.token_hex(3)}"
    Couch(couch_a).create_db(db)
    proc = OperatorProcess(cluster, tmp_path, scope=["--namespace", namespace],
                           env={"KUBECONFIG": str(kubeconfig)})
    proc.start()
    try:
        kube.apply(policy("nocreate", db))
        cond = kube.wait_condition("replicationpolicy", "nocreate", status="False",
                                   reason="Forbidden", timeout=60)
        assert "replications" in cond["message"], cond
        assert kube.get("replication", f"nocreate-{db}") is None
    finally:
        proc.stop()
