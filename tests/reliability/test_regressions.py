"""Bugs the reliability suite found, each made to happen on purpose: the real API
server, the real servers, the operator as its own process."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from e2e_support import Kube, wait_for
from rel_support import (
    CouchAdmin,
    ReductAdmin,
    Servers,
    inventory,
    manifest,
    objects,
    operator,
    prepare_servers,
    secret_data,
    server_manifests,
)

from fault_proxy import FaultProxy


def test_deleting_a_replication_removes_a_replacement_its_status_never_named(
        cluster: Any, rel_kube: Kube, servers: Servers, tmp_path: Path) -> None:
    """Killed between creating a ReductStore replacement (`<ns>__<name>-b`, made when a
    change cannot be applied in place) and writing the status that names it, the
    operator came back to a status naming only the old replication. Deleting the
    Replication then removed that one and left the replacement sending forever (seen
    in the kill -9 loop). The replacement's name derives from the resource, so deletion
    removes it as well."""
    kube = rel_kube
    prepare_servers(servers)
    kube.apply(*server_manifests(servers))
    proc = operator(cluster, tmp_path, kube.ns)
    proc.start()
    try:
        kube.apply(manifest("Replication", "swapped", {
            "source": {"server": "reduct-a", "database": "rel-src"},
            "target": {"server": "reduct-b", "database": f"rel-{kube.ns}", "create": True}}))
        kube.wait_condition("replication", "swapped", timeout=90)
        proc.kill(signal.SIGKILL)
        # what the killed swap left: the replacement, with the settings it would carry
        source = ReductAdmin(servers.reduct_a)
        name = f"{kube.ns}__swapped"
        settings = source.http.get(f"/api/v1/replications/{name}").json()["settings"]
        source.http.post(f"/api/v1/replications/{name}-b",
                         json={**settings, "dst_token": servers.reduct_b.token}
                         ).raise_for_status()
        kube.delete("replication", "swapped")
        proc.start()
        wait_for(lambda: not objects(kube), timeout=60, what="the Replication deleted")
        left = inventory(servers, kube.ns).reduct_replications
        assert not left, f"left on ReductStore: {sorted(left)}"
    finally:
        proc.stop()


def test_tokens_granting_one_couchdb_database_at_once_all_become_members(
        cluster: Any, rel_kube: Kube, servers: Servers, tmp_path: Path) -> None:
    """CouchDB's `_security` has no revision: Tokens granting the same database at the
    same moment each read the member list, added themselves and wrote it back, undoing
    each other. Their users could not read the database until a later resync noticed
    (and PouchDB Server gives up for good on a job refused meanwhile: seen in the kill
    -9 loop as Replications stuck on "You are not authorized to access this db"). The
    resync is slow here, so nothing repairs the damage before it is looked at."""
    kube = rel_kube
    couch_b = CouchAdmin(servers.couch_b)
    db = f"rel-{kube.ns}-members"
    couch_b.ensure_db(db)
    kube.apply(*server_manifests(servers, only={"couch-b"}))
    proc = operator(cluster, tmp_path, kube.ns, resync=600)
    proc.start()
    try:
        tokens = [f"reader-{i}" for i in range(8)]
        kube.apply(*(manifest("Token", name, {"server": "couch-b", "permissions": {
            "read": [db], "write": [db]}}) for name in tokens))
        for name in tokens:
            kube.wait_condition("token", name, timeout=120)
        security = couch_b.http.get(f"/{db}/_security").json()
        members = set(security.get("members", {}).get("names", []))
        missing = [n for n in tokens if f"{kube.ns}.{n}" not in members]
        assert not missing, f"not members of {db}: {missing}"
        for name in tokens:
            data = secret_data(kube, name)
            assert httpx.get(f"{servers.couch_b.url}/{db}", timeout=10, auth=(
                data["username"], data["password"])).status_code == 200, name
    finally:
        proc.stop()


def refuse_finalizer(kube: Kube, name: str) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy (built into the API server) that refuses the
    operator's finalizer on Replications in this namespace: what a finalizer patch that
    never lands looks like (in the kill -9 loop: an operator killed before it)."""
    return [{
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{
            "apiGroups": ["replication.dbops.dev"], "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"], "resources": ["replications"]}]},
            "validations": [{"expression": "!has(object.metadata.finalizers) || "
                                           "!object.metadata.finalizers.exists(f, f == "
                                           "'replication.dbops.dev/finalizer')",
                             "message": "this test refuses the operator's finalizer"}]}}, {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": kube.ns}}}}}]


def test_no_job_is_made_before_the_finalizer_is_on_the_resource(
        cluster: Any, rel_kube: Kube, servers: Servers, tmp_path: Path) -> None:
    """kopf starts the resync timer as soon as it sees an object, finalizer or not. In
    the kill -9 loop the finalizer patch of a new Replication was lost with the killed
    operator, the next one's timer created the job, and the Replication, deleted
    before any finalizer was on it, went without cleanup: its job stayed on the server.
    Resyncs (timers, now main's paced daemons) leave an object alone until the
    finalizer is there (the change handler runs then)."""
    kube = rel_kube
    prepare_servers(servers)
    name = f"{kube.ns}-no-finalizer"
    policy = refuse_finalizer(kube, name)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(policy))
    proc = operator(cluster, tmp_path, kube.ns)
    try:
        spec = {"source": {"server": "couch-a", "database": "rel-src-0"},
                "target": {"server": "couch-b", "database": f"rel-{kube.ns}"}}
        probe = manifest("Replication", "policy-probe", spec)
        probe["metadata"].update(namespace=kube.ns,
                                 finalizers=["replication.dbops.dev/finalizer"])

        def refused() -> bool:  # the policy takes effect a moment after it is made
            out = cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(probe),
                                  check=False)
            if out.returncode == 0:  # not yet: take the probe away again
                cluster.kubectl("patch", "replication", "policy-probe", "-n", kube.ns,
                                "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
                kube.delete("replication", "policy-probe")
            return "refuses the operator's finalizer" in out.stderr

        wait_for(refused, timeout=60, what="the admission policy in effect")
        kube.apply(*server_manifests(servers), manifest("Replication", "probe", spec))
        proc.start()

        # the resync daemon looks at the Replication once per resync interval (3 s):
        # watched for four intervals once the servers are Ready, no job may appear
        kube.wait_condition("databaseserver", "couch-b", timeout=60)
        window = time.monotonic() + 4 * 3.0
        while time.monotonic() < window:
            jobs = inventory(servers, kube.ns).jobs
            assert not jobs, f"a job for a Replication without the finalizer: {sorted(jobs)}"
            time.sleep(0.5)  # polling interval of the observation window
        kube.delete("replication", "probe")
        wait_for(lambda: not objects(kube), timeout=30, what="the Replication gone")
        assert inventory(servers, kube.ns).empty()
    finally:
        proc.stop()
        for doc in policy:
            cluster.kubectl("delete", doc["kind"].lower(), name, "--ignore-not-found",
                            check=False)


def test_a_token_never_takes_over_a_secret_it_does_not_own(
        cluster: Any, rel_kube: Kube, servers: Servers, tmp_path: Path) -> None:
    """Found by the fuzzing: a Token whose spec.secretName named an existing Secret (here
    the DatabaseServer's own admin credentials) replaced its content with the new
    credential, and deleting the Token deleted that Secret. Now the Token is Stalled,
    naming spec.secretName, issues nothing, and leaves the Secret alone."""
    kube = rel_kube
    kube.apply(*server_manifests(servers, only={"couch-b"}))
    before = secret_data(kube, "couch-b-admin")
    proc = operator(cluster, tmp_path, kube.ns)
    proc.start()
    try:
        kube.apply(manifest("Token", "grabber", {
            "server": "couch-b", "secretName": "couch-b-admin",
            "permissions": {"read": ["rel-shared-0"]}}))
        stalled = kube.wait_condition("token", "grabber", "Stalled", timeout=90)
        assert "spec.secretName" in stalled["message"], stalled
        assert secret_data(kube, "couch-b-admin") == before
        kube.wait_condition("databaseserver", "couch-b", timeout=60)
        assert not inventory(servers, kube.ns).users, "no credential issued"
        kube.delete("token", "grabber")
        wait_for(lambda: not objects(kube), timeout=60, what="the Token deleted")
        assert secret_data(kube, "couch-b-admin") == before
    finally:
        proc.stop()


def test_a_replication_whose_token_is_gone_can_still_be_deleted(
        cluster: Any, rel_kube: Kube, servers: Servers, tmp_path: Path) -> None:
    """Found by the kill -9 loop's clean-up (everything deleted at once, as a GitOps
    prune does): the Token went first, and the deletion of a Replication using it
    wanted the Token's credential to remove its job, so it waited forever
    (CleanupBlocked). The job is removed with the job server's own credentials."""
    kube = rel_kube
    prepare_servers(servers)
    kube.apply(*server_manifests(servers, only={"reduct-a", "reduct-b"}))
    proc = operator(cluster, tmp_path, kube.ns)
    proc.start()
    try:
        kube.apply(manifest("Token", "writer", {
            "server": "reduct-b", "permissions": {"read": ["rel-shared-0"],
                                                  "write": ["rel-shared-0"]}}),
                   manifest("Replication", "tokened", {
                       "source": {"server": "reduct-a", "database": "rel-src"},
                       "target": {"server": "reduct-b", "database": "rel-shared-0",
                                  "tokenRef": {"name": "writer"}}}))
        kube.wait_condition("replication", "tokened", timeout=90)
        kube.delete("token", "writer")
        wait_for(lambda: kube.get("token", "writer") is None, timeout=60,
                 what="the Token gone")
        kube.delete("replication", "tokened")
        wait_for(lambda: not objects(kube), timeout=60, what="the Replication gone")
        assert inventory(servers, kube.ns).empty()
    finally:
        proc.stop()


def test_a_couchdb_policy_with_a_registry_side_is_refused_naming_the_field(
        cluster: Any, rel_kube: Kube, servers: Servers, tmp_path: Path) -> None:
    """Found by the fuzzing: a ReplicationPolicy whose source is a declared registry
    (Harbor's) and whose target is a CouchDB server is taken by the CouchDB fan-out,
    which looked its source server up by name before parsing the spec: the handler
    failed with KeyError 'server' once a minute and the policy never had a Ready
    condition. Now it is Stalled, InvalidSpec, naming spec.source.registry."""
    kube = rel_kube
    kube.apply(*server_manifests(servers, only={"couch-a"}))
    proc = operator(cluster, tmp_path, kube.ns)
    proc.start()
    try:
        kube.apply(manifest("ReplicationPolicy", "from-registry", {
            "source": {"databases": ["library/*"],
                       "registry": {"type": "docker-registry", "url": "http://127.0.0.1:1"}},
            "target": {"server": "couch-a"}}))
        stalled = kube.wait_condition("replicationpolicy", "from-registry", "Stalled",
                                      timeout=90)
        ready = kube.condition("replicationpolicy", "from-registry", "Ready") or {}
        assert ready.get("reason") == "InvalidSpec", ready
        assert "spec.source.registry" in stalled["message"], stalled
        kube.delete("replicationpolicy", "from-registry")
        wait_for(lambda: not objects(kube), timeout=60, what="the policy deleted")
        assert "failed with an exception" not in proc.log_text(), proc.log_tail()
    finally:
        proc.stop()


def test_a_replication_deleted_while_its_resync_is_in_flight_goes_at_once(
        cluster: Any, rel_kube: Kube, servers: Servers, tmp_path: Path) -> None:
    """Found by the kill -9 loop (deleting all took 63 s, one Replication a minute
    after the rest, with two `Deleted` Events): kopf removes the finalizer only once
    the resource's resync timer has exited, and a timer in the middle of a reconcile
    was looked at again only after kopf's default 60 s (then the deletion handler ran
    a second time). Here every request to the job server takes 1.5 s (a fault proxy),
    so a resync is always in flight when the Replication is deleted."""
    kube = rel_kube
    prepare_servers(servers)
    with FaultProxy("127.0.0.1", int(servers.couch_b.port)) as proxy:
        kube.apply(*server_manifests(servers, only={"couch-a", "couch-b"}),
                   *server_manifests(servers, urls={"couch-b": proxy.url}, timeout=10,
                                     only={"couch-b"}, names={"couch-b": "couch-b-px"}))
        proc = operator(cluster, tmp_path, kube.ns, resync=1.0)
        proc.start()
        try:
            kube.apply(manifest("Replication", "slow", {
                "server": "couch-b-px", "continuous": True,
                "source": {"server": "couch-a", "database": "rel-src-0"},
                "target": {"server": "couch-b", "database": f"rel-{kube.ns}-slow",
                           "create": True}}))
            kube.wait_condition("replication", "slow", timeout=90)
            proxy.delay(1.5)
            since = time.monotonic()
            wait_for(lambda: proxy.requests_since(since) or None, timeout=30,
                     interval=0.05, what="a resync's request on its way")
            deleted = time.monotonic()
            kube.delete("replication", "slow")
            wait_for(lambda: kube.get("replication", "slow") is None, timeout=120,
                     interval=0.2, what="the Replication gone")
            took = time.monotonic() - deleted
            print(f"\ndeleted during a resync in flight: gone after {took:.1f} s")
            assert took < 20, f"the deletion took {took:.1f} s"
            assert not inventory(servers, kube.ns).jobs
        finally:
            proc.stop()
