"""`replication-operator export -n NS --server NAME`: manifests that adopt what a server
holds and no resource owns yet.

What is owned, per server type:
- CouchDB / Cloudant: a `_replicator` doc whose `dbops_owner` names a Replication that
  exists, or whose id is the external name of a Replication of the namespace on this
  server. A doc whose owner is gone (deletionPolicy Orphan) is exported.
- ReductStore (no owner field): a replication named as the external name of a
  Replication of the namespace on this server, or `<ns>.<name>` of an existing one.
- Harbor: a policy whose description carries the owner marker of an existing
  ReplicationPolicy, or whose id / name a ReplicationPolicy of the namespace claims.
- Tokens alike (users' `dbops_owner`, robots' marker, ReductStore names); the credential
  the DatabaseServer itself logs in with is never listed.

Every exported manifest is checked before it is printed: the planner resolves and
observes it exactly as the operator would after `kubectl apply` and says whether
adopting writes nothing or which fields it would write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException

from replication_operator import GROUP, VERSION
from replication_operator.backends.couchdb import docs as couch_docs
from replication_operator.backends.couchdb.backend import REPLICATOR, has_scheduler
from replication_operator.backends.harbor import docs as harbor_docs
from replication_operator.backends.harbor.paging import list_all
from replication_operator.backends.tokens import other_slot
from replication_operator.errors import BackendError
from replication_operator.gitops import mapping
from replication_operator.gitops.cluster import Cluster, Unknowable, current_namespace, names
from replication_operator.gitops.manifests import Manifest
from replication_operator.gitops.planner import Planner, Row
from replication_operator.handlers import replication as replication_handler
from replication_operator.handlers import token as token_handler
from replication_operator.handlers.policy import holder_of, policy_name
from replication_operator.http import ServerConnection, ServerSettings
from replication_operator.servers import with_credentials

KINDS = ("Replication", "ReplicationPolicy", "Token")
SUPPORTED = {"couchdb": {"Replication", "Token"}, "cloudant": {"Replication", "Token"},
             "reductstore": {"Replication", "Token"}, "harbor": {"ReplicationPolicy", "Token"},
             "eden": set()}
EDEN_NOTE = ("export from Sahana Eden is not available yet: an Eden Replication cannot "
             "adopt by spec.externalName (a task already in the operator's own sync "
             "repository for the peer is taken over as it is when a Replication asks for it)")


class ExportError(Exception):
    """The export cannot be made (no such DatabaseServer, server unreachable, ...)."""


@dataclass
class Item:
    export: mapping.Export
    name: str
    check: Row | None = None  # what applying it would do (None: not checkable yet)

    def manifest(self, namespace: str) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": self.export.kind,
                "metadata": {"name": self.name, "namespace": namespace},
                "spec": self.export.spec}

    def verdict(self) -> list[str]:
        """What applying it does, in the planner's words."""
        row = self.check
        if row is None:
            return ["not checked: a DatabaseServer it names is not declared yet; declare it, "
                    "then `replication-operator plan -f` this file"]
        if row.action == "adopt":
            return ["applying it adopts this as it is: nothing is written to the server "
                    "(checked with the operator's own comparison)"]
        if row.action == "update":
            return [f"applying it adopts this and writes what the spec says differently: "
                    f"{', '.join(row.fields)}"]
        if row.action == "error":
            return [f"applying it as it is would fail: {p}" for p in row.problems]
        return [f"applying it would {row.action} {row.target}"]


@dataclass
class Result:
    namespace: str
    server: str
    server_type: str
    flavour: str = ""
    items: list[Item] = field(default_factory=list)
    tokens: list[tuple[str, mapping.TokenExport]] = field(default_factory=list)
    owned: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    undeclared: dict[str, mapping.Undeclared] = field(default_factory=dict)
    listed: int = 0


