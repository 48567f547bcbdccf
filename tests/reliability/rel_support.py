"""What the reliability tests share: the servers declared in a namespace, a churn of
Replications, Tokens and ReplicationPolicies, and the checks made at the end on the
cluster and on the servers themselves (who owns what, does every Secret work).

Naming on the servers (what the checks look for, per namespace `ns`):
- CouchDB (PouchDB Server): `_replicator` doc `<ns>.<name>` with `dbops_owner:
  <ns>/<name>`; `_users` doc of user `<ns>.<name>` (or `-b`) with `dbops_owner`.
- ReductStore: replication `<ns>__<name>` or `<ns>__<name>-b`; token `<ns>.<name>` or
  `<ns>.<name>-b`.
- Harbor (simulator): policy `<ns>.<name>`, registry `dbops.<ns>.<server>`, robot
  `<project>+<ns>.<name>` (or `-b`); all with the description "managed by
  replication-operator for <ns>/<name>".
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from e2e_support import Couch, Kube, OperatorProcess, database_server, metric_sum, secret

API = "replication.dbops.dev/v1alpha1"
ROTATE = "replication.dbops.dev/rotate-requested"
MARKER = "managed by replication-operator for "
KINDS = ("replication", "token", "replicationpolicy")
SHARED = 3  # shared target databases / buckets a Token grants access to


# ---------------------------------------------------------------------- the servers


@dataclass
class Servers:
    """The session's real servers and simulators."""

    couch_a: Any
    couch_b: Any
    reduct_a: Any
    reduct_b: Any
    harbor_a: Any
    harbor_b: Any

    def admin_values(self) -> set[str]:
        return {self.couch_a.password, self.couch_b.password, self.reduct_a.token,
                self.reduct_b.token, self.harbor_a.password, self.harbor_b.password}


def server_manifests(servers: Servers, *, urls: dict[str, str] | None = None,
                     names: dict[str, str] | None = None, timeout: int = 0,
                     only: set[str] | None = None) -> list[dict[str, Any]]:
    """Secrets and DatabaseServers couch-a/b, reduct-a/b, harbor-a/b (or `only` these).
    `urls` replaces a server's URL (a fault proxy in front of it), `names` its
    DatabaseServer name."""
    urls, names = urls or {}, names or {}
    docs: list[dict[str, Any]] = []
    for key, part, type_, auth in (
            ("couch-a", servers.couch_a, "couchdb", "basic"),
            ("couch-b", servers.couch_b, "couchdb", "basic"),
            ("reduct-a", servers.reduct_a, "reductstore", "bearer"),
            ("reduct-b", servers.reduct_b, "reductstore", "bearer"),
            ("harbor-a", servers.harbor_a, "harbor", "basic"),
            ("harbor-b", servers.harbor_b, "harbor", "basic")):
        if only is not None and key not in only:
            continue
        name = names.get(key, key)
        data = ({"token": part.token} if auth == "bearer"
                else {"username": part.username, "password": part.password})
        docs.append(secret(f"{name}-admin", **data))
        server = database_server(name, urls.get(key, part.url), type_, f"{name}-admin", auth)
        if timeout:
            server["spec"]["requestTimeoutSeconds"] = timeout
        docs.append(server)
    return docs


class CouchAdmin(Couch):
    def users(self) -> dict[str, dict[str, Any]]:
        response = self.http.get("/_users/_all_docs", params={"include_docs": "true"})
        if response.status_code != 200:
            return {}
        return {r["doc"]["name"]: r["doc"] for r in response.json()["rows"]
                if r.get("doc") and r["id"].startswith("org.couchdb.user:")}

    def ensure_db(self, db: str) -> None:
        response = self.http.put(f"/{db}")
        assert response.status_code in (201, 412), response.text


