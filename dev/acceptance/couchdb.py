#!/usr/bin/env python3
"""Acceptance check against two REAL Apache CouchDB 3.x servers (not run by `make test`
or CI: the suite runs against the servers `dev/up` starts, and CouchDB itself cannot be
installed from the registries the CI machine reaches).

It drives the operator the way a user does, on the local control plane of `dev/up`
(or any cluster in $KUBECONFIG), against the CouchDBs named in the environment, and
prints one line per check:

    COUCHDB_A_URL COUCHDB_B_URL     two CouchDB 3.x servers (jobs run on B, pulling from A;
                                    B must reach A's URL)
    COUCHDB_USER COUCHDB_PASSWORD   an administrator on both

    .venv/bin/python dev/acceptance/couchdb.py [--namespace accept-couch]

The operator runs as its own process (as in tests/e2e). Exit code 0 when every check
passed. What it checks: DatabaseServer probes (a wrong password refused, on a user made
for it so that CouchDB's lockout never hits the administrator); a one-shot Replication
Completed with CouchDB's counters and how soon the status followed the job; a
continuous one following new documents; a missing source database (the job crashing)
reported with its cause; suspend and resume; a Token (CouchDB user) used by a
Replication and rotated; a hand-made `_replicator` doc exported and adopted without a
write; deletion removing the jobs (an Orphan one left), the Token's users and nothing of
the namespace left in `_replicator`. Passwords and tokens are never printed. The
databases it makes are named after the namespace and removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from common import ROOT, Checks, start_operator, status, until
from e2e_support import database_server, metric_sum, replication, secret

ROTATE = "replication.dbops.dev/rotate-requested"
RESYNC = 5.0  # start_operator's --resync-interval
GRACE = 120  # the Token's rotation.graceSeconds (the old user goes before, see README)


class Couch:
    """One real CouchDB over its HTTP API, as its administrator (or another user)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, auth=(user, password), timeout=30)

    def create_db(self, db: str) -> None:
        answer = self.http.put(f"/{quote(db, safe='')}")
        assert answer.status_code in (201, 202, 412), answer.text

    def drop_db(self, db: str) -> None:
        self.http.delete(f"/{quote(db, safe='')}")

    def bulk(self, db: str, ids: list[str]) -> None:
        answer = self.http.post(f"/{quote(db, safe='')}/_bulk_docs",
                                json={"docs": [{"_id": i, "n": i} for i in ids]})
        assert answer.status_code == 201 and all(r.get("ok") for r in answer.json()), \
            answer.text[:300]

    def ids(self, db: str) -> set[str]:
        answer = self.http.get(f"/{quote(db, safe='')}/_all_docs")
        if answer.status_code != 200:
            return set()
        return {r["id"] for r in answer.json()["rows"] if not r["id"].startswith("_design/")}

    def doc(self, db: str, doc_id: str) -> dict[str, Any] | None:
        answer = self.http.get(f"/{quote(db, safe='')}/{quote(doc_id, safe='')}")
        return dict(answer.json()) if answer.status_code == 200 else None

    def job(self, doc_id: str) -> dict[str, Any] | None:
        """The scheduler's view of a `_replicator` doc (state, info)."""
        answer = self.http.get(f"/_scheduler/docs/_replicator/{quote(doc_id, safe='')}")
        return dict(answer.json()) if answer.status_code == 200 else None

    def replicator_docs(self) -> dict[str, dict[str, Any]]:
        answer = self.http.get("/_replicator/_all_docs", params={"include_docs": "true"})
        return {r["id"]: r["doc"] for r in answer.json()["rows"]
                if not r["id"].startswith("_design/")}

    def add_user(self, name: str, password: str) -> None:
        answer = self.http.put(f"/_users/org.couchdb.user:{name}", json={
            "name": name, "password": password, "roles": [], "type": "user"})
        assert answer.status_code in (201, 202), answer.text[:300]

    def drop_user(self, name: str) -> None:
        doc = self.doc("_users", f"org.couchdb.user:{name}")
        if doc:
            self.http.delete(f"/_users/org.couchdb.user:{name}", params={"rev": doc["_rev"]})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def header_user(endpoint: Any) -> str:
    """The user name in a job endpoint's `headers.Authorization` (never the password)."""
    header = (endpoint.get("headers") or {}).get("Authorization", "") \
        if isinstance(endpoint, dict) else ""
    if not header.startswith("Basic "):
        return ""
    return base64.b64decode(header[6:]).decode().partition(":")[0]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def first_terminal_doc(couch: Couch, doc_id: str, seen: dict[str, Any],
                       opened: threading.Event) -> None:
    """Follow the server's `_replicator/_changes` for one doc and note (in `seen`) when
    it first says completed or failed: the moment CouchDB wrote it, to the feed's delay."""
    params = {"feed": "continuous", "since": "now", "filter": "_doc_ids",
              "doc_ids": json.dumps([doc_id]), "include_docs": "true",
              "heartbeat": "1000", "timeout": "150000"}
    with httpx.Client(base_url=couch.url, auth=couch.http.auth,
                      timeout=httpx.Timeout(30.0)) as http, \
            http.stream("GET", "/_replicator/_changes", params=params) as answer:
        opened.set()
        for line in answer.iter_lines():
            doc = json.loads(line).get("doc") or {} if line.strip() else {}
            if doc.get("_replication_state") in ("completed", "failed"):
                seen["couch"], seen["doc"] = time.time(), doc
                return


