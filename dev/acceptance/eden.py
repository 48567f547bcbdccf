#!/usr/bin/env python3
"""Acceptance check against two REAL Sahana Eden servers (not run by `make test` or CI:
no Eden can be installed from the registries the CI machine reaches).

It drives the operator the way a user does, on the local control plane of `dev/up`
(or any cluster in $KUBECONFIG), against the Edens named in the environment, and prints
one line per check:

    EDEN_A_URL EDEN_B_URL   two Edens with the sync module (base URLs ending in /eden),
                            each running a scheduler worker (web2py.py -K eden)
    EDEN_USER EDEN_PASSWORD an administrator's e-mail and password on both

    .venv/bin/python dev/acceptance/eden.py [--namespace accept-eden]

The operator runs as its own process (as in tests/e2e). Exit code 0 when every check
passed. What it checks: DatabaseServer probes (version, a wrong password refused); a
pull Replication of org_organisation (an organisation made on A arrives on B); a push
Replication (job on A); a one-shot Replication reaching Completed; a ReplicationPolicy
over two resources run on request; a wrong peer password refused with Eden's words; a
hand edit of a task put back; deletion removing repositories, tasks and jobs. Passwords
are never printed. Records it makes are named after the namespace and a time stamp;
they stay on the Edens (Eden deletes softly anyway).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import httpx
from common import Checks, start_operator, status, until
from e2e_support import database_server, replication, secret

RUN = "replication.dbops.dev/run-requested"
ORG, OFFICE_TYPE, SECTOR = "org_organisation", "org_office_type", "org_sector"
ORG_TYPE, FACILITY_TYPE, REGION = "org_organisation_type", "org_facility_type", "org_region"


class Eden:
    """One real Eden over its REST API, as its administrator."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=f"{self.url}/", auth=(user, password), timeout=60)

    def add(self, table: str, name: str) -> None:
        prefix, _, rest = table.partition("_")
        answer = self.http.post(f"{prefix}/{rest}.s3json",
                                json={f"$_{table}": [{"name": name}]}).json()
        assert answer.get("status") == "success" and answer.get("created"), answer

    def names(self, table: str) -> set[str]:
        prefix, _, rest = table.partition("_")
        return {r["name"] for r in self.http.get(f"{prefix}/{rest}.json").json()}

    def repositories(self) -> list[dict[str, Any]]:
        return list(self.http.get("sync/repository.json").json())

    def repository_for(self, peer_url: str) -> dict[str, Any] | None:
        """The repository for a peer, by its URL (unique in Eden; a peer's registration
        may rename it)."""
        rows = self.http.get("sync/repository.json", params={"~.url": peer_url}).json()
        return rows[0] if rows else None

    def tasks(self, repository_id: int) -> list[dict[str, Any]]:
        return list(self.http.get(f"sync/repository/{repository_id}/task.json").json())

    def jobs(self, repository_id: int) -> list[dict[str, Any]]:
        return list(self.http.get(f"sync/repository/{repository_id}/job.json").json())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="accept-eden")
    args = parser.parse_args()
    env = os.environ
    a_url, b_url = env["EDEN_A_URL"].rstrip("/"), env["EDEN_B_URL"].rstrip("/")
    user, password = env["EDEN_USER"], env["EDEN_PASSWORD"]
    a, b = Eden(a_url, user, password), Eden(b_url, user, password)
    ns = args.namespace
    stamp = time.strftime("%H%M%S")
    _, kube, operator = start_operator(ns)
    checks = Checks()
    made: dict[str, Any] = {}
    try:
        def servers() -> str:
            kube.apply(secret("eden-admin", username=user, password=password),
                       secret("eden-wrong", username=user, password=password + "-wrong"),
                       database_server("eden-a", a_url, type_="eden", secret="eden-admin"),
                       database_server("eden-b", b_url, type_="eden", secret="eden-admin"),
                       database_server("eden-a-wrong", a_url, type_="eden",
                                       secret="eden-wrong"))
            kube.wait_condition("databaseserver", "eden-a", timeout=90)
            kube.wait_condition("databaseserver", "eden-b", timeout=90)
            refused = kube.wait_condition("databaseserver", "eden-a-wrong", status="False",
                                          timeout=90)
            assert refused["reason"] == "Unauthorized", refused
            st = status(kube, "databaseserver", "eden-a")
            assert st.get("version") not in (None, "", "unknown"), st
            return f"{st.get('flavour')} {st.get('version')}; wrong password: " \
                   f"{refused['reason']}"

        def pull() -> str:
            name = f"{ns} pulled {stamp}"
            a.add(ORG, name)
            kube.apply(replication("orgs", source={"server": "eden-a", "database": ORG},
                                   target={"server": "eden-b", "database": ORG},
                                   options={"intervalSeconds": 30}))
            kube.wait_condition("replication", "orgs", timeout=120)
            until("the organisation on B", lambda: name in b.names(ORG), timeout=240)
            st = until("lastSyncTime in status", lambda: (lambda s: s if s.get(
                "lastSyncTime") else None)(status(kube, "replication", "orgs")), timeout=120)
            assert st["phase"] == "Running", st
            return f"{name!r} arrived on B; phase {st['phase']}, {st.get('message')}"

        def push() -> str:
            name = f"{ns} pushed {stamp}"
            a.add(OFFICE_TYPE, name)
            kube.apply(replication("types", server="eden-a",
                                   source={"server": "eden-a", "database": OFFICE_TYPE},
                                   target={"server": "eden-b", "database": OFFICE_TYPE},
                                   options={"intervalSeconds": 30}))
            kube.wait_condition("replication", "types", timeout=120)
            until("the office type on B", lambda: name in b.names(OFFICE_TYPE), timeout=240)
            pushing = a.repository_for(b_url)
            assert pushing is not None, "no repository for B on A"
            modes = {t["resource_name"]: t["mode"] for t in a.tasks(pushing["id"])}
            assert modes.get(OFFICE_TYPE) == 2, modes
            # the pull's repository on B is still there (registrations rename it)
            pulling = b.repository_for(a_url)
            assert pulling is not None and any(
                t["resource_name"] == ORG for t in b.tasks(pulling["id"])), pulling
            kube.wait_condition("replication", "orgs", timeout=120)
            return f"{name!r} arrived on B; A's repository {pushing['name']!r}, B's " \
                   f"{pulling['name']!r}"

        def one_shot() -> str:
            name = f"{ns} once {stamp}"
            a.add(SECTOR, name)
            kube.apply(replication("once", continuous=False,
                                   source={"server": "eden-a", "database": SECTOR},
                                   target={"server": "eden-b", "database": SECTOR}))
            st = until("phase Completed", lambda: (lambda s: s if s.get("phase") in (
                "Completed", "Failed") else None)(status(kube, "replication", "once")),
                timeout=240)
            assert st["phase"] == "Completed" and st.get("completedAt"), st
            assert name in b.names(SECTOR)
            return f"Completed at {st['completedAt']}: {st.get('message')}"

        def policy() -> str:
            names = {ORG_TYPE: f"{ns} org type {stamp}",
                     FACILITY_TYPE: f"{ns} facility type {stamp}"}
            for table, name in names.items():
                a.add(table, name)
            kube.apply({"apiVersion": "replication.dbops.dev/v1alpha1",
                        "kind": "ReplicationPolicy", "metadata": {"name": "two-tables"},
                        "spec": {"server": "eden-a",
                                 "source": {"server": "eden-a",
                                            "databases": [ORG_TYPE, FACILITY_TYPE]},
                                 "target": {"server": "eden-b"},
                                 "trigger": {"type": "manual"}}})
            kube.wait_condition("replicationpolicy", "two-tables", timeout=120)
            kube.annotate("replicationpolicy", "two-tables", f"{RUN}={time.time():.0f}")
            last = until("the run ended", lambda: (lambda e: e if e.get("status") in (
                "Succeed", "Failed") else None)(
                status(kube, "replicationpolicy", "two-tables").get("lastExecution") or {}),
                timeout=240)
            assert (last["status"], last["total"], last["succeeded"]) == ("Succeed", 2, 2), \
                last
            missing = [n for t, n in names.items() if n not in b.names(t)]
            assert not missing, f"not on B: {missing}"
            return f"execution {last['id']} {last['status']} ({last['succeeded']}/" \
                   f"{last['total']}, trigger {last['trigger']})"

        def wrong_peer() -> str:
            kube.apply(replication("refused",
                                   source={"server": "eden-a-wrong", "database": REGION},
                                   target={"server": "eden-b", "database": REGION}))
            cond = until("the Replication refused", lambda: (lambda c: c if c and c.get(
                "status") == "False" and c.get("reason") == "PeerUnauthorized" else None)(
                kube.condition("replication", "refused", "Ready")), timeout=120)
            assert "Authentication Required" in cond["message"], cond
            assert not any(t["resource_name"] == REGION
                           for r in [b.repository_for(a_url)] if r
                           for t in b.tasks(r["id"])), "nothing written"
            return f"{cond['reason']}: {cond['message'][:200]}"

        def hand_edit() -> str:
            repository = b.repository_for(a_url)
            assert repository is not None
            made["b-repository"] = repository["id"]
            b.http.put(f"sync/repository/{repository['id']}.s3json", json={
                "$_sync_repository": [{"$_sync_task": [
                    {"resource_name": ORG, "mode": "3", "conflict_policy": "THIS"}]}]})
            event = kube.wait_event("orgs", "DriftCorrected", timeout=120)
            until("the task put back", lambda: next(
                t for t in b.tasks(repository["id"]) if t["resource_name"] == ORG)["mode"] == 1,
                timeout=60)
            return event["message"][:200]

        def deletion() -> str:
            a_repo, b_repo = a.repository_for(b_url), b.repository_for(a_url)
            for kind, name in (("replication", "orgs"), ("replication", "types"),
                               ("replication", "once"), ("replication", "refused"),
                               ("replicationpolicy", "two-tables")):
                kube.delete(kind, name)
            until("all gone", lambda: all(kube.get(k, n) is None for k, n in (
                ("replication", "orgs"), ("replication", "types"), ("replication", "once"),
                ("replication", "refused"), ("replicationpolicy", "two-tables"))),
                timeout=240)
            left = []
            for eden, repo in ((a, a_repo), (b, b_repo)):
                if repo is None:
                    continue
                still = {r["id"] for r in eden.repositories()}
                if repo["id"] in still:
                    left.append(f"{eden.url}: repository {repo['id']} with tasks "
                                f"{[t['resource_name'] for t in eden.tasks(repo['id'])]} "
                                f"and jobs {[j['task_name'] for j in eden.jobs(repo['id'])]}")
            assert not left, left
            return f"removed repositories {a_repo and a_repo['id']} on A and " \
                   f"{b_repo and b_repo['id']} on B with their tasks and jobs"

        for name, fn in (("servers", servers), ("pull", pull), ("push", push),
                         ("one-shot", one_shot), ("policy with a manual run", policy),
                         ("wrong peer password", wrong_peer), ("hand edit put back", hand_edit),
                         ("deletion", deletion)):
            checks.run(name, fn)
    finally:
        operator.stop()
        checks.no_secret_in_log(operator, (password,))
    return checks.summary()


if __name__ == "__main__":
    raise SystemExit(main())
