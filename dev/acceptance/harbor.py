#!/usr/bin/env python3
"""Acceptance check against a REAL Harbor (not run by `make test` or CI: no Harbor can
be installed from the registries the CI machine reaches).

It drives the operator the way a user does, on the local control plane of `dev/up`
(or any cluster in $KUBECONFIG), against the Harbors and the plain registry named in
the environment, and prints one line per check:

    HARBOR_A_URL HARBOR_B_URL HARBOR_USER HARBOR_PASSWORD   two Harbors (A pushes to B)
    REGISTRY_URL REGISTRY_USER REGISTRY_PASSWORD             a registry-v2 server (htpasswd)
    HARBOR_IMAGE=library/hello                               a repository on A to replicate

    .venv/bin/python dev/acceptance/harbor.py [--namespace accept-harbor]

The operator runs as its own process (as in tests/e2e). Exit code 0 when every check
passed. What it checks: DatabaseServer probes (and a wrong password refused); a push
policy to B created, quiet, drift put back, run on demand to Succeed (or tasksFinished);
a policy to the plain registry with the image arriving there; a robot Token that can read
its project; deletion removing policy and registries. Secrets never printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from typing import Any

import httpx
from common import Checks, start_operator, until
from e2e_support import database_server, secret
from harborapi.client import CookieDiscarder

API = "/api/v2.0"
RUN = "replication.dbops.dev/run-requested"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="accept-harbor")
    args = parser.parse_args()
    env = os.environ
    a_url, b_url = env["HARBOR_A_URL"].rstrip("/"), env["HARBOR_B_URL"].rstrip("/")
    user, password = env["HARBOR_USER"], env["HARBOR_PASSWORD"]
    reg_url, reg_user, reg_password = (env["REGISTRY_URL"].rstrip("/"), env["REGISTRY_USER"],
                                       env["REGISTRY_PASSWORD"])
    image = env.get("HARBOR_IMAGE", "library/hello")
    repository = image.split("/", 1)[1]
    harbor_a = httpx.Client(base_url=a_url, auth=(user, password), timeout=30,
                            cookies=CookieDiscarder())
    harbor_b = httpx.Client(base_url=b_url, auth=(user, password), timeout=30,
                            cookies=CookieDiscarder())
    cluster, kube, operator = start_operator(args.namespace)
    checks = Checks()
    state: dict[str, Any] = {}
    try:
        def servers() -> str:
            kube.apply(secret("harbor-admin", username=user, password=password),
                       secret("wrong-admin", username=user, password=password + "-wrong"),
                       database_server("harbor-a", a_url, type_="harbor", secret="harbor-admin"),
                       database_server("harbor-b", b_url, type_="harbor", secret="harbor-admin"),
                       database_server("harbor-wrong", a_url, type_="harbor",
                                       secret="wrong-admin"))
            ready = kube.wait_condition("databaseserver", "harbor-a", timeout=60)
            kube.wait_condition("databaseserver", "harbor-b", timeout=60)
            refused = kube.wait_condition("databaseserver", "harbor-wrong", status="False",
                                          timeout=60)
            assert refused["reason"] == "CredentialsRefused", refused
            return f"{ready['message']}; wrong password: {refused['reason']}"

        def push_policy() -> str:
            kube.apply({"apiVersion": "replication.dbops.dev/v1alpha1",
                        "kind": "ReplicationPolicy", "metadata": {"name": "to-b"},
                        "spec": {"source": {"server": "harbor-a", "databases": [f"{image}"]},
                                 "target": {"server": "harbor-b",
                                            "namespace": f"accept-{args.namespace}"},
                                 "trigger": {"type": "scheduled", "schedule": "0 3 * * *"}}})
            kube.wait_condition("replicationpolicy", "to-b", timeout=90)
            st = kube.get("replicationpolicy", "to-b")["status"]
            state["to-b"] = st["externalName"]
            policy = harbor_a.get(f"{API}/replication/policies/{st['externalName']}").json()
            assert policy["trigger"]["trigger_settings"]["cron"] == "0 0 3 * * *", policy
            return f"policy {st['externalName']}, registries {st['registries']}"

        def drift() -> str:
            policy_id = state["to-b"]
            policy = harbor_a.get(f"{API}/replication/policies/{policy_id}").json()
            edited = {**policy, "dest_namespace": "elsewhere"}
            harbor_a.put(f"{API}/replication/policies/{policy_id}", json=edited
                         ).raise_for_status()
            until("the policy put back", lambda: harbor_a.get(
                f"{API}/replication/policies/{policy_id}").json().get("dest_namespace")
                == f"accept-{args.namespace}")
            return kube.wait_event("to-b", "DriftCorrected")["message"]

        def run_on_demand() -> str:
            kube.annotate("replicationpolicy", "to-b", f"{RUN}={time.time():.0f}")
            last = until("an execution with all tasks ended", lambda: (
                kube.get("replicationpolicy", "to-b")["status"].get("lastExecution") or {}
            ) if (lambda e: e.get("status") in ("Succeed", "Failed") or e.get(
                "tasksFinished"))(kube.get("replicationpolicy", "to-b")["status"].get(
                    "lastExecution") or {}) else None, timeout=180)
            assert last.get("status") == "Succeed" or (
                last.get("tasksFinished") and not last.get("failed")), last
            closed = until("Harbor to close the execution", lambda: (
                kube.get("replicationpolicy", "to-b")["status"]["lastExecution"]
                if kube.get("replicationpolicy", "to-b")["status"]["lastExecution"][
                    "status"] != "InProgress" else None), timeout=120)
            tags = harbor_b.get(f"{API}/projects/accept-{args.namespace}/repositories")
            return (f"execution {last['id']}: first seen {last['status']}"
                    f"{' (tasksFinished)' if last.get('tasksFinished') else ''}, then "
                    f"{closed['status']}; on B: {[r['name'] for r in tags.json()]}")

        def plain_registry() -> str:
            kube.apply(secret("mirror-creds", username=reg_user, password=reg_password),
                       {"apiVersion": "replication.dbops.dev/v1alpha1",
                        "kind": "ReplicationPolicy", "metadata": {"name": "to-mirror"},
                        "spec": {"source": {"server": "harbor-a", "databases": [image]},
                                 "target": {"registry": {
                                     "type": "docker-registry", "url": reg_url,
                                     "secretRef": {"name": "mirror-creds"}},
                                     "namespace": f"m-{args.namespace}"}}})
            kube.wait_condition("replicationpolicy", "to-mirror", timeout=90)
            kube.annotate("replicationpolicy", "to-mirror", f"{RUN}={time.time():.0f}")
            until("the image in the plain registry", lambda: f"m-{args.namespace}/"
                  f"{repository.split('/')[-1]}" in httpx.get(
                      f"{reg_url}/v2/_catalog", auth=(reg_user, reg_password)).json().get(
                      "repositories", []), timeout=180)
            kube.apply(secret("mirror-creds", username=reg_user, password="not-it"))
            cond = kube.wait_condition("replicationpolicy", "to-mirror", status="False",
                                       timeout=90)
            kube.apply(secret("mirror-creds", username=reg_user, password=reg_password))
            kube.wait_condition("replicationpolicy", "to-mirror", timeout=90)
            return f"image arrived; wrong password reported as {cond['reason']}: " \
                   f"{cond['message'][:160]}"

        def robot_token() -> str:
            harbor_b.post(f"{API}/projects", json={"project_name": f"r-{args.namespace}",
                                                    "metadata": {"public": "false"}})
            kube.apply({"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "Token",
                        "metadata": {"name": "reader"},
                        "spec": {"server": "harbor-b",
                                 "permissions": {"read": [f"r-{args.namespace}"]}}})
            kube.wait_condition("token", "reader", timeout=90)
            out = cluster.kubectl("get", "secret", "reader", "-n", args.namespace, "-o",
                                  "json").stdout
            data = {k: base64.b64decode(v).decode()
                    for k, v in json.loads(out)["data"].items()}
            robot = (data["username"], data["token"])
            project_code = httpx.get(f"{b_url}{API}/projects/r-{args.namespace}", auth=robot,
                                     timeout=30).status_code
            repos_code = httpx.get(f"{b_url}{API}/projects/r-{args.namespace}/repositories",
                                   auth=robot, timeout=30).status_code
            assert (project_code, repos_code) == (200, 200), (project_code, repos_code)
            return f"{data['username']} reads its project (200) and lists it (200)"

        def deletion() -> str:
            registries = [r["name"] for r in harbor_a.get(f"{API}/registries",
                                                           params={"page_size": 100}).json()]
            ours = [r for r in registries if r.startswith(f"dbops.{args.namespace}.")]
            for name in ("to-b", "to-mirror"):
                kube.delete("replicationpolicy", name)
            until("both policies gone", lambda: kube.get("replicationpolicy", "to-b") is None
                  and kube.get("replicationpolicy", "to-mirror") is None, timeout=240)
            left = [r["name"] for r in harbor_a.get(f"{API}/registries",
                                                    params={"page_size": 100}).json()
                    if r["name"].startswith(f"dbops.{args.namespace}.")]
            assert left == [], left
            kube.delete("token", "reader")
            return f"removed policies and registries {ours}"

        for name, fn in (("servers", servers), ("push policy", push_policy),
                         ("drift", drift), ("run on demand", run_on_demand),
                         ("plain registry", plain_registry), ("robot token", robot_token),
                         ("deletion", deletion)):
            checks.run(name, fn)
    finally:
        operator.stop()
        checks.no_secret_in_log(operator, (password, reg_password))
    return checks.summary()


if __name__ == "__main__":
    raise SystemExit(main())
