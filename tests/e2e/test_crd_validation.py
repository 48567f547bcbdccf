"""Bad specs are refused by the real API server, with a message naming the field."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

API = "replication.dbops.dev/v1alpha1"


def server(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "DatabaseServer", "metadata": {"name": "s"},
            "spec": {"type": "couchdb", "url": "http://couch:5984", **spec}}


def repl(**spec: Any) -> dict[str, Any]:
    base = {"source": {"server": "a", "database": "x"}, "target": {"server": "b",
                                                                  "database": "x"}}
    return {"apiVersion": API, "kind": "Replication", "metadata": {"name": "r"},
            "spec": {**base, **spec}}


def policy(**spec: Any) -> dict[str, Any]:
    base = {"source": {"server": "h", "databases": ["library/*"]}, "target": {"server": "d"}}
    return {"apiVersion": API, "kind": "ReplicationPolicy", "metadata": {"name": "p"},
            "spec": {**base, **spec}}


def token(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Token", "metadata": {"name": "t"},
            "spec": {"server": "s", **spec}}


INVALID = [
    ("server-type-enum", server(type="mysql"), "spec.type"),
    ("server-url-scheme", server(url="ftp://couch"), "spec.url"),
    ("server-url-userinfo", server(url="http://admin:pw@couch:5984"), "spec.url"),
    ("server-missing-url", {**server(), "spec": {"type": "couchdb"}}, "spec.url"),
    ("server-auth-enum", server(auth={"type": "kerberos"}), "spec.auth.type"),
    ("server-auth-needs-secret", server(auth={"type": "basic"}), "spec.auth.secretRef"),
    ("server-iam-only-cloudant", server(auth={"type": "iam", "secretRef": {"name": "k"}}),
     "spec.auth.type iam"),
    ("server-session-not-reduct", server(type="reductstore", auth={
        "type": "session", "secretRef": {"name": "k"}}), "spec.auth.type session"),
    ("server-tls-exclusive", server(tls={"insecureSkipVerify": True,
                                         "caSecretRef": {"name": "ca"}}), "spec.tls"),
    ("server-timeout-min", server(requestTimeoutSeconds=0), "spec.requestTimeoutSeconds"),
    ("server-concurrency-max", server(maxConcurrentRequests=1000),
     "spec.maxConcurrentRequests"),
    ("server-secret-namespace", server(auth={"type": "basic", "secretRef": {
        "name": "k", "namespace": "other"}}), 'unknown field "spec.auth.secretRef.namespace"'),
    ("repl-missing-target", {**repl(), "spec": {"source": {"server": "a", "database": "x"}}},
     "spec.target"),
    ("repl-same-db", repl(target={"server": "a", "database": "x"}), "spec.source and "
                                                                     "spec.target"),
    ("repl-docids-selector", repl(filter={"docIds": ["a"], "selector": {"t": 1}}),
     "spec.filter.docIds"),
    ("repl-selector-designfilter", repl(filter={"selector": {"t": 1},
                                                "designFilter": "d/f"}), "spec.filter.selector"),
    ("repl-mixed-filters", repl(filter={"selector": {"t": 1}, "entries": ["e"]}),
     "ReductStore filters"),
    ("repl-designfilter-pattern", repl(filter={"designFilter": "nofilter"}),
     "spec.filter.designFilter"),
    ("repl-eachn-min", repl(filter={"eachN": 0}), "spec.filter.eachN"),
    ("repl-eachs-positive", repl(filter={"eachS": 0}), "spec.filter.eachS"),
    ("repl-deletion-policy", repl(deletionPolicy="Keep"), "spec.deletionPolicy"),
    ("repl-empty-database", repl(source={"server": "a", "database": ""}),
     "spec.source.database"),
    ("repl-tokenref-namespace", repl(target={"server": "b", "database": "y", "tokenRef": {
        "name": "t", "namespace": "other"}}), 'unknown field "spec.target.tokenRef.namespace"'),
    ("policy-scheduled-needs-cron", policy(trigger={"type": "scheduled"}),
     "spec.trigger.schedule is required"),
    ("policy-cron-only-scheduled", policy(trigger={"type": "manual", "schedule": "* * * * *"}),
     "spec.trigger.schedule is only allowed"),
    ("policy-bad-cron", policy(trigger={"type": "scheduled", "schedule": "hourly"}),
     "spec.trigger.schedule"),
    ("policy-filter-type", policy(filters=[{"type": "size", "value": "1"}]),
     "spec.filters[0].type"),
    ("policy-filter-name", policy(filters=[{"type": "name", "value": "library/*"}]),
     "spec.filters[0].type"),
    ("policy-filter-twice", policy(filters=[{"type": "tag", "value": "v*"},
                                            {"type": "tag", "value": "latest"}]),
     "spec.filters may name each filter type only once"),
    ("policy-resource-value", policy(filters=[{"type": "resource", "value": "chart"}]),
     "must be image or artifact"),
    ("policy-decoration-on-resource", policy(filters=[
        {"type": "resource", "value": "image", "decoration": "excludes"}]),
     "decoration is only allowed on tag and label"),
    ("policy-bad-macro", policy(trigger={"type": "scheduled", "schedule": "@fortnightly"}),
     "spec.trigger.schedule"),
    ("policy-no-databases", policy(source={"server": "h", "databases": []}),
     "spec.source.databases"),
    ("policy-history-max", policy(historyLimit=1000), "spec.historyLimit"),
    ("policy-target-server-and-registry", policy(target={
        "server": "d", "registry": {"type": "docker-registry", "url": "https://r"}}),
     "spec.target needs exactly one of server"),
    ("policy-target-neither", policy(target={"namespace": "mirror"}),
     "spec.target needs exactly one of server"),
    ("policy-both-registries", policy(
        source={"registry": {"type": "quay", "url": "https://quay.io"}, "databases": ["a/*"]},
        target={"registry": {"type": "docker-registry", "url": "https://r"}}),
     "spec.source.registry and spec.target.registry"),
    ("policy-registry-type", policy(target={"registry": {"type": "helm-hub",
                                                         "url": "https://r"}}),
     "spec.target.registry.type"),
    ("policy-registry-userinfo", policy(target={"registry": {
        "type": "docker-registry", "url": "https://bot:pw@r"}}), "spec.target.registry.url"),
    ("policy-registry-secret-namespace", policy(target={"registry": {
        "type": "docker-registry", "url": "https://r",
        "secretRef": {"name": "k", "namespace": "other"}}}),
     'unknown field "spec.target.registry.secretRef.namespace"'),
    ("policy-server-not-a-side", policy(server="elsewhere"), "spec.server must name"),
    ("policy-only-exclusions", policy(source={"server": "c", "databases": ["!tmp-*"]}),
     "spec.source.databases needs at least one pattern"),
    ("policy-bare-exclusion", policy(source={"server": "c", "databases": ["a", "!"]}),
     "spec.source.databases[] - an exclusion"),
    ("policy-unclosed-bracket", policy(source={"server": "c", "databases": ["db-[0-9"]}),
     "spec.source.databases[] - a '[' or '{'"),
    ("policy-prefix-characters", policy(target={"server": "d", "databasePrefix": "eu.*"}),
     "spec.target.databasePrefix may hold only"),
    ("policy-filter-and-filters", policy(filter={"selector": {"type": "order"}},
                                         filters=[{"type": "tag", "value": "v*"}]),
     "spec.filter (CouchDB, ReductStore) and spec.filters"),
    ("policy-prefix-and-namespace", policy(target={"server": "d", "databasePrefix": "eu-",
                                                   "namespace": "mirror"}),
     "spec.target.databasePrefix (CouchDB, ReductStore) cannot"),
    ("policy-tokenref-needs-server", policy(target={
        "registry": {"type": "docker-registry", "url": "https://r"},
        "tokenRef": {"name": "w"}}), "spec.target.tokenRef needs spec.target.server"),
    ("repl-runid-continuous", repl(runId="1"), "spec.runId is for one-shot jobs"),
    ("token-full-and-lists", token(permissions={"fullAccess": True, "read": ["a"]}),
     "spec.permissions.fullAccess"),
    ("token-secret-name", token(secretName="Not_Valid"), "spec.secretName"),
    ("token-expiry-negative", token(expiresInDays=-1), "spec.expiresInDays"),
    ("token-rotation-min", token(rotation={"everyDays": 0}), "spec.rotation.everyDays"),
]


@pytest.fixture
def kube(cluster: Any, crds: None, namespace: str) -> Any:
    def apply(manifest: dict[str, Any], check: bool = True) -> Any:
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        return cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=check)
    apply.namespace = namespace  # type: ignore[attr-defined]
    return apply


@pytest.mark.parametrize("manifest, field", [(m, f) for _, m, f in INVALID],
                         ids=[name for name, _, _ in INVALID])
def test_invalid_manifest_is_refused_naming_the_field(kube: Any, manifest: dict[str, Any],
                                                      field: str) -> None:
    result = kube(manifest, check=False)
    assert result.returncode != 0, f"accepted: {manifest['spec']}"
    assert field in result.stderr, result.stderr


def test_there_are_at_least_twenty_refusals() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("manifest", [server(), repl(), policy(), token()],
                         ids=["server", "replication", "policy", "token"])
def test_valid_manifests_are_accepted_with_defaults(kube: Any, cluster: Any,
                                                    manifest: dict[str, Any]) -> None:
    kube(manifest)
    kind, name = manifest["kind"].lower(), manifest["metadata"]["name"]
    got = json.loads(cluster.kubectl("get", kind, name, "-n", kube.namespace, "-o",
                                     "json").stdout)["spec"]
    defaults = {"databaseserver": {"requestTimeoutSeconds": 30, "maxConcurrentRequests": 8},
                "replication": {"continuous": True, "suspend": False,
                                "deletionPolicy": "Delete"},
                "replicationpolicy": {"historyLimit": 10, "enabled": True},
                "token": {"expiresInDays": 0, "deletionPolicy": "Delete"}}[kind]
    assert {k: got[k] for k in defaults} == defaults


@pytest.mark.parametrize("manifest, change, message", [
    (server(), {"type": "cloudant"}, "spec.type is immutable"),
    (repl(externalName="job-1"), {"externalName": "job-2"}, "spec.externalName cannot be"),
], ids=["server-type", "replication-external-name"])
def test_immutable_fields(kube: Any, manifest: dict[str, Any], change: dict[str, Any],
                          message: str) -> None:
    kube(manifest)
    changed = {**manifest, "spec": {**manifest["spec"], **change}}
    result = kube(changed, check=False)
    assert result.returncode != 0 and message in result.stderr


def test_kubectl_explain_describes_the_fields(cluster: Any, crds: None) -> None:
    out = cluster.kubectl("explain", "replication.spec.filter").stdout
    assert "Mango selector" in out and "docIds" in out


def test_examples_are_accepted_by_the_api_server(cluster: Any, crds: None, namespace: str
                                                 ) -> None:
    from e2e_support import ROOT

    env = {"COUCHDB_USER": "admin", "COUCHDB_PASSWORD": "example", "COUCHDB_A_URL":
           "http://couch-a:5984", "COUCHDB_B_URL": "http://couch-b:5984", "REDUCTSTORE_TOKEN":
           "example", "REDUCTSTORE_A_URL": "http://reduct-a:8383", "REDUCTSTORE_B_URL":
           "http://reduct-b:8383", "HARBOR_USER": "admin", "HARBOR_PASSWORD": "example",
           "HARBOR_A_URL": "https://harbor-a.example.net",
           "HARBOR_B_URL": "https://harbor-b.example.net",
           "REGISTRY_URL": "https://mirror.example.net", "REGISTRY_USER": "mirror",
           "REGISTRY_PASSWORD": "example",
           "EDEN_USER": "admin@example.org",
           "EDEN_PASSWORD": "example", "EDEN_A_URL": "https://hq.example.org/eden",
           "EDEN_B_URL": "https://field.example.org/eden"}
    files = sorted((ROOT / "examples").glob("*/*.yaml"))
    assert files
    for path in files:
        text = path.read_text()
        for key, value in env.items():
            text = text.replace("${" + key + "}", value)
        unknown = re.findall(r"\$\{[A-Z_]+\}", text)
        assert not unknown, f"{path}: placeholders the test does not know: {unknown}"
        cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=text)