class ReductAdmin:
    def __init__(self, part: Any) -> None:
        self.part = part
        self.http = httpx.Client(base_url=part.url, timeout=10,
                                 headers={"Authorization": f"Bearer {part.token}"})

    def ensure_bucket(self, name: str) -> None:
        response = self.http.post(f"/api/v1/b/{name}", json={})
        assert response.status_code in (200, 409), response.headers.get("x-reduct-error")

    def replications(self) -> set[str]:
        items = self.http.get("/api/v1/replications").json()["replications"]
        return {str(r["name"]) for r in items}

    def tokens(self) -> set[str]:
        return {str(t["name"]) for t in self.http.get("/api/v1/tokens").json()["tokens"]}


def harbor_project(sim: Any, name: str) -> None:
    response = httpx.post(f"{sim.api_url}/projects", auth=(sim.username, sim.password),
                          json={"project_name": name, "metadata": {"public": "false"}},
                          timeout=10)
    assert response.status_code in (201, 409), response.text


def owner_of(description: str | None) -> str:
    text = description or ""
    return text[len(MARKER):].split(" ", 1)[0] if text.startswith(MARKER) else ""


def prepare_servers(servers: Servers) -> None:
    """What the workload's resources need on the servers: source databases with a few
    documents, shared targets a Token may grant, a Harbor project with images and one
    to replicate to (idempotent: the session shares the servers)."""
    couch_a, couch_b = CouchAdmin(servers.couch_a), CouchAdmin(servers.couch_b)
    for i in range(3):
        couch_a.ensure_db(f"rel-src-{i}")
        for d in range(3):
            couch_a.http.put(f"/rel-src-{i}/d{d}", json={"v": d})  # 409 when there: fine
    for i in range(SHARED):
        couch_b.ensure_db(f"rel-shared-{i}")
    reduct_a, reduct_b = ReductAdmin(servers.reduct_a), ReductAdmin(servers.reduct_b)
    reduct_a.ensure_bucket("rel-src")
    for i in range(SHARED):
        reduct_b.ensure_bucket(f"rel-shared-{i}")
    servers.harbor_a.store.push_artifact("library", "nginx", "v1.25")
    servers.harbor_a.store.push_artifact("library", "redis", "v7.2")
    harbor_project(servers.harbor_b, "mirror")


# ---------------------------------------------------------------------- the workload