class Exporter:
    def __init__(self, cluster: Cluster, namespace: str, server: str,
                 kinds: Iterable[str] = KINDS) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.server = server
        self.kinds = set(kinds)
        self.planner = Planner(cluster)
        self.result = Result(namespace, server, "")

    # -- what the namespace has -----------------------------------------------------

    async def _reach(self) -> list[mapping.Reach]:
        """Every DatabaseServer of the namespace (with its credentials where its Secret
        is readable) and every Token's credential on them."""
        out: list[mapping.Reach] = []
        by_name: dict[str, ServerSettings] = {}
        for obj in await self.cluster.list(self.namespace, "databaseservers"):
            name, spec = obj["metadata"]["name"], obj.get("spec") or {}
            try:
                settings = (await self.planner.ctx.servers.get(self.namespace, name)).settings
            except BackendError as exc:
                settings = ServerSettings(key=f"{self.namespace}/{name}",
                                          type=str(spec.get("type") or ""),
                                          url=str(spec.get("url") or ""))
                if name != self.server:
                    self.result.notes.append(f"DatabaseServer {name!r}: {exc.message} (jobs "
                                             f"can name it, but not by its credentials)")
            by_name[name] = settings
            out.append(mapping.Reach(name, settings))
        for obj in await self.cluster.list(self.namespace, "tokens"):
            name, spec = obj["metadata"]["name"], obj.get("spec") or {}
            server = by_name.get(str(spec.get("server") or ""))
            if server is None:
                continue
            try:
                creds, auth_type, _, _ = await replication_handler.token_credentials(
                    self.namespace, {"name": name})
            except BackendError:
                continue  # not issued yet: nothing on a server can hold its credential
            out.append(mapping.Reach(str(spec["server"]), with_credentials(
                server, creds, auth_type), token=name))
        return out

    async def _types(self) -> dict[str, str]:
        return {o["metadata"]["name"]: str((o.get("spec") or {}).get("type") or "")
                for o in await self.cluster.list(self.namespace, "databaseservers")}

    async def _claimed_jobs(self) -> dict[str, str]:
        """External name → Replication, for the namespace's Replications on this server."""
        types = await self._types()
        claimed: dict[str, str] = {}
        for obj in await self.cluster.list(self.namespace, "replications"):
            name, spec = obj["metadata"]["name"], obj.get("spec") or {}
            source = str((spec.get("source") or {}).get("server") or "")
            target = str((spec.get("target") or {}).get("server") or "")
            job_server = spec.get("server") or (
                source if types.get(source) in replication_handler.PUSH_TYPES else target)
            if job_server != self.server:
                continue
            who = f"Replication {self.namespace}/{name}"
            status = obj.get("status") or {}
            try:
                driver = (await self.planner.ctx.servers.get(self.namespace, job_server)
                          ).backend.replications()
                jobs = replication_handler.job_names(self.namespace, name, spec, status,
                                                     driver)
            except BackendError:  # no such server or no jobs there: the names it may have
                jobs = {str(spec.get("externalName") or f"{self.namespace}.{name}"),
                        *(str(v) for v in (status.get("externalName"),
                                           status.get("retiring")) if v)}
            for job in jobs:
                claimed[job] = who
        return claimed

    async def _claimed_policies(self) -> dict[str, str]:
        """Policy id or name → ReplicationPolicy, for the namespace's policies here."""
        claimed: dict[str, str] = {}
        for obj in await self.cluster.list(self.namespace, "replicationpolicies"):
            name, spec = obj["metadata"]["name"], obj.get("spec") or {}
            try:
                if holder_of(spec) != self.server:
                    continue
            except BackendError:
                continue
            who = f"ReplicationPolicy {self.namespace}/{name}"
            claimed[policy_name(self.namespace, name)] = who
            for value in (spec.get("externalName"), (obj.get("status") or {}).get(
                    "externalName")):
                if value:
                    claimed[str(value)] = who
        return claimed

    async def _claimed_tokens(self) -> dict[str, str]:
        claimed: dict[str, str] = {}
        for obj in await self.cluster.list(self.namespace, "tokens"):
            name, spec = obj["metadata"]["name"], obj.get("spec") or {}
            if spec.get("server") == self.server:
                base = token_handler.base_name(self.namespace, name, spec)
                status = obj.get("status") or {}
                for slot in (base, other_slot(base, base), status.get("externalName"),
                             (status.get("previousCredential") or {}).get("externalName")):
                    if slot:
                        claimed[str(slot)] = f"Token {self.namespace}/{name}"
        return claimed

    async def _owner_exists(self, plural: str, owner: str) -> bool | None:
        """Whether the resource "ns/name" exists; None when that cannot be known."""
        namespace, _, name = owner.partition("/")
        if not namespace or not name:
            return False
        try:
            return await self.cluster.exists(namespace, plural, name)
        except Unknowable:
            return None

    async def _owned_by(self, plural: str, kind: str, owner: str | None) -> str | None:
        """A reason to skip something marked with `owner`, or None to export it."""
        if not owner:
            return None
        exists = await self._owner_exists(plural, owner)
        if exists is False:
            return None
        return f"{kind} {owner}" + ("" if exists else " (not checkable: no access there)")

    async def _dotted_owner(self, plural: str, kind: str, name: str) -> str | None:
        """For servers without an owner field: the name `<ns>.<name>` the operator
        gives, if that resource exists."""
        match = re.fullmatch(r"([a-z0-9][a-z0-9-]{0,62})\.(.+)", name)
        if match is None:
            return None
        return await self._owned_by(plural, kind, f"{match.group(1)}/{match.group(2)}")

    # -- the export -------------------------------------------------------------------

    async def run(self) -> Result:
        types = await self._types()
        server_type = types.get(self.server)
        if server_type is None:
            raise ExportError(f"DatabaseServer {self.server!r} not found in namespace "
                              f"{self.namespace}")
        self.result.server_type = server_type
        entry = await self.planner.ctx.servers.get(self.namespace, self.server)
        if server_type == "eden":  # its probe is a write; nothing to list either
            self.result.notes.append(EDEN_NOTE)
            return self.result
        info = await entry.backend.probe()
        self.result.flavour = f"{info.flavour} {info.version}".strip()
        wanted = SUPPORTED.get(server_type, set()) & self.kinds
        if self.kinds != set(KINDS):  # asked for explicitly: say why nothing comes
            for kind in sorted(self.kinds - SUPPORTED.get(server_type, set())):
                self.result.notes.append(f"{kind}: a {server_type} server holds none")
        conn = entry.backend.conn
        reach = await self._reach()
        exports: list[mapping.Export] = []
        if "Replication" in wanted and server_type in ("couchdb", "cloudant"):
            exports += await self._couch_jobs(conn, reach, has_scheduler(info))
        if "Replication" in wanted and server_type == "reductstore":
            exports += await self._reduct_replications(conn, reach)
        if "ReplicationPolicy" in wanted:
            exports += await self._harbor_policies(conn, reach)
        if "Token" in wanted:
            await self._tokens(conn, server_type, entry.settings)
        await self._name_and_check(exports)
        return self.result

    async def _couch_jobs(self, conn: ServerConnection, reach: Sequence[mapping.Reach],
                          mango: bool) -> list[mapping.Export]:
        response = await conn.request("GET", f"/{REPLICATOR}/_all_docs",
                                      params={"include_docs": "true"}, allow=(404,))
        rows = response.json().get("rows", []) if response.status_code == 200 else []
        claimed = await self._claimed_jobs()
        out = []
        for row in rows:
            doc_id, doc = str(row.get("id")), row.get("doc")
            if not doc or doc_id.startswith("_design/"):
                continue
            self.result.listed += 1
            owner = claimed.get(doc_id) or await self._owned_by(
                "replications", "Replication", doc.get(couch_docs.OWNER_FIELD))
            if owner:
                self.result.owned.append(f"job {doc_id!r} (owned by {owner})")
                continue
            out.append(mapping.couch_job(doc_id, doc, job_server=self.server, reach=reach,
                                         mango=mango))
        return out

    async def _reduct_replications(self, conn: ServerConnection,
                                   reach: Sequence[mapping.Reach]) -> list[mapping.Export]:
        listed = (await conn.request("GET", "/api/v1/replications")).json()
        claimed = await self._claimed_jobs()
        out = []
        for info in listed.get("replications") or []:
            name = str(info.get("name"))
            self.result.listed += 1
            owner = claimed.get(name) or await self._dotted_owner("replications",
                                                                  "Replication", name)
            if owner:
                self.result.owned.append(f"replication {name!r} (owned by {owner})")
                continue
            detail = (await conn.request("GET", f"/api/v1/replications/"
                                                f"{quote(name, safe='')}")).json()
            out.append(mapping.reduct_replication(name, detail.get("settings") or {},
                                                  detail.get("info") or info,
                                                  job_server=self.server, reach=reach))
        return out

    async def _harbor_policies(self, conn: ServerConnection,
                               reach: Sequence[mapping.Reach]) -> list[mapping.Export]:
        policies = await list_all(conn, "/replication/policies")
        registries = {int(r["id"]): r for r in await list_all(conn, "/registries")}
        claimed = await self._claimed_policies()
        out = []
        for policy in policies:
            policy_id = str(policy.get("id"))
            self.result.listed += 1
            owner = claimed.get(policy_id) or claimed.get(str(policy.get("name"))) or \
                await self._owned_by("replicationpolicies", "ReplicationPolicy",
                                     harbor_docs.owner_of(policy.get("description")))
            if owner:
                self.result.owned.append(f"policy {policy_id} {policy.get('name')!r} "
                                         f"(owned by {owner})")
                continue
            out.append(mapping.harbor_policy(policy, holder=self.server,
                                             registries=registries, reach=reach))
        return out

    async def _tokens(self, conn: ServerConnection, server_type: str,
                      settings: ServerSettings) -> None:
        claimed = await self._claimed_tokens()
        own = settings.credentials.username
        found: list[tuple[str, mapping.TokenExport]] = []
        if server_type == "reductstore":
            me = (await conn.request("GET", "/api/v1/me")).json().get("name")
            for item in (await conn.request("GET", "/api/v1/tokens")).json().get("tokens") or []:
                name = str(item.get("name"))
                if name == me:
                    continue  # the DatabaseServer's own credential
                owner = claimed.get(name) or await self._dotted_owner("tokens", "Token", name)
                if owner:
                    self.result.owned.append(f"token {name!r} (owned by {owner})")
                    continue
                found.append((name, mapping.reduct_token(item, server=self.server)))
        elif server_type == "harbor":
            for robot in await list_all(conn, "/robots", {"q": "Level=system"}):
                name = str(robot.get("name"))
                if name == own:
                    continue
                owner = await self._owned_by("tokens", "Token",
                                             harbor_docs.owner_of(robot.get("description")))
                if owner:
                    self.result.owned.append(f"robot {name!r} (owned by {owner})")
                    continue
                found.append((name.rsplit("+", 1)[-1].removeprefix("robot$"),
                              mapping.harbor_robot(robot, server=self.server)))
        elif server_type in ("couchdb", "cloudant"):
            response = await conn.request("GET", "/_users/_all_docs",
                                          params={"include_docs": "true"}, allow=(403, 404))
            rows = response.json().get("rows", []) if response.status_code == 200 else []
            if response.status_code != 200:
                self.result.notes.append(f"users: GET /_users answered "
                                         f"{response.status_code}; not listed")
            for row in rows:
                user = row.get("doc") or {}
                name = str(user.get("name") or "")
                if user.get("type") != "user" or not name or name == own:
                    continue
                owner = claimed.get(name) or await self._owned_by(
                    "tokens", "Token", user.get(couch_docs.OWNER_FIELD))
                if owner:
                    self.result.owned.append(f"user {name!r} (owned by {owner})")
                    continue
                found.append((name, mapping.couch_user(user, server=self.server)))
        taken = names(await self.cluster.list(self.namespace, "tokens"))
        for name, token in found:
            chosen = mapping.resource_name(name, taken)
            taken.add(chosen)
            self.result.tokens.append((chosen, token))

    async def _name_and_check(self, exports: Sequence[mapping.Export]) -> None:
        """Give each a free name and let the planner say what applying it would do."""
        taken: dict[str, set[str]] = {}
        for kind, plural in (("Replication", "replications"),
                             ("ReplicationPolicy", "replicationpolicies")):
            taken[kind] = names(await self.cluster.list(self.namespace, plural))
        for export in sorted(exports, key=lambda e: e.name_hint):
            name = mapping.resource_name(export.name_hint, taken[export.kind])
            taken[export.kind].add(name)
            item = Item(export, name)
            for missing in export.undeclared:
                self.result.undeclared.setdefault(missing.name, missing)
            if not export.undeclared:
                body = item.manifest(self.namespace)
                item.check = await self.planner.row(
                    Manifest(export.kind, self.namespace, name, body, "export"))
            self.result.items.append(item)

    async def aclose(self) -> None:
        await self.planner.aclose()


