"""Pure: what a server holds (a `_replicator` doc, a ReductStore replication, a Harbor
policy, a token) → the spec that adopts it.

The inverse of the backends' desired-state functions: a spec produced here, resolved
and turned into a server document by the operator's own code, gives back the document
it came from wherever the spec can say it (property-tested). Where it cannot, the
export says so in a note, and `plan` shows the field the adoption would write.

Credentials are never copied: a job's embedded credential is compared with those of
the DatabaseServers and Tokens in the namespace, and becomes a reference to the one
that holds it. Notes name servers, Tokens and fields, never a credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from replication_operator.backends.base import Endpoint
from replication_operator.backends.couchdb import docs as couch
from replication_operator.backends.harbor import docs as harbor
from replication_operator.backends.reductstore import settings as reduct
from replication_operator.credentials import Credentials
from replication_operator.http import ServerSettings

REPLICATION = "Replication"
POLICY = "ReplicationPolicy"
TOKEN = "Token"
DESIGN_FILTER = re.compile(r"^[^/]+/[^/]+$")  # the CRD's pattern of spec.filter.designFilter
NAME_MAX = 63


@dataclass(frozen=True)
class Reach:
    """One way to reach a server from a job: a DatabaseServer's own credentials, or
    those of a Token on it (`token` set)."""

    server: str  # DatabaseServer name
    settings: ServerSettings  # its URL, with the credentials of `token` if set
    token: str | None = None

    def who(self) -> str:
        return f"Token {self.token!r}" if self.token else f"DatabaseServer {self.server!r}"


@dataclass(frozen=True)
class Undeclared:
    """A server a job talks to that no DatabaseServer in the namespace stands for."""

    name: str  # the name the exported manifest uses for it
    type: str
    url: str


@dataclass
class Export:
    """One exported resource, before it is checked against the operator's own code."""

    kind: str
    external_name: str  # the id on the server (spec.externalName)
    title: str  # what it is on the server, for the comment above the manifest
    name_hint: str  # metadata.name before uniqueness
    spec: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    undeclared: list[Undeclared] = field(default_factory=list)


@dataclass
class TokenExport:
    """A credential on a server: listed, never exported as a resource (its value cannot
    be read back), with the Token that would replace it."""

    title: str
    spec: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# --- names and URLs -----------------------------------------------------------------


def resource_name(external: str, taken: Iterable[str]) -> str:
    """A metadata.name for what is called `external` on the server: DNS-safe, at most
    63 characters, and not one of `taken` (a digest of `external` tells apart)."""
    label = re.sub(r"[^a-z0-9-]+", "-", external.lower())
    label = re.sub(r"-+", "-", label).strip("-")[:NAME_MAX].rstrip("-")
    if not label or not label[0].isalpha():
        label = f"x-{label}".rstrip("-")[:NAME_MAX]
    used = set(taken)
    if label not in used:
        return label
    digest = hashlib.sha256(external.encode()).hexdigest()
    for size in (6, 12, 64):
        candidate = f"{label[:NAME_MAX - size - 1].rstrip('-')}-{digest[:size]}"
        if candidate not in used:
            return candidate
    raise ValueError(f"no free name for {external!r}")


def _url_key(url: str) -> str:
    """A URL in a comparable form: scheme and host lowercased, default port explicit,
    no userinfo, query or fragment, no trailing slash."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def undeclared_server(type_: str, url: str) -> Undeclared:
    parts = urlsplit(url)
    host = re.sub(r"[^a-z0-9]+", "-", (parts.hostname or "server").lower()).strip("-")
    try:
        port = parts.port
    except ValueError:
        port = None
    name = resource_name(f"{type_}-{host}" + (f"-{port}" if port else ""), ())
    base = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path.rstrip("/"),
                       "", ""))
    return Undeclared(name=name, type=type_, url=base)


def _server_reaches(reach: Sequence[Reach], types: Iterable[str]) -> dict[str, list[Reach]]:
    """Reaches by server name, the server's own first, then its Tokens by name."""
    wanted = set(types)
    out: dict[str, list[Reach]] = {}
    for item in sorted(reach, key=lambda r: (r.server, r.token is not None, r.token or "")):
        if item.settings.type in wanted:
            out.setdefault(item.server, []).append(item)
    return out