def manifest(kind: str, name: str, spec: dict[str, Any],
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


@dataclass
class Resource:
    """One resource the workload declared, as it declared it last."""

    kind: str  # Replication | Token | ReplicationPolicy
    name: str
    backend: str  # couch | reduct | harbor
    spec: dict[str, Any]
    annotations: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    credentials: int = 1  # Tokens: credentials issued when all is done (1 + rotations)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def manifest(self) -> dict[str, Any]:
        return manifest(self.kind, self.name, self.spec, self.annotations)

    @property
    def token_ref(self) -> str | None:
        for side in ("source", "target"):
            ref = (self.spec.get(side) or {}).get("tokenRef")
            if ref:
                return str(ref["name"])
        return None


# one in ten of each: couch, couch, couch, reduct, reduct, tokens x3, policy, tokenRef
CYCLE = ("couch", "couch", "couch", "reduct", "reduct", "couch-token", "reduct-token",
         "harbor-token", "harbor-policy", "token-user")


class Workload:
    """Creates `size` resources, changes and deletes some, in an order drawn from `rng`;
    every step is applied to the cluster at once (kubectl). Tokens a live Replication
    uses are never deleted, so what is declared always makes sense: at the end every
    live resource must be Ready and every deleted one gone."""

    def __init__(self, kube: Kube, rng: random.Random, *, size: int, changes: int,
                 deletes: int) -> None:
        self.kube = kube
        self.rng = rng
        self.size, self.changes, self.deletes = size, changes, deletes
        self.resources: dict[str, Resource] = {}
        self.created = 0
        self.done: Counter[str] = Counter()
        self._step = 0

    # -- what there is ---------------------------------------------------------------

    def live(self, kind: str | None = None, backend: str | None = None) -> list[Resource]:
        return [r for r in self.resources.values() if not r.deleted
                and (kind is None or r.kind == kind) and (backend is None or
                                                          r.backend == backend)]

    def users_of(self, token: str) -> list[Resource]:
        return [r for r in self.live("Replication") if r.token_ref == token]

    @property
    def planned(self) -> int:
        return self.size + self.changes + self.deletes

    @property
    def steps(self) -> int:
        """Steps applied so far."""
        return self._step

    def wait_for_step(self, step: float, timeout: float = 300) -> None:
        """Poll until the workload has applied `step` steps (or is done)."""
        deadline = time.monotonic() + timeout
        while self._step < min(step, self.planned) and self.remaining > 0:
            assert time.monotonic() < deadline, f"the workload is stuck at step {self._step}"
            time.sleep(0.1)  # polling interval

    @property
    def remaining(self) -> int:
        return (self.size - self.created) + (self.changes - self.done["changed"]) + \
            (self.deletes - self.done["deleted"])

    # -- steps -----------------------------------------------------------------------

    def step(self) -> bool:
        """Apply the next step; False once the plan is done."""
        if self.remaining <= 0:
            return False
        self._step += 1
        creates_left = self.size - self.created
        if creates_left and (self.rng.random() < creates_left / self.remaining
                             or not self.live()):
            self.create()
            return True
        deletes_left = self.deletes - self.done["deleted"]
        changes_left = self.changes - self.done["changed"]
        if deletes_left and self.rng.random() < deletes_left / (deletes_left + changes_left):
            deletable = [r for r in self.live() if not (r.kind == "Token" and
                                                        self.users_of(r.name))]
            if deletable:
                self.delete(self.rng.choice(deletable))
                return True
        if changes_left and self.live():
            self.change(self.rng.choice(self.live()))
        else:  # nothing left that may change: count it done
            self.done["changed" if changes_left else "deleted"] += 1
        return True

    def create(self, kind: str | None = None) -> Resource:
        i = self.created
        self.created += 1
        what = kind or CYCLE[i % len(CYCLE)]
        if what == "token-user":
            tokens = [t for t in self.live("Token") if t.backend in ("couch", "reduct")]
            what = "couch" if i % 20 < 10 else "reduct"
            token = next((t for t in tokens if t.backend == what), None)
            resource = self._replication(i, what, token)
        elif what in ("couch", "reduct"):
            resource = self._replication(i, what, None)
        elif what.endswith("-token"):
            resource = self._token(i, what.removesuffix("-token"))
        else:
            resource = Resource("ReplicationPolicy", f"hp-{i}", "harbor", {
                "source": {"server": "harbor-a", "databases": ["library/**"]},
                "target": {"server": "harbor-b", "namespace": "mirror"},
                "trigger": {"type": "manual"}})
        self.resources[resource.key] = resource
        self.apply(resource)
        self.done[f"created {resource.kind}"] += 1
        return resource

    def _replication(self, i: int, backend: str, token: Resource | None) -> Resource:
        if backend == "couch":
            name = f"cr-{i}"
            spec: dict[str, Any] = {
                "source": {"server": "couch-a", "database": f"rel-src-{i % 3}"},
                "target": {"server": "couch-b", "database": f"rel-{self.kube.ns}-{name}",
                           "create": True},
                "continuous": i % 3 != 0}
        else:
            name = f"rr-{i}"
            spec = {"source": {"server": "reduct-a", "database": "rel-src"},
                    "target": {"server": "reduct-b", "database": f"rel-{self.kube.ns}-{name}",
                               "create": True}}
        if token is not None:  # write to the shared database its Token grants
            spec["target"] = {"server": spec["target"]["server"],
                              "database": token.spec["permissions"]["write"][0],
                              "tokenRef": {"name": token.name}}
        return Resource("Replication", name, backend, spec)

    def _token(self, i: int, backend: str) -> Resource:
        if backend == "harbor":
            permissions: dict[str, Any] = {"read": ["mirror"]}
            server = "harbor-b"
        else:
            shared = f"rel-shared-{i % SHARED}"
            permissions = {"read": [shared], "write": [shared]}
            server = f"{backend}-b"
        return Resource("Token", f"{backend[0]}t-{i}", backend, {
            "server": server, "permissions": permissions, "rotation": {"graceSeconds": 5}})

    def change(self, resource: Resource) -> None:
        spec, k = resource.spec, self._step
        if resource.kind == "Token":
            if resource.backend != "harbor" and not self.users_of(resource.name) and \
                    self.rng.random() < 0.4:
                shared = f"rel-shared-{k % SHARED}"
                if spec["permissions"]["read"] != [shared]:
                    # ReductStore tokens cannot be edited: a new one is issued
                    resource.credentials += resource.backend == "reduct"
                spec["permissions"] = {"read": [shared], "write": [shared]}
                self.done["changed Token permissions"] += 1
            else:
                resource.annotations[ROTATE] = str(k)
                resource.credentials += 1
                self.done["rotation requested"] += 1
        elif resource.kind == "ReplicationPolicy":
            if self.rng.random() < 0.5:
                spec["enabled"] = not spec.get("enabled", True)
            else:
                spec["filters"] = [{"type": "tag", "value": f"v{k}*"}]
            self.done["changed ReplicationPolicy"] += 1
        elif self.rng.random() < 0.3:
            spec["suspend"] = not spec.get("suspend", False)
            self.done["suspend toggled"] += 1
        elif resource.backend == "couch":
            if spec.get("filter"):
                spec.pop("filter")
            else:
                spec["filter"] = {"docIds": ["d0", f"d{k % 3}"]}
            self.done["changed Replication filter"] += 1
        else:
            entries = (spec.get("filter") or {}).get("entries")
            spec["filter"] = {"entries": ["sensor-*"] if entries != ["sensor-*"]
                              else ["other-*"]}
            self.done["changed Replication filter"] += 1
        self.done["changed"] += 1
        self.apply(resource)

    def delete(self, resource: Resource) -> None:
        resource.deleted = True
        kind = resource.kind.lower()
        self.kube.cluster.kubectl("delete", kind, resource.name, "-n", self.kube.ns,
                                  "--wait=false", "--ignore-not-found")
        self.done["deleted"] += 1
        self.done[f"deleted {resource.kind}"] += 1

    def apply(self, *resources: Resource) -> None:
        self.kube.apply(*(r.manifest() for r in resources))

    def summary(self) -> str:
        live = Counter(f"{r.kind}/{r.backend}" for r in self.live())
        return (f"{self.created} created, {self.done['changed']} changes "
                f"({self.done['rotation requested']} rotations), {self.done['deleted']} "
                f"deleted; live: {dict(sorted(live.items()))}")


class Churn:
    """Runs a Workload's steps in a thread, `pace` seconds apart, until it is done."""

    def __init__(self, workload: Workload, pace: float) -> None:
        self.workload = workload
        self.pace = pace
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self.workload.step():
                self._stop.wait(self.pace)  # the workload's pace, not synchronisation
        except BaseException as exc:  # reported by join()
            self.error = exc

    def start(self) -> Churn:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 600) -> None:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert not self._thread.is_alive(), "the churn did not finish"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# ---------------------------------------------------------------------- the cluster