# --- output --------------------------------------------------------------------------


def _comment(lines: Iterable[str]) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def _yaml(body: Mapping[str, Any]) -> str:
    return yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=100)


def undeclared_manifest(missing: mapping.Undeclared, namespace: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseServer",
            "metadata": {"name": missing.name, "namespace": namespace},
            "spec": {"type": missing.type, "url": missing.url,
                     "auth": {"type": "basic" if missing.type != "reductstore" else "bearer",
                              "secretRef": {"name": f"{missing.name}-auth"}}}}


def token_manifest(name: str, token: mapping.TokenExport, namespace: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Token",
            "metadata": {"name": name, "namespace": namespace}, "spec": token.spec}


def header(result: Result) -> list[str]:
    what = {"harbor": "replication policies", "reductstore": "replications"}.get(
        result.server_type, "replication jobs")
    lines = [f"replication-operator export: namespace {result.namespace}, DatabaseServer "
             f"{result.server} ({result.server_type}, {result.flavour or 'not probed'})"]
    if SUPPORTED.get(result.server_type):
        lines.append(f"{result.listed} {what} on the server: {len(result.items)} exported "
                     f"below, {len(result.owned)} owned by resources already")
    lines += [f"  owned: {line}" for line in result.owned]
    lines += [f"note: {line}" for line in result.notes]
    return lines


