"""Proof that the local parts are real: the API server enforces CEL and RBAC,
pouchdb-server replicates, ReductStore replicates, and a broken part fails loudly."""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import wait_for

import harness

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.proof.harness.dev"},
    "spec": {"group": "proof.harness.dev", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {
                                   "size": {"type": "integer"}},
                                   "x-kubernetes-validations": [{
                                       "rule": "self.size <= 10",
                                       "message": "spec.size must be at most 10"}]},
                               "status": {"type": "object", "properties": {
                                   "seen": {"type": "boolean"}}}}}}}]}}


def test_api_server_enforces_a_cel_rule_and_serves_status(cluster: Any, namespace: str
                                                          ) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.proof.harness.dev")
    try:
        _check_widgets(cluster, namespace)
    finally:
        cluster.kubectl("delete", "crd", "widgets.proof.harness.dev", "--wait=false")


def _check_widgets(cluster: Any, namespace: str) -> None:
    ok = {"apiVersion": "proof.harness.dev/v1", "kind": "Widget",
          "metadata": {"name": "ok", "namespace": namespace}, "spec": {"size": 3}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(ok))
    bad = {**ok, "metadata": {"name": "bad", "namespace": namespace}, "spec": {"size": 11}}
    refused = cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode != 0
    assert "spec.size must be at most 10" in refused.stderr
    cluster.kubectl("patch", "widget", "ok", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", '{"status": {"seen": true}}')
    got = json.loads(cluster.kubectl("get", "widget", "ok", "-n", namespace, "-o",
                                     "json").stdout)
    assert got["status"] == {"seen": True}


def test_rbac_limits_an_impersonated_service_account(cluster: Any, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "narrow", "-n", namespace)
    cluster.kubectl("create", "role", "read-configmaps", "-n", namespace,
                    "--verb=get,list", "--resource=configmaps")
    cluster.kubectl("create", "rolebinding", "narrow", "-n", namespace,
                    "--role=read-configmaps", f"--serviceaccount={namespace}:narrow")
    as_sa = f"--as=system:serviceaccount:{namespace}:narrow"
    assert cluster.kubectl("get", "configmaps", "-n", namespace, as_sa).returncode == 0
    denied = cluster.kubectl("get", "secrets", "-n", namespace, as_sa, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    denied = cluster.kubectl("create", "configmap", "x", "-n", namespace, as_sa, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_controller_manager_collects_garbage_and_deletes_namespaces(cluster: Any,
                                                                   namespace: str) -> None:
    owner = json.loads(cluster.kubectl("create", "configmap", "owner", "-n", namespace,
                                       "-o", "json").stdout)
    child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "child", "namespace": namespace, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": owner["metadata"]["uid"]}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(child))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(lambda: cluster.kubectl("get", "configmap", "child", "-n", namespace,
                                     check=False).returncode != 0,
             what="the child garbage-collected", timeout=60)

    doomed = f"{namespace}-doomed"
    cluster.kubectl("create", "namespace", doomed)
    cluster.kubectl("create", "configmap", "inside", "-n", doomed)
    cluster.kubectl("delete", "namespace", doomed, "--wait=false")
    wait_for(lambda: cluster.kubectl("get", "namespace", doomed, check=False).returncode != 0,
             what="the namespace finalized and gone", timeout=60)


def test_pouchdb_one_shot_replication_completes(couch_a: Any, couch_b: Any,
                                                unique_name: Any) -> None:
    db = unique_name("proof")
    a = httpx.Client(base_url=couch_a.url, auth=(couch_a.username, couch_a.password))
    b = httpx.Client(base_url=couch_b.url, auth=(couch_b.username, couch_b.password))
    a.put(f"/{db}").raise_for_status()
    a.put(f"/{db}/doc-1", json={"hello": "world"}).raise_for_status()

    def endpoint(part: Any) -> dict[str, Any]:
        auth = base64.b64encode(f"{part.username}:{part.password}".encode()).decode()
        return {"url": f"{part.url}/{db}", "headers": {"Authorization": f"Basic {auth}"}}

    b.put(f"/_replicator/{db}", json={"source": endpoint(couch_a), "target": endpoint(couch_b),
                                      "create_target": True}).raise_for_status()
    wait_for(lambda: b.get(f"/_replicator/{db}").json().get("_replication_state") ==
             "completed", what="_replication_state completed")
    assert b.get(f"/{db}/doc-1").json()["hello"] == "world"


def test_reductstore_replication_delivers_a_record(reduct_a: Any, reduct_b: Any,
                                                   unique_name: Any) -> None:
    src, dst = unique_name("src"), unique_name("dst")
    a = httpx.Client(base_url=reduct_a.url, headers={"Authorization": f"Bearer {reduct_a.token}"})
    b = httpx.Client(base_url=reduct_b.url, headers={"Authorization": f"Bearer {reduct_b.token}"})
    a.post(f"/api/v1/b/{src}", json={}).raise_for_status()
    b.post(f"/api/v1/b/{dst}", json={}).raise_for_status()
    a.post(f"/api/v1/replications/{src}", json={
        "src_bucket": src, "dst_bucket": dst, "dst_host": reduct_b.url,
        "dst_token": reduct_b.token, "entries": []}).raise_for_status()
    ts = int(time.time() * 1_000_000)
    a.post(f"/api/v1/b/{src}/entry", params={"ts": ts}, content=b"payload").raise_for_status()
    wait_for(lambda: b.get(f"/api/v1/b/{dst}/entry", params={"ts": ts}).content == b"payload",
             what="record replicated to B")


def test_stopped_servers_come_back_on_their_port_with_their_data(
        couch_a: Any, reduct_a: Any, unique_name: Any) -> None:
    db, bucket = unique_name("kept"), unique_name("kept")
    couch = httpx.Client(base_url=couch_a.url, auth=(couch_a.username, couch_a.password))
    reduct = httpx.Client(base_url=reduct_a.url,
                          headers={"Authorization": f"Bearer {reduct_a.token}"})
    couch.put(f"/{db}").raise_for_status()
    reduct.post(f"/api/v1/b/{bucket}", json={}).raise_for_status()
    ports = couch_a.port, reduct_a.port
    for part in (couch_a, reduct_a):
        part.stop()
        with pytest.raises(httpx.TransportError):
            httpx.get(part.url, timeout=2)
        part.start()
    assert (couch_a.port, reduct_a.port) == ports
    assert couch.get(f"/{db}").status_code == 200
    assert reduct.get(f"/api/v1/b/{bucket}").status_code == 200


def test_a_server_on_a_busy_port_fails_with_its_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        part = harness.ReductStore("busy", tmp_path, port=taken.getsockname()[1])
        with pytest.raises(harness.PartFailed) as info:
            part.start(timeout=20)
    message = str(info.value)
    assert "process exited before it was healthy" in message
    assert "Address already in use" in message  # ReductStore's own log line
    assert not part.alive()


def test_a_missing_binary_fails_with_a_hint(tmp_path: Path) -> None:
    class Missing(harness.Part):
        def command(self) -> list[str]:
            return [str(tmp_path / "no-such-server")]

        def healthy(self) -> bool:
            return False

    with pytest.raises(harness.PartFailed, match=r"cannot run .*no-such-server.*build-tools"):
        Missing("missing", tmp_path).start(timeout=5)