def objects(kube: Kube) -> dict[str, dict[str, Any]]:
    """Every Replication, Token and ReplicationPolicy in the namespace, by Kind/name."""
    out = kube.cluster.kubectl("get", ",".join(KINDS), "-n", kube.ns, "-o", "json")
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in json.loads(out.stdout)["items"]}


def condition(obj: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def settled(obj: dict[str, Any]) -> str:
    """'' when the resource is Ready for its current spec with no work left (no
    credential waiting for revocation, no replaced job draining); else why not."""
    status = obj.get("status") or {}
    ready = condition(obj)
    generation = obj["metadata"].get("generation")
    if ready.get("status") != "True":
        return f"Ready={ready.get('status')} {ready.get('reason')}: {ready.get('message')}"
    if status.get("observedGeneration") != generation or \
            ready.get("observedGeneration") != generation:
        return f"status of generation {status.get('observedGeneration')}, spec {generation}"
    if status.get("previousCredential"):
        return "previous credential not revoked yet"
    if status.get("retiring"):
        return f"replaced job {status['retiring']} still draining"
    requested = obj["metadata"].get("annotations", {}).get(ROTATE)
    if requested and status.get("lastRotateRequest") != requested:
        return f"rotation {requested} not done"
    return ""


def unsettled(kube: Kube, resources: Iterable[Resource]) -> dict[str, str]:
    """What is not as declared yet: live resources not settled, deleted ones present."""
    found = objects(kube)
    problems: dict[str, str] = {}
    for resource in resources:
        obj = found.get(resource.key)
        if resource.deleted:
            if obj is not None:
                problems[resource.key] = "deleted, still there"
        elif obj is None:
            problems[resource.key] = "missing"
        elif why := settled(obj):
            problems[resource.key] = why
    return problems


def wait_settled(kube: Kube, resources: Iterable[Resource], *, timeout: float,
                 alive: Callable[[], None] = lambda: None) -> float:
    """Poll until every resource is as declared; the seconds it took. `alive` raises
    when the operator died meanwhile."""
    wanted = list(resources)
    started = time.monotonic()
    problems: dict[str, str] = {}
    while time.monotonic() - started < timeout:
        alive()
        problems = unsettled(kube, wanted)
        if not problems:
            return time.monotonic() - started
        time.sleep(1)  # polling interval of a poll with a deadline
    shown = "\n".join(f"  {k}: {v}" for k, v in sorted(problems.items())[:25])
    raise AssertionError(f"{len(problems)} resources not as declared after {timeout:.0f}s:\n"
                         f"{shown}")


def release_namespace(kube: Kube) -> None:
    """Let a namespace go whatever state it is in: finalizers of what is left are
    removed (no operator may run any more), then the namespace is deleted."""
    out = kube.cluster.kubectl("get", ",".join(KINDS), "-n", kube.ns, "-o", "name",
                               check=False)
    for ref in out.stdout.split():
        kube.cluster.kubectl("patch", ref, "-n", kube.ns, "--type=merge", "-p",
                             '{"metadata":{"finalizers":null}}', check=False)
    kube.cluster.kubectl("delete", "namespace", kube.ns, "--wait=false", check=False)


def delete_all(kube: Kube, timeout: float = 120) -> float:
    """Delete every Replication, Token and policy (the operator cleans the servers);
    the seconds until all are gone."""
    started = time.monotonic()
    kube.cluster.kubectl("delete", ",".join(KINDS), "--all", "-n", kube.ns, "--wait=false")
    deadline = started + timeout
    while objects(kube):
        assert time.monotonic() < deadline, \
            f"not deleted after {timeout:.0f}s: {sorted(objects(kube))}"
        time.sleep(1)  # polling interval
    return time.monotonic() - started


# ---------------------------------------------------------------------- the servers' side


@dataclass
class Inventory:
    """What the servers hold for one namespace, by kind of thing, name → owner (the
    `<ns>/<name>` marker where the server keeps one, else '')."""

    jobs: dict[str, str] = field(default_factory=dict)  # couch _replicator docs
    users: dict[str, str] = field(default_factory=dict)  # couch _users
    reduct_replications: dict[str, str] = field(default_factory=dict)
    reduct_tokens: dict[str, str] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)  # harbor
    registries: dict[str, str] = field(default_factory=dict)
    robots: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}

    def empty(self) -> bool:
        return not any(vars(self).values())