def render_yaml(result: Result, out: TextIO) -> None:
    out.write(_comment(header(result)))
    for item in result.items:
        out.write("---\n")
        out.write(_comment([item.export.title, *item.verdict(),
                            *[f"note: {n}" for n in item.export.notes]]))
        out.write(_yaml(item.manifest(result.namespace)))
    if result.undeclared:
        out.write("\n" + _comment(
            ["DatabaseServers the jobs above talk to and this namespace does not declare:",
             "declare them (with a Secret holding their credentials) before applying:", ""]))
        for missing in result.undeclared.values():
            out.write(_comment(["---", *_yaml(undeclared_manifest(
                missing, result.namespace)).splitlines()]))
    if result.tokens:
        out.write("\n" + _comment([
            f"Credentials on {result.server} no resource owns ({len(result.tokens)}): a "
            f"server never returns a credential's value, so they cannot be adopted.",
            "To bring one under GitOps, rotate it into a Token: apply a Token like the one "
            "below (the operator issues a new credential into its Secret), move the "
            "clients to that Secret, then remove the old credential by hand.", ""]))
        for name, token in result.tokens:
            out.write(_comment(["---", token.title, *[f"note: {n}" for n in token.notes[1:]],
                                *_yaml(token_manifest(name, token,
                                                      result.namespace)).splitlines()]))