def watch_phase(env: dict[str, str], ns: str, name: str, wanted: tuple[str, ...],
                seen: dict[str, Any]) -> subprocess.Popen[str]:
    """`kubectl get --watch` on a Replication's phase; notes (in `seen`) when it is first
    one of `wanted`, as the API server hands the change out."""
    proc = subprocess.Popen(["kubectl", "get", "replication", name, "-n", ns, "--watch",
                             "-o", 'jsonpath={.status.phase}{"\\n"}'],
                            stdout=subprocess.PIPE, text=True, env=env)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() in wanted:
                seen.setdefault("status", time.time())
                return

    threading.Thread(target=read, daemon=True).start()
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="accept-couch")
    args = parser.parse_args()
    env = os.environ
    a_url, b_url = env["COUCHDB_A_URL"].rstrip("/"), env["COUCHDB_B_URL"].rstrip("/")
    user, password = env["COUCHDB_USER"], env["COUCHDB_PASSWORD"]
    a, b = Couch(a_url, user, password), Couch(b_url, user, password)
    ns = args.namespace
    src, once_db, cont_db = f"{ns}-src", f"{ns}-once", f"{ns}-cont"
    tok_db, hand_db, missing_db = f"{ns}-tok", f"{ns}-hand", f"{ns}-nope"
    hand_id = f"hand-{ns}"
    probe_user, probe_password = f"{ns}-probe", secrets.token_urlsafe(18)
    wrong_password = secrets.token_urlsafe(18)
    cluster, kube, operator = start_operator(ns)
    checks = Checks()
    made: dict[str, Any] = {"token-values": set()}

    def phase(name: str, *wanted: str) -> dict[str, Any] | None:
        st = status(kube, "replication", name)
        return st if st.get("phase") in wanted else None

    def token_secret(name: str) -> dict[str, str]:
        out = cluster.kubectl("get", "secret", name, "-n", ns, "-o", "json", check=False)
        if out.returncode != 0:
            return {}
        obj = json.loads(out.stdout)
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        data["@generation"] = (obj["metadata"].get("annotations") or {}).get(
            "replication.dbops.dev/credential-generation", "")
        made["token-values"].update(v for k, v in data.items() if k in ("password", "token"))
        return data

    try:
        def servers() -> str:
            a.add_user(probe_user, probe_password)
            kube.apply(secret("couch-admin", username=user, password=password),
                       secret("couch-wrong", username=probe_user, password=wrong_password),
                       database_server("couch-a", a_url, secret="couch-admin"),
                       database_server("couch-b", b_url, secret="couch-admin"),
                       database_server("couch-wrong", a_url, secret="couch-wrong"))
            kube.wait_condition("databaseserver", "couch-a", timeout=60)
            kube.wait_condition("databaseserver", "couch-b", timeout=60)
            refused = kube.wait_condition("databaseserver", "couch-wrong", status="False",
                                          timeout=60)
            assert refused["reason"] in ("CredentialsRefused", "Unauthorized"), refused
            found = []
            for name in ("couch-a", "couch-b"):
                obj = kube.get("databaseserver", name) or {}
                st = obj.get("status") or {}
                assert obj["spec"]["type"] == "couchdb", obj["spec"]
                assert "couch" in str(st.get("flavour", "")).lower() and str(
                    st.get("version", "")).startswith("3."), st
                found.append(f"{st['flavour']} {st['version']}")
            return f"{', '.join(found)}; wrong password: {refused['reason']}: " \
                   f"{refused['message'][:140]}"

        def one_shot() -> str:
            a.create_db(src)
            a.bulk(src, [f"doc-{i:03d}" for i in range(50)])
            job_id = f"{ns}.once"
            seen: dict[str, Any] = {}
            feed_open = threading.Event()
            feed = threading.Thread(target=first_terminal_doc, daemon=True,
                                    args=(b, job_id, seen, feed_open))
            feed.start()
            assert feed_open.wait(30), "B's _replicator/_changes did not answer"
            kube.apply(replication("once", continuous=False, deletionPolicy="Orphan",
                                   source={"server": "couch-a", "database": src},
                                   target={"server": "couch-b", "database": once_db,
                                           "create": True}))
            watch = watch_phase(cluster.env, ns, "once", ("Completed", "Failed"), seen)
            try:
                until("phase Completed (watched)", lambda: "status" in seen, timeout=120,
                      poll=0.1)
                until("the completed doc in B's _replicator/_changes",
                      lambda: "couch" in seen, timeout=10, poll=0.1)
            finally:
                watch.terminate()
                watch.wait(10)
            st = status(kube, "replication", "once")
            doc = seen["doc"]
            assert st["phase"] == "Completed" and st.get("completedAt"), st
            stats = doc.get("_replication_stats") or {}
            assert stats.get("docs_written") == 50, stats
            assert (st.get("progress") or {}).get("docsWritten") == 50, st.get("progress")
            on_b = b.ids(once_db)
            assert len(on_b) == 50, f"{len(on_b)} docs on B"
            observed = seen["status"] - seen["couch"]
            from_state_time = seen["status"] - epoch(doc["_replication_state_time"])
            assert observed < 2.0, f"status Completed {observed:.2f} s after CouchDB " \
                f"wrote the completed doc"
            return (f"50 docs on B, progress.docsWritten {st['progress']['docsWritten']} = "
                    f"_replication_stats.docs_written; status Completed {observed:.2f} s "
                    f"after the completed doc came through B's _replicator/_changes "
                    f"(both watched), {from_state_time:.2f} s after _replication_state_time "
                    f"{doc['_replication_state_time']} (whole seconds)")

        def continuous() -> str:
            kube.apply(replication("cont", continuous=True,
                                   source={"server": "couch-a", "database": src},
                                   target={"server": "couch-b", "database": cont_db,
                                           "create": True}))
            until("phase Running", lambda: phase("cont", "Running"), timeout=90, poll=0.5)
            until("50 docs on B", lambda: len(b.ids(cont_db)) == 50, timeout=90, poll=0.5)
            first = until("progress.docsWritten 50", lambda: (lambda p: p if p.get(
                "docsWritten") == 50 else None)(status(kube, "replication", "cont").get(
                    "progress") or {}), timeout=60, poll=1)
            a.bulk(src, [f"more-{i:02d}" for i in range(10)])
            until("the 10 new docs on B", lambda: len(b.ids(cont_db)) == 60, timeout=90,
                  poll=0.5)
            started = time.monotonic()
            progress = until("progress.docsWritten 60", lambda: (lambda p: p if (p.get(
                "docsWritten") or 0) >= 60 else None)(status(kube, "replication", "cont").get(
                    "progress") or {}), timeout=60, poll=1)
            took = time.monotonic() - started
            job = b.job(f"{ns}.cont") or {}
            info = job.get("info") or {}
            assert job.get("state") == "running", job
            assert progress["docsWritten"] == info.get("docs_written") == 60, (progress, info)
            return (f"docsWritten {first['docsWritten']} -> {progress['docsWritten']} "
                    f"(scheduler info.docs_written {info.get('docs_written')}), status "
                    f"{took:.1f} s after the docs were on B; phase Running")

        def missing_source() -> str:
            applied = time.monotonic()
            kube.apply(replication("missing", continuous=True,
                                   source={"server": "couch-a", "database": missing_db},
                                   target={"server": "couch-b", "database": f"{missing_db}-copy",
                                           "create": True}))
            seen: dict[str, Any] = {}

            def reported() -> dict[str, Any] | None:
                if "crashing" not in seen:
                    job = b.job(f"{ns}.missing") or {}
                    if job.get("state") in ("crashing", "failed", "error"):
                        seen["crashing"], seen["job"] = time.monotonic(), job
                cond = kube.condition("replication", "missing", "Ready")
                if cond and cond["status"] == "False" and (
                        "not_found" in cond.get("message", "").lower()
                        or cond.get("reason") == "DatabaseNotFound"):
                    return cond
                return None

            cond = until("Ready=False naming the missing database", reported,
                         timeout=RESYNC * 6 + 60, poll=0.5)
            reported_at = time.monotonic()
            job = seen.get("job") or b.job(f"{ns}.missing") or {}
            st = status(kube, "replication", "missing")
            error = str((job.get("info") or {}).get("error", ""))
            assert job.get("state") == "crashing" and "db_not_found" in error, job
            after_crash = reported_at - seen.get("crashing", reported_at)
            assert after_crash <= RESYNC + 2, \
                f"status {after_crash:.1f} s after CouchDB said crashing (resync {RESYNC} s)"
            return (f"CouchDB: {job['state']} {error[:80]!r}; status {st.get('phase')} "
                    f"Ready=False {cond['reason']}: {cond['message'][:100]!r}; "
                    f"{reported_at - applied:.1f} s after apply, {after_crash:.1f} s after "
                    f"the scheduler said crashing (resync {RESYNC:.0f} s)")

        def suspend() -> str:
            job_id = f"{ns}.cont"
            cluster.kubectl("patch", "replication", "cont", "-n", ns, "--type", "merge",
                            "-p", '{"spec": {"suspend": true}}')
            st = until("phase Suspended", lambda: phase("cont", "Suspended"), timeout=60,
                       poll=0.5)
            until("the job's doc removed", lambda: b.doc("_replicator", job_id) is None,
                  timeout=30, poll=0.5)
            ready = kube.condition("replication", "cont", "Ready") or {}
            assert ready.get("status") == "True", ready
            assert b.job(job_id) is None, b.job(job_id)
            a.bulk(src, ["while-suspended"])
            cluster.kubectl("patch", "replication", "cont", "-n", ns, "--type", "merge",
                            "-p", '{"spec": {"suspend": false}}')
            until("the job's doc back", lambda: b.doc("_replicator", job_id), timeout=60,
                  poll=0.5)
            until("phase Running", lambda: phase("cont", "Running"), timeout=60, poll=0.5)
            until("the doc written while suspended on B",
                  lambda: "while-suspended" in b.ids(cont_db), timeout=90, poll=0.5)
            return (f"suspended: phase {st['phase']}, Ready True, _replicator doc and "
                    f"scheduler job gone; resumed: doc back, Running, the doc written "
                    f"meanwhile arrived")

        def token() -> str:
            b.create_db(tok_db)
            kube.apply({"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "Token",
                        "metadata": {"name": "writer"},
                        "spec": {"server": "couch-b", "permissions": {"write": [tok_db]},
                                 "rotation": {"graceSeconds": GRACE}}})
            kube.wait_condition("token", "writer", timeout=90)
            old = until("the Token's Secret", lambda: token_secret("writer") or None,
                        timeout=30)
            assert b.doc("_users", f"org.couchdb.user:{old['username']}"), "no user on B"
            as_token = httpx.get(f"{b_url}/{tok_db}", auth=(old["username"], old["password"]),
                                 timeout=30).status_code
            assert as_token == 200, f"the Token's user reads {tok_db}: {as_token}"
            kube.apply(replication("tok", continuous=False,
                                   source={"server": "couch-a", "database": src},
                                   target={"server": "couch-b", "database": tok_db,
                                           "tokenRef": {"name": "writer"}}))
            until("phase Completed", lambda: phase("tok", "Completed", "Failed"), timeout=120,
                  poll=0.5)
            st = status(kube, "replication", "tok")
            assert st["phase"] == "Completed", st
            expected = a.ids(src)
            assert b.ids(tok_db) == expected, f"{len(b.ids(tok_db))} of {len(expected)}"
            doc = b.doc("_replicator", f"{ns}.tok") or {}
            assert header_user(doc.get("target")) == old["username"], "job not as the Token"
            # documents written before the rotation: the rotated job must carry them
            a.bulk(src, [f"rotation-{i}" for i in range(5)])
            old_rev = doc["_rev"]
            rotated_at = time.monotonic()
            kube.annotate("token", "writer", f"{ROTATE}={time.time():.0f}")
            new = until("a new credential in the Secret", lambda: (lambda d: d if d.get(
                "username") and d["username"] != old["username"] else None)(
                token_secret("writer")), timeout=90, poll=0.5)
            until("the job using the new user", lambda: header_user((b.doc(
                "_replicator", f"{ns}.tok") or {}).get("target")) == new["username"],
                timeout=90, poll=0.5)
            until("the old user removed", lambda: b.doc(
                "_users", f"org.couchdb.user:{old['username']}") is None,
                timeout=GRACE + 60, poll=1)
            revoked_after = time.monotonic() - rotated_at
            new_doc = b.doc("_replicator", f"{ns}.tok") or {}
            assert new_doc.get("_rev") != old_rev, "job doc not rewritten"
            until("the docs written before the rotation on B",
                  lambda: b.ids(tok_db) == a.ids(src), timeout=120, poll=1)
            st = until("phase Completed again", lambda: phase("tok", "Completed"),
                       timeout=60, poll=0.5)
            old_login = httpx.get(f"{b_url}/_session", auth=(old["username"],
                                  old["password"]), timeout=30).json()
            assert not (old_login.get("userCtx") or {}).get("name"), "old user still logs in"
            tok_status = status(kube, "token", "writer")
            assert tok_status.get("generation") and new["@generation"] == str(
                tok_status["generation"]), (tok_status.get("generation"), new["@generation"])
            assert (st.get("tokenGenerations") or {}) and all(
                str(v) == str(tok_status["generation"])
                for v in st["tokenGenerations"].values()), st.get("tokenGenerations")
            kube.wait_event("writer", "Revoked", timeout=30)
            kube.wait_event("tok", "CredentialsRotated", timeout=30)
            return (f"user {old['username']} -> {new['username']} (generation "
                    f"{tok_status['generation']}); job rewritten with the new user and "
                    f"Completed again with the 5 docs written before the rotation; old "
                    f"user removed {revoked_after:.1f} s after the request (grace {GRACE} s)")

        def adoption() -> str:
            b.create_db(hand_db)
            header = {"Authorization": basic(user, password)}
            answer = b.http.put(f"/_replicator/{hand_id}", json={
                "source": {"url": f"{a_url}/{src}", "headers": header},
                "target": {"url": f"{b_url}/{hand_db}", "headers": header},
                "continuous": True})
            assert answer.status_code == 201, answer.text[:200]
            until("the hand-made job running", lambda: (b.job(hand_id) or {}).get(
                "state") == "running", timeout=60, poll=0.5)
            rev = (b.doc("_replicator", hand_id) or {})["_rev"]
            export = subprocess.run(
                [sys.executable, "-m", "replication_operator", "export", "-n", ns,
                 "--server", "couch-b", "--kind", "Replication", "-o", "json"],
                capture_output=True, text=True, timeout=120, cwd=ROOT,
                env={**cluster.env, "PYTHONPATH": str(ROOT / "operator")})
            assert export.returncode == 0, export.stderr[-500:]
            items = [i for i in json.loads(export.stdout)["items"]
                     if i["spec"].get("externalName") == hand_id]
            assert len(items) == 1, f"export: {[i['spec'].get('externalName') for i in json.loads(export.stdout)['items']]}"  # noqa: E501
            manifest = items[0]
            name = manifest["metadata"]["name"]
            spec = manifest["spec"]
            assert (spec["source"]["server"], spec["target"]["server"]) == (
                "couch-a", "couch-b"), spec
            lines = export.stderr.splitlines()
            start = next(i for i, line in enumerate(lines) if hand_id in line)
            block = [lines[start], *itertools.takewhile(
                lambda line: not line.startswith("# Replication "), lines[start + 1:])]
            comment = next((line for line in block if "nothing is written" in line), "")
            assert comment, f"export does not say it adopts as it is: {block}"
            before = metric_sum(operator.metrics(), "replication_operator_reconciles_total",
                                kind="Replication")
            kube.apply(manifest)
            kube.wait_condition("replication", name, timeout=60)
            event = kube.wait_event(name, "Adopted", timeout=30)
            live = len(json.loads(cluster.kubectl("get", "replications", "-n", ns, "-o",
                                                  "json").stdout)["items"])
            # at least two rounds of resyncs over every Replication, then the rev again
            until("two resyncs after adoption", lambda: metric_sum(
                operator.metrics(), "replication_operator_reconciles_total",
                kind="Replication") >= before + 2 * live + 1, timeout=RESYNC * 6, poll=1)
            st = status(kube, "replication", name)
            now = b.doc("_replicator", hand_id) or {}
            assert now.get("_rev") == rev, f"rewritten: {rev} -> {now.get('_rev')}"
            assert st.get("phase") == "Running" and st.get("externalName") == hand_id, st
            made["adopted"] = name
            return (f"exported as Replication/{name} ({comment.lstrip('# ')[:60]!r}); Ready, "
                    f"{event['reason']}: {event['message'][:80]!r}; _rev {rev} unchanged "
                    f"after two resyncs")

        def deletion() -> str:
            names = [i["metadata"]["name"] for i in json.loads(cluster.kubectl(
                "get", "replications", "-n", ns, "-o", "json").stdout)["items"]]
            for name in names:
                kube.delete("replication", name)
            until("every Replication gone", lambda: json.loads(cluster.kubectl(
                "get", "replications", "-n", ns, "-o", "json").stdout)["items"] == [],
                timeout=120)
            docs = b.replicator_docs()
            ours = {i: d for i, d in docs.items()
                    if i.startswith(f"{ns}.") or i == hand_id
                    or str(d.get("dbops_owner", "")).startswith(f"{ns}/")
                    or str(d.get("dbops_owner", "")).startswith(f"{ns}.")}
            assert set(ours) == {f"{ns}.once"}, f"left in _replicator: {sorted(ours)} " \
                f"(only the Orphan {ns}.once expected)"
            b.http.delete(f"/_replicator/{ns}.once",
                          params={"rev": ours[f"{ns}.once"]["_rev"]}).raise_for_status()
            tok = status(kube, "token", "writer")
            kube.delete("token", "writer")
            until("the Token gone", lambda: kube.get("token", "writer") is None, timeout=90)
            users = [n for n in b.http.get("/_users/_all_docs").json()["rows"]
                     if n["id"].startswith(f"org.couchdb.user:{ns}.")]
            assert users == [], users
            assert token_secret("writer") == {}, "the Token's Secret is still there"
            left = [i for i, d in b.replicator_docs().items()
                    if i.startswith(f"{ns}.") or i == hand_id
                    or f"{ns}" in str(d.get("dbops_owner", ""))]
            assert left == [], left
            return (f"deleted {len(names)} Replications: their docs removed, the Orphan "
                    f"{ns}.once left (then removed by hand); Token "
                    f"{tok.get('externalName')} users and Secret removed; nothing of {ns} "
                    f"in B's _replicator")

        for name, fn in (("servers", servers), ("one-shot", one_shot),
                         ("continuous", continuous), ("missing source", missing_source),
                         ("suspend and resume", suspend), ("token and rotation", token),
                         ("adoption", adoption), ("deletion", deletion)):
            checks.run(name, fn)
    finally:
        operator.stop()
        checks.no_secret_in_log(operator, (password, probe_password, wrong_password,
                                           basic(user, password).split()[1],
                                           *made["token-values"]))
        for db in (src,):
            a.drop_db(db)
        for db in (once_db, cont_db, tok_db, hand_db, f"{missing_db}-copy"):
            b.drop_db(db)
        a.drop_user(probe_user)
    return checks.summary()


if __name__ == "__main__":
    raise SystemExit(main())