def inventory(servers: Servers, ns: str) -> Inventory:
    inv = Inventory()
    for part in (servers.couch_a, servers.couch_b):
        admin = CouchAdmin(part)
        for doc_id, doc in admin.replicator_docs().items():
            owner = str(doc.get("dbops_owner") or "")
            if owner.startswith(f"{ns}/") or doc_id.startswith(f"{ns}."):
                inv.jobs[f"{part.name}:{doc_id}"] = owner
        for name, doc in admin.users().items():
            owner = str(doc.get("dbops_owner") or "")
            if owner.startswith(f"{ns}/") or name.startswith(f"{ns}."):
                inv.users[f"{part.name}:{name}"] = owner
    for part in (servers.reduct_a, servers.reduct_b):
        admin = ReductAdmin(part)
        for name in admin.replications():
            if name.startswith((f"{ns}__", f"{ns}.")):
                inv.reduct_replications[f"{part.name}:{name}"] = ""
        for name in admin.tokens():
            if name.startswith(f"{ns}."):
                inv.reduct_tokens[f"{part.name}:{name}"] = ""
    for label, sim in (("harbor-a", servers.harbor_a), ("harbor-b", servers.harbor_b)):
        store = sim.store
        with store.lock:
            for policy in store.policies.values():
                if policy.name.startswith(f"{ns}.") or \
                        owner_of(policy.description).startswith(f"{ns}/"):
                    inv.policies[f"{label}:{policy.name}"] = owner_of(policy.description)
            for registry in store.registries.values():
                if registry.name.startswith(f"dbops.{ns}."):
                    inv.registries[f"{label}:{registry.name}"] = owner_of(
                        registry.description)
            for robot in store.robots.values():
                if f"{ns}." in robot.name or owner_of(robot.description).startswith(f"{ns}/"):
                    inv.robots[f"{label}:{robot.full_name}"] = owner_of(robot.description)
    return inv