def render_json(result: Result, out: TextIO, err: TextIO) -> None:
    """An appliable v1 List on stdout; what YAML says in comments goes to stderr."""
    document = {"apiVersion": "v1", "kind": "List",
                "items": [item.manifest(result.namespace) for item in result.items]}
    out.write(json.dumps(document, indent=2) + "\n")
    lines = header(result)
    for item in result.items:
        lines += [f"{item.export.kind} {item.name}: {item.export.title}", *[
            f"  {line}" for line in [*item.verdict(), *item.export.notes]]]
    lines += [f"declare DatabaseServer {m.name} ({m.type} at {m.url})"
              for m in result.undeclared.values()]
    lines += [f"not adoptable: {token.title} (rotate it into a Token)"
              for _, token in result.tokens]
    err.write(_comment(lines))


async def run_export(namespace: str | None, server: str, kinds: Sequence[str] | None,
                     output: str, out: TextIO, err: TextIO) -> int:
    try:
        cluster = Cluster()
        exporter = Exporter(cluster, namespace or current_namespace(), server,
                            kinds or KINDS)
    except ConfigException as exc:
        print(f"error: no cluster to read ({exc})", file=err)
        return 1
    try:
        result = await exporter.run()
    except (ExportError, BackendError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    except ApiException as exc:
        print(f"error: cannot read the cluster: HTTP {exc.status} {exc.reason}", file=err)
        return 1
    finally:
        await exporter.aclose()
    if output == "json":
        render_json(result, out, err)
    else:
        render_yaml(result, out)
    return 0
