"""ReductStore replications and Tokens end to end: real API server, two ReductStore
instances, the operator as its own process."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_support import (
    Couch,
    Kube,
    OperatorProcess,
    database_server,
    metric_sum,
    replication,
    secret,
    wait_for,
)

KIND = "replication"


class Reduct:
    def __init__(self, part: Any, token: str | None = None) -> None:
        self.part = part
        self.http = httpx.Client(base_url=part.url.rstrip("/"), timeout=10,
                                 headers={"Authorization": f"Bearer {token or part.token}"})

    def bucket(self, name: str) -> None:
        response = self.http.post(f"/api/v1/b/{name}", json={})
        assert response.status_code in (200, 409), response.headers.get("x-reduct-error")

    def write(self, bucket: str, entry: str, data: bytes, **labels: str) -> int:
        ts = int(time.time() * 1_000_000)
        headers = {f"x-reduct-label-{k}": v for k, v in labels.items()}
        self.http.post(f"/api/v1/b/{bucket}/{entry}", params={"ts": ts}, content=data,
                       headers=headers).raise_for_status()
        return ts

    def read(self, bucket: str, entry: str, ts: int) -> bytes | None:
        response = self.http.get(f"/api/v1/b/{bucket}/{entry}", params={"ts": ts})
        return response.content if response.status_code == 200 else None

    def replications(self) -> dict[str, dict[str, Any]]:
        items = self.http.get("/api/v1/replications").json()["replications"]
        return {r["name"]: r for r in items}

    def tokens(self) -> set[str]:
        return {t["name"] for t in self.http.get("/api/v1/tokens").json()["tokens"]}


@pytest.fixture
def reduct_env(cluster: Any, operator: OperatorProcess, namespace: str, reduct_a: Any,
               reduct_b: Any, secret_values: set[str]) -> Iterator[tuple[Kube, Reduct, Reduct]]:
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


def token(name: str, server: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "Token",
            "metadata": {"name": name}, "spec": {"server": server, **spec}}


def secret_value(kube: Kube, name: str, key: str = "token") -> str:
    obj = kube.cluster.kubectl("get", "secret", name, "-n", kube.ns, "-o",
                               f"jsonpath={{.data.{key}}}").stdout
    return base64.b64decode(obj).decode()


def test_replication_with_a_token_delivers_records_and_survives_rotation(
        reduct_env: tuple[Kube, Reduct, Reduct], unique_name: Any,
        secret_values: set[str], operator: OperatorProcess) -> None:
    kube, a, b = reduct_env
    src, dst = unique_name("src"), unique_name("dst")
    a.bucket(src)
    b.bucket(dst)
    # the source instance reads the destination bucket's info before it writes, so a
    # destination token needs read and write (ReductStore 1.21.4)
    kube.apply(token("b-writer", "reduct-b", permissions={"read": [dst], "write": [dst]},
                     expiresInDays=30))
    kube.wait_condition("token", "b-writer")
    first_value = secret_value(kube, "b-writer")
    assert kube.get("token", "b-writer")["status"]["expiresAt"]  # type: ignore[index]
    expiry = metric_sum(operator.metrics(), "replication_operator_token_expiry_timestamp_seconds",
                        namespace=kube.ns, name="b-writer")
    assert expiry > time.time() + 29 * 86400
    secret_values.add(first_value)
    assert f"{kube.ns}.b-writer" in b.tokens()

    kube.apply(replication("sensors", source={"server": "reduct-a", "database": src},
                           target={"server": "reduct-b", "database": dst,
                                   "tokenRef": {"name": "b-writer"}},
                           filter={"entries": ["sensor-*"]}))
    kube.wait_condition(KIND, "sensors")
    assert kube.get(KIND, "sensors")["status"]["server"] == "reduct-a"  # type: ignore[index]
    ts = a.write(src, "sensor-1", b"first")
    skipped = a.write(src, "other", b"not replicated")
    wait_for(lambda: b.read(dst, "sensor-1", ts) == b"first", what="record replicated")

    kube.annotate("token", "b-writer", "replication.dbops.dev/rotate-requested=1")
    wait_for(lambda: secret_value(kube, "b-writer") != first_value, what="token rotated")
    secret_values.add(secret_value(kube, "b-writer"))
    kube.wait_event("sensors", "CredentialsRotated", timeout=90)
    ts2 = a.write(src, "sensor-1", b"after rotation")
    wait_for(lambda: b.read(dst, "sensor-1", ts2) == b"after rotation", timeout=90,
             what="record replicated with the rotated token")
    assert b.read(dst, "other", skipped) is None

    kube.delete(KIND, "sensors")
    kube.delete("token", "b-writer")
    wait_for(lambda: f"{kube.ns}.sensors" not in a.replications(), what="replication removed")
    wait_for(lambda: f"{kube.ns}.b-writer" not in b.tokens(), what="token removed")
    wait_for(lambda: kube.cluster.kubectl("get", "secret", "b-writer", "-n", kube.ns,
                                          check=False).returncode != 0, what="Secret removed")


def test_suspend_pauses_and_drift_is_put_back(
        reduct_env: tuple[Kube, Reduct, Reduct], unique_name: Any) -> None:
    kube, a, b = reduct_env
    src, dst = unique_name("src"), unique_name("dst")
    a.bucket(src)
    b.bucket(dst)
    base = {"source": {"server": "reduct-a", "database": src},
            "target": {"server": "reduct-b", "database": dst}}
    kube.apply(replication("pausable", **base))
    kube.wait_condition(KIND, "pausable")
    name = f"{kube.ns}.pausable"
    kube.apply(replication("pausable", **base, suspend=True))
    wait_for(lambda: a.replications().get(name, {}).get("mode") == "paused",
             what="paused on the server")
    wait_for(lambda: (kube.get(KIND, "pausable") or {}).get("status", {}).get("phase") ==
             "Suspended", what="phase Suspended")
    kube.apply(replication("pausable", **base, suspend=False))
    wait_for(lambda: a.replications().get(name, {}).get("mode") == "enabled", what="enabled again")
    wait_for(lambda: (kube.get(KIND, "pausable") or {}).get("status", {}).get("phase") ==
             "Running", what="operator settled on Running")

    a.http.delete(f"/api/v1/replications/{name}").raise_for_status()
    kube.wait_event("pausable", "DriftCorrected")
    wait_for(lambda: name in a.replications(), what="replication restored")
    ts = a.write(src, "e", b"x")
    wait_for(lambda: b.read(dst, "e", ts) == b"x", what="restored replication delivers")


def test_missing_bucket_is_stalled_with_the_servers_reason(
        reduct_env: tuple[Kube, Reduct, Reduct], unique_name: Any) -> None:
    kube, _, b = reduct_env
    dst = unique_name("dst")
    b.bucket(dst)
    kube.apply(replication("nobucket", source={"server": "reduct-a", "database": "missing"},
                           target={"server": "reduct-b", "database": dst}))
    cond = kube.wait_condition(KIND, "nobucket", "Stalled", "True")
    assert "missing" in cond["message"]


def test_couchdb_token_is_a_user_whose_credentials_replicate(
        cluster: Any, operator: OperatorProcess, namespace: str, couch_a: Any, couch_b: Any,
        unique_name: Any, secret_values: set[str]) -> None:

    kube = Kube(cluster, namespace)
    kube.apply(secret("a-admin", username=couch_a.username, password=couch_a.password),
               secret("b-admin", username=couch_b.username, password=couch_b.password),
               database_server("couch-a", couch_a.url, secret="a-admin"),
               database_server("couch-b", couch_b.url, secret="b-admin"))
    a, b = Couch(couch_a), Couch(couch_b)
    db = unique_name("tokdb")
    a.create_db(db)
    a.put(db, "doc-1", v=1)
    kube.apply(token("reader", "couch-a", permissions={"read": [db]}))
    kube.wait_condition("token", "reader")
    password = secret_value(kube, "reader", "password")
    secret_values.add(password)
    user = f"{kube.ns}.reader"
    assert secret_value(kube, "reader", "username") == user
    assert httpx.get(f"{a.url}/{db}/doc-1", auth=(user, password)).status_code == 200

    kube.apply(replication("as-reader", source={"server": "couch-a", "database": db,
                                                "tokenRef": {"name": "reader"}},
                           target={"server": "couch-b", "database": db, "create": True},
                           continuous=False))
    wait_for(lambda: "doc-1" in b.ids(db), what="replicated with the token's credentials")
    job = b.replicator_docs()[f"{kube.ns}.as-reader"]
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    assert job["source"]["headers"]["Authorization"] == expected

    kube.delete(KIND, "as-reader")
    kube.delete("token", "reader")
    wait_for(lambda: a.http.get(f"/_users/org.couchdb.user:{user}").status_code == 404,
             what="user removed")