def ownership_problems(servers: Servers, kube: Kube, workload: Workload) -> list[str]:
    """Each live Replication has exactly one job, each policy one policy, each Token
    one credential (the one its status names); nothing else of the namespace exists."""
    ns = kube.ns
    inv = inventory(servers, ns)
    found = objects(kube)
    problems: list[str] = []
    accounted: set[tuple[str, str]] = set()

    def expect(table: str, keys: set[str], owner_key: str, what: str) -> None:
        mine = {k for k, owner in getattr(inv, table).items() if owner == owner_key}
        if mine != keys:
            problems.append(f"{what}: expected {sorted(keys)} on the server, found "
                            f"{sorted(mine)}")
        accounted.update((table, k) for k in keys | mine)

    for resource in workload.live():
        obj = found.get(resource.key) or {}
        status = obj.get("status") or {}
        owner = f"{ns}/{resource.name}"
        ext = str(status.get("externalName") or "")
        if resource.kind == "Replication" and resource.backend == "couch":
            keys = set() if resource.spec.get("suspend") else {f"couch-b:{ns}.{resource.name}"}
            expect("jobs", keys, owner, resource.key)
        elif resource.kind == "Replication":
            names = {f"reduct-a:{ns}__{resource.name}", f"reduct-a:{ns}__{resource.name}-b"}
            present = names & set(inv.reduct_replications)
            if present != {f"reduct-a:{ext}"}:
                problems.append(f"{resource.key}: replications {sorted(present)} on the "
                                f"server, status says {ext!r}")
            accounted.update(("reduct_replications", k) for k in present)
        elif resource.kind == "ReplicationPolicy":
            expect("policies", {f"harbor-a:{ns}.{resource.name}"}, owner, resource.key)
        elif resource.backend == "couch":
            expect("users", {f"couch-b:{ext}"}, owner, resource.key)
        elif resource.backend == "reduct":
            slots = {f"reduct-b:{ns}.{resource.name}", f"reduct-b:{ns}.{resource.name}-b"}
            present = slots & set(inv.reduct_tokens)
            if present != {f"reduct-b:{ext}"}:
                problems.append(f"{resource.key}: tokens {sorted(present)} on the server, "
                                f"status says {ext!r}")
            accounted.update(("reduct_tokens", k) for k in present)
        else:
            robots = {k for k, o in inv.robots.items() if o == owner}
            if len(robots) != 1 or not next(iter(robots)).endswith(f"+{ext}"):
                problems.append(f"{resource.key}: robots {sorted(robots)} on the server, "
                                f"status says {ext!r}")
            accounted.update(("robots", k) for k in robots)
    if workload.live("ReplicationPolicy"):
        registry = f"harbor-a:dbops.{ns}.harbor-b"
        if registry not in inv.registries:
            problems.append(f"registry {registry} missing")
        accounted.add(("registries", registry))
    for table, have in vars(inv).items():
        for key, owner in have.items():
            if (table, key) not in accounted:
                problems.append(f"{table} {key} (owner {owner or '?'}) belongs to no resource")
    if problems:  # what the operator said it did, to tell what went wrong
        names = sorted({m for p in problems for m in re.findall(r"(?<![a-z])[a-z]{2}-\d+\b", p)})
        problems.append("Events:\n" + history(kube, names))
    return problems