# --- credentials --------------------------------------------------------------------


def embedded_credentials(value: Any) -> Credentials:
    """The credential a `_replicator` endpoint carries, in whichever form it is written
    (URL userinfo, `auth.basic`, `auth.iam`, `headers.Authorization`). Never printed:
    only compared."""
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.username is None:
            return Credentials()
        return Credentials(username=unquote(parts.username),
                           password=unquote(parts.password or ""))
    if not isinstance(value, Mapping):
        return Credentials()
    auth = value.get("auth") or {}
    if isinstance(auth, Mapping):
        basic = auth.get("basic") or {}
        if isinstance(basic, Mapping) and basic.get("username"):
            return Credentials(username=str(basic["username"]),
                               password=str(basic.get("password") or ""))
        iam = auth.get("iam") or {}
        if isinstance(iam, Mapping) and iam.get("api_key"):
            return Credentials(apikey=str(iam["api_key"]))
    headers = value.get("headers") or {}
    header = ""
    if isinstance(headers, Mapping):
        header = next((str(v) for k, v in headers.items()
                       if str(k).lower() == "authorization"), "")
    scheme, _, payload = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(payload.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return Credentials()
        return Credentials(username=user, password=password)
    if scheme.lower() == "bearer" and payload.strip():
        return Credentials(token=payload.strip())
    url = str(value.get("url") or "")
    return embedded_credentials(url) if url else Credentials()


def same_credentials(found: Credentials, settings: ServerSettings) -> bool:
    have = settings.credentials
    if found.apikey:
        return found.apikey == have.apikey
    if found.token:
        return found.token == have.token
    return bool(found.username) and (found.username, found.password) == \
        (have.username, have.password)


# --- CouchDB ------------------------------------------------------------------------


@dataclass
class Side:
    spec: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    undeclared: Undeclared | None = None


def couch_endpoint(value: Any, *, side: str, job_server: str, reach: Sequence[Reach]
                   ) -> Side:
    """`spec.source` / `spec.target` for a `_replicator` endpoint."""
    if isinstance(value, str):
        url = value
    else:
        url = str(value.get("url") or "") if isinstance(value, Mapping) else ""
    servers = _server_reaches(reach, ("couchdb", "cloudant"))
    if not urlsplit(url).scheme:  # a database of the job server, by name (1.x style)
        return Side({"server": job_server, "database": url},
                    [f"spec.{side}: the job names a local database; the operator writes it "
                     f"as a URL of DatabaseServer {job_server!r} (adopting rewrites "
                     f"{side})"])
    clean = _url_key(without_userinfo(url))
    best: tuple[int, str, str] | None = None
    for server, ways in servers.items():
        base = _url_key(ways[0].settings.base_url)
        rest = clean[len(base) + 1:] if clean.startswith(base + "/") else ""
        if rest and "/" not in rest and (best is None or len(base) > best[0]):
            best = (len(base), server, unquote(rest))
    if best is None:
        parts = urlsplit(without_userinfo(url))
        head, _, last = parts.path.rstrip("/").rpartition("/")
        database = unquote(last)
        missing = undeclared_server("couchdb", urlunsplit((parts.scheme, parts.netloc, head,
                                                           "", "")))
        return Side({"server": missing.name, "database": database},
                    [f"spec.{side}.server: {missing.url} is no DatabaseServer in this "
                     f"namespace: declare one named {missing.name!r} (see below)"],
                    undeclared=missing)
    _, server, database = best
    ways = servers[server]
    for way in ways:
        if couch.endpoint_doc(Endpoint(way.settings, database)) == value:
            return Side(_endpoint_spec(way, database))
    found = embedded_credentials(value)
    holder = next((w for w in ways if same_credentials(found, w.settings)), None)
    if holder is not None:
        return Side(_endpoint_spec(holder, database),
                    [f"spec.{side}: the job's credentials are those of {holder.who()}, "
                     f"written in another form; adopting rewrites {side} the operator's "
                     f"way (headers.Authorization)"])
    own = ways[0]
    if found.empty:
        why = (f"the job connects without credentials; adopting adds those of "
               f"{own.who()}" if not own.settings.credentials.empty else
               "its URL is written differently; adopting rewrites it")
    else:
        why = (f"the job's credentials belong to no DatabaseServer or Token in this "
               f"namespace; adopting replaces them with those of {own.who()} (to keep a "
               f"credential of its own, declare a Token and set spec.{side}.tokenRef)")
    return Side(_endpoint_spec(own, database), [f"spec.{side}: {why}"])


def _endpoint_spec(way: Reach, database: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"server": way.server, "database": database}
    if way.token:
        spec["tokenRef"] = {"name": way.token}
    return spec


def couch_job(doc_id: str, doc: Mapping[str, Any], *, job_server: str,
              reach: Sequence[Reach], mango: bool) -> Export:
    """A `_replicator` doc → a Replication that adopts it."""
    notes: list[str] = []
    source = couch_endpoint(doc.get("source"), side="source", job_server=job_server,
                            reach=reach)
    target = couch_endpoint(doc.get("target"), side="target", job_server=job_server,
                            reach=reach)
    continuous = bool(doc.get("continuous", False))
    spec: dict[str, Any] = {"server": job_server, "source": source.spec,
                            "target": target.spec, "continuous": continuous,
                            "externalName": doc_id}
    if doc.get("create_target"):
        spec["target"]["create"] = True
    flt: dict[str, Any] = {}
    doc_ids = doc.get("doc_ids")
    if doc_ids:
        if isinstance(doc_ids, list) and all(isinstance(i, str) for i in doc_ids):
            flt["docIds"] = list(doc_ids)
        else:
            notes.append("spec.filter.docIds: doc_ids holds something other than strings; "
                         "not exported (adopting removes doc_ids)")
    selector = doc.get("selector")
    if selector and not flt:
        flt["selector"] = selector
        if not mango:
            notes.append("spec.filter.selector: this server cannot filter a replication by "
                         "selector (the job copies nothing); the operator installs it as a "
                         "JavaScript filter on the source (adopting rewrites the job)")
    elif selector:
        notes.append("spec.filter.selector: a job cannot have both doc_ids and a selector; "
                     "not exported")
    design = doc.get("filter")
    if design and not flt:
        if isinstance(design, str) and DESIGN_FILTER.match(design):
            flt["designFilter"] = design
        else:
            notes.append(f"spec.filter.designFilter: {design!r} is not of the form "
                         f"ddoc/name; not exported (adopting removes the filter)")
    elif design:
        notes.append("spec.filter.designFilter: a job cannot combine a filter function "
                     "with doc_ids or a selector; not exported")
    params = doc.get("query_params")
    if params:
        if isinstance(params, Mapping) and all(isinstance(v, str) for v in params.values()):
            flt["queryParams"] = dict(params)
        else:
            notes.append("spec.filter.queryParams: query_params values must be strings in "
                         "the spec; not exported (adopting rewrites them)")
    if flt:
        spec["filter"] = flt
    options = {k: doc[k] for k in sorted(couch.ALLOWED_OPTIONS) if k in doc}
    if options:
        spec["options"] = options
    unmanaged = sorted(k for k in doc if not k.startswith("_") and k not in
                       (*couch.REPLICATION_FIELDS, "owner", couch.OWNER_FIELD,
                        couch.NONCE_FIELD))
    if unmanaged:
        notes.append(f"fields the operator does not manage stay as they are until it "
                     f"rewrites the job, which drops them: {', '.join(unmanaged)}")
    owner = doc.get(couch.OWNER_FIELD)
    if owner:
        notes.append(f"made by Replication {owner}, which no longer exists (left on the "
                     f"server by deletionPolicy Orphan)")
    return Export(kind=REPLICATION, external_name=doc_id,
                  title=f"_replicator job {doc_id!r} "
                        f"({'continuous' if continuous else 'one-shot'})",
                  name_hint=doc_id, spec=spec, notes=[*source.notes, *target.notes, *notes],
                  undeclared=[s.undeclared for s in (source, target) if s.undeclared])


# --- ReductStore --------------------------------------------------------------------

DEPRECATED_REDUCT = ("include", "exclude", "each_n", "each_s")


def reduct_replication(name: str, settings: Mapping[str, Any], info: Mapping[str, Any], *,
                       job_server: str, reach: Sequence[Reach]) -> Export:
    """A ReductStore replication (its detail's `settings` and list `info`) → a
    Replication that adopts it. The job server is the source (ReductStore pushes)."""
    notes: list[str] = []
    dst_host = str(settings.get("dst_host") or "")
    servers = _server_reaches(reach, ("reductstore",))
    target_server = next((s for s, ways in servers.items()
                          if _url_key(ways[0].settings.base_url) == _url_key(dst_host)), None)
    undeclared: list[Undeclared] = []
    if target_server is None:
        missing = undeclared_server("reductstore", dst_host)
        undeclared.append(missing)
        target_server = missing.name
        notes.append(f"spec.target.server: {missing.url} is no DatabaseServer in this "
                     f"namespace: declare one named {missing.name!r} (see below)")
    spec: dict[str, Any] = {
        "server": job_server,
        "source": {"server": job_server, "database": str(settings.get("src_bucket") or "")},
        "target": {"server": target_server, "database": str(settings.get("dst_bucket") or "")},
        "externalName": name}
    flt: dict[str, Any] = {}
    if settings.get("entries"):
        flt["entries"] = list(settings["entries"])
    if settings.get("when"):
        flt["when"] = settings["when"]
    if flt:
        spec["filter"] = flt
    ignored = [k for k in DEPRECATED_REDUCT if settings.get(k) not in (None, {}, 0, [])]
    if ignored:
        notes.append(f"settings {', '.join(ignored)} are ignored by ReductStore 1.21 and not "
                     f"exported (the operator writes such filters into `when`)")
    mode = str(settings.get("mode") or info.get("mode") or "enabled")
    if mode in ("paused", "disabled"):
        spec["suspend"] = True
        if mode == "disabled":
            notes.append("mode disabled has no spec field; a suspended Replication is "
                         "paused (adopting switches the mode to paused)")
    options = {k: settings[k] for k in sorted(reduct.ALLOWED_OPTIONS)
               if settings.get(k) not in (None, "", "none")}
    if options:
        spec["options"] = options
    notes.append(f"ReductStore never returns dst_token: adopting keeps the one the "
                 f"replication has; when the operator next writes the replication it sends "
                 f"the credential of DatabaseServer {target_server!r} (or of a Token named in "
                 f"spec.target.tokenRef)")
    if info.get("is_provisioned"):
        notes.append("provisioned on the server (read-only): the operator reports it and "
                     "never writes it")
    return Export(kind=REPLICATION, external_name=name,
                  title=f"ReductStore replication {name!r} ({mode})", name_hint=name,
                  spec=spec, notes=notes, undeclared=undeclared)


# --- Harbor -------------------------------------------------------------------------


def split_name_pattern(value: str) -> list[str]:
    """Harbor's one name filter → spec.source.databases; `{a,b}` becomes [a, b] where
    the operator would write it back exactly so, else it stays one pattern."""
    if value.startswith("{") and value.endswith("}") and "{" not in value[1:-1] \
            and "}" not in value[1:-1]:
        parts = value[1:-1].split(",")
        if all(parts) and harbor.name_pattern(tuple(parts)) == value:
            return parts
    return [value]


def harbor_policy(policy: Mapping[str, Any], *, holder: str,
                  registries: Mapping[int, Mapping[str, Any]], reach: Sequence[Reach]
                  ) -> Export:
    """A Harbor replication policy on `holder` → a ReplicationPolicy that adopts it."""
    notes: list[str] = []
    policy_id = str(policy.get("id"))
    push = harbor.registry_id(policy.get("dest_registry")) != 0
    remote_id = harbor.registry_id(policy.get("dest_registry" if push else "src_registry"))
    registry = registries.get(remote_id) or {}
    servers = _server_reaches(reach, ("harbor",))
    url = str(registry.get("url") or "").rstrip("/")
    matched = next((s for s, ways in servers.items()
                    if ways[0].settings.base_url.rstrip("/") == url
                    and registry.get("type") == "harbor"), None)
    remote: dict[str, Any]
    if matched is not None:
        remote = {"server": matched}
    else:
        declared: dict[str, Any] = {"type": str(registry.get("type") or ""), "url": url}
        if registry.get("insecure"):
            declared["insecure"] = True
        remote = {"registry": declared}
        notes.append(f"{'spec.target' if push else 'spec.source'}.registry: Harbor registry "
                     f"{registry.get('name')!r} ({url}) is no Harbor DatabaseServer in this "
                     f"namespace; the policy keeps using it as it is (Harbor masks its "
                     f"credential, so it is not exported). To have the operator manage a "
                     f"registry of its own, add secretRef (adopting then switches the "
                     f"policy to it)")
    filters = list(policy.get("filters") or [])
    names = [f for f in filters if f.get("type") == "name"]
    if names:
        databases = split_name_pattern(str(names[0].get("value") or ""))
        if len(names) > 1:
            notes.append("spec.source.databases: more than one name filter; only the first "
                         "is exported")
    else:
        databases = ["**"]
        notes.append("spec.source.databases: the policy has no name filter (every "
                     "repository); the spec needs one, so adopting adds the name filter "
                     "'**' (the same repositories)")
    spec_filters: list[dict[str, Any]] = []
    for item in filters:
        kind = str(item.get("type") or "")
        if kind == "name":
            continue
        if kind not in ("tag", "label", "resource") or any(f["type"] == kind
                                                             for f in spec_filters):
            notes.append(f"spec.filters: a {kind or 'typeless'} filter cannot be expressed "
                         f"(one filter of each of tag, label, resource); not exported")
            continue
        value = item.get("value")
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        entry: dict[str, Any] = {"type": kind, "value": text}
        if kind in harbor.DECORATED and item.get("decoration") == "excludes":
            entry["decoration"] = "excludes"
        spec_filters.append(entry)
    trigger = policy.get("trigger") or {}
    trigger_type = {"event_based": "eventBased"}.get(str(trigger.get("type") or "manual"),
                                                     str(trigger.get("type") or "manual"))
    spec_trigger: dict[str, Any] = {"type": trigger_type}
    if trigger_type == "scheduled":
        spec_trigger["schedule"] = str((trigger.get("trigger_settings") or {}).get("cron")
                                       or "")
    local = {"server": holder}
    source = {**(local if push else remote), "databases": databases}
    target: dict[str, Any] = {**(remote if push else local)}
    if policy.get("dest_namespace"):
        target["namespace"] = str(policy["dest_namespace"])
    count = policy.get("dest_namespace_replace_count")
    if count is not None and int(count) != -1:
        target["namespaceReplaceCount"] = int(count)
    spec: dict[str, Any] = {"server": holder, "source": source, "target": target,
                            "trigger": spec_trigger, "externalName": policy_id}
    if spec_filters:
        spec["filters"] = spec_filters
    deletion = policy.get("replicate_deletion")
    if deletion is None:
        deletion = policy.get("deletion")
    if deletion:
        spec["replicateDeletion"] = True
    # the CRD defaults override and enabled to true: false must be said
    spec["override"] = bool(policy.get("override"))
    spec["enabled"] = bool(policy.get("enabled"))
    if int(policy.get("speed") or 0) > 0:
        spec["speed"] = int(policy["speed"])
    if policy.get("copy_by_chunk"):
        spec["copyByChunk"] = True
    if policy.get("single_active_replication"):
        notes.append("single_active_replication has no spec field: it stays until the "
                     "operator rewrites the policy, which drops it")
    owner = harbor.owner_of(policy.get("description"))
    if owner:
        notes.append(f"made by ReplicationPolicy {owner}, which no longer exists")
    name = str(policy.get("name") or policy_id)
    return Export(kind=POLICY, external_name=policy_id,
                  title=f"Harbor replication policy {policy_id} {name!r} "
                        f"({'push' if push else 'pull'}, {trigger_type})",
                  name_hint=name, spec=spec, notes=notes)


# --- tokens -------------------------------------------------------------------------


def token_spec(server: str, *, full_access: bool = False, read: Iterable[str] = (),
               write: Iterable[str] = ()) -> dict[str, Any]:
    permissions: dict[str, Any] = {}
    if full_access:
        permissions["fullAccess"] = True
    if sorted(set(read)):
        permissions["read"] = sorted(set(read))
    if sorted(set(write)):
        permissions["write"] = sorted(set(write))
    return {"server": server, "permissions": permissions}


ROTATE_INTO_TOKEN = ("the server never returns a credential's value, so it cannot be "
                     "adopted: declare this Token (it issues a new credential into its "
                     "Secret), move the clients to that Secret, then remove the old "
                     "credential by hand")


def reduct_token(item: Mapping[str, Any], *, server: str) -> TokenExport:
    perms = item.get("permissions") or {}
    name = str(item.get("name"))
    notes = [ROTATE_INTO_TOKEN]
    if item.get("is_provisioned"):
        notes.append("provisioned on the server (read-only)")
    return TokenExport(title=f"ReductStore API token {name!r}",
                       spec=token_spec(server, full_access=bool(perms.get("full_access")),
                                       read=perms.get("read") or (),
                                       write=perms.get("write") or ()), notes=notes)


def harbor_robot(robot: Mapping[str, Any], *, server: str) -> TokenExport:
    read: set[str] = set()
    write: set[str] = set()
    full = False
    for permission in robot.get("permissions") or []:
        namespace = str(permission.get("namespace") or "")
        actions = {(str(a.get("resource")), str(a.get("action")))
                   for a in permission.get("access") or []}
        if namespace == "*":
            full = True
        elif ("repository", "push") in actions:
            write.add(namespace)
        elif ("repository", "pull") in actions:
            read.add(namespace)
    spec = token_spec(server, full_access=full, read=read, write=write)
    duration = int(robot.get("duration") or -1)
    if duration > 0:
        spec["expiresInDays"] = duration
    return TokenExport(title=f"Harbor robot account {robot.get('name')!r} "
                             f"({robot.get('level') or 'system'} level)", spec=spec,
                       notes=[ROTATE_INTO_TOKEN])


def couch_user(user: Mapping[str, Any], *, server: str) -> TokenExport:
    databases = [str(d) for d in user.get("dbops_databases") or []]
    notes = [ROTATE_INTO_TOKEN]
    if not databases:
        notes.append("CouchDB keeps a user's access in each database's _security: list the "
                     "databases it needs in permissions.read / write")
    return TokenExport(title=f"CouchDB user {user.get('name')!r}",
                       spec=token_spec(server, read=databases, write=databases),
                       notes=notes)