def history(kube: Kube, names: Iterable[str]) -> str:
    """The Events of these resources (also of deleted ones), oldest first."""
    out = kube.cluster.kubectl("get", "events", "-n", kube.ns, "-o", "json", check=False)
    items = json.loads(out.stdout or "{}").get("items", [])
    wanted = set(names)
    lines = [f"  {e.get('lastTimestamp') or e.get('eventTime')} {e['involvedObject']['name']}: "
             f"{e.get('reason')}: {e.get('message')}"
             for e in items if e["involvedObject"].get("name") in wanted]
    return "\n".join(sorted(lines)) or "  (none)"


def secret_data(kube: Kube, name: str) -> dict[str, str]:
    out = kube.cluster.kubectl("get", "secret", name, "-n", kube.ns, "-o", "json",
                               check=False)
    if out.returncode != 0:
        return {}
    data = json.loads(out.stdout).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def credential_problems(servers: Servers, kube: Kube, tokens: Iterable[Resource],
                        values: set[str]) -> list[str]:
    """Log in with every live Token's Secret on its server; collect the values."""
    problems = []
    for token in tokens:
        data = secret_data(kube, token.spec.get("secretName") or token.name)
        value = data.get("token", "")
        if not value:
            problems.append(f"{token.key}: Secret has no value")
            continue
        values.add(value)
        target = token.spec["permissions"]["read"][0]
        if token.backend == "couch":
            code = httpx.get(f"{servers.couch_b.url}/{target}",
                             auth=(data["username"], data["password"]), timeout=10).status_code
        elif token.backend == "reduct":
            code = httpx.get(f"{servers.reduct_b.url}/api/v1/b/{target}",
                             headers={"Authorization": f"Bearer {value}"},
                             timeout=10).status_code
        else:
            code = httpx.get(f"{servers.harbor_b.api_url}/projects/{target}",
                             auth=(data["username"], value), timeout=10).status_code
        if code != 200:
            problems.append(f"{token.key}: its Secret's credential gets HTTP {code} from "
                            f"{token.spec['server']}")
    return problems


# ---------------------------------------------------------------------- operators


def operator(cluster: Any, log_dir: Path, ns: str, *extra: str, resync: float = 3.0
             ) -> OperatorProcess:
    """An operator for one namespace only, without debug logging (a hundred resources
    make kopf's debug log a load of its own on two cores) unless RELIABILITY_VERBOSE=1."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return OperatorProcess(cluster, log_dir, scope=["--namespace", ns], resync=resync,
                           extra_args=list(extra),
                           verbose=os.environ.get("RELIABILITY_VERBOSE", "") == "1")


def reconciles(proc: OperatorProcess) -> float:
    try:
        return metric_sum(proc.metrics(), "replication_operator_reconciles_total")
    except httpx.HTTPError:
        return 0.0


def random_moment(proc: OperatorProcess, rng: random.Random, *, longest: float = 4.0,
                  most_reconciles: int = 40) -> str:
    """Wait for a random moment of work: a random number of reconciles done from now,
    or a random time passed, whichever comes first. Says which."""
    wanted = rng.randint(1, most_reconciles)
    started = time.monotonic()
    until = started + rng.uniform(0.5, longest)
    first = reconciles(proc)
    while time.monotonic() < until:
        done = reconciles(proc) - first
        if done >= wanted:
            return f"after {int(done)} reconciles"
        time.sleep(0.1)  # polling interval
    return f"after {time.monotonic() - started:.1f}s ({int(reconciles(proc) - first)} " \
           f"reconciles)"


def scan_for_values(text: str, values: Iterable[str], where: str) -> None:
    for value in values:
        assert not value or value not in text, f"a secret value appears in the {where}"


@contextmanager
def running(*procs: OperatorProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.kill(signal.SIGTERM)


def dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs)


def new_seed() -> int:
    return secrets.randbelow(2**31)
