"""What the operator would do about each resource, decided by the operator's own code.

For every resource the planner does what a reconcile does, minus the writes: the
handler's `resolve` turns the spec into a backend request (through a server registry
whose connections refuse writes), the backend observes the server, and the same pure
`plan()` / `plan_token()` / `run_decision()` the handlers call decide the action. The
previous status and generation come from the object in the cluster, read with GET.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from replication_operator.backends.base import ERROR, FAILED
from replication_operator.backends.factory import make_backend
from replication_operator.config import ROTATE_REQUESTED, RUN_REQUESTED, OperatorConfig
from replication_operator.context import OperatorContext
from replication_operator.errors import BackendError, MissingReferenceError
from replication_operator.gitops.cluster import PLURALS, Cluster, decode_secret
from replication_operator.gitops.manifests import (
    Manifest,
    changed_paths,
    spec_schema,
    with_defaults,
)
from replication_operator.gitops.readonly import ReadOnlyServers, WriteRefused
from replication_operator.handlers import policy as policy_handler
from replication_operator.handlers import replication as replication_handler
from replication_operator.handlers import token as token_handler
from replication_operator.reconcile.policy import RunVerb, run_decision
from replication_operator.reconcile.replication import Plan, Verb, job_was_seen, plan
from replication_operator.reconcile.token import TokenVerb, plan_token, rotation_due

# One consistent read per server per plan: every resource on a server is observed from
# the same list (the operator's resync does the same with its snapshots).
PLAN_MAX_AGE = 3600.0
CHILD_LABEL = "replication.dbops.dev/policy"
ORDER = ("DatabaseServer", "Token", "Replication", "ReplicationPolicy")


@dataclass
class Row:
    """One resource: what happens to it in the cluster and on its server."""

    kind: str
    namespace: str
    name: str
    server: str = ""  # the DatabaseServer where the action happens
    target: str = ""  # what on that server: "job ns.name", "policy 17", "credential x"
    resource: str = "unchanged"  # new | changed | unchanged | pruned (in the cluster)
    action: str = "nothing"  # create | update | delete | adopt | rotate | nothing | error
    reason: str = ""  # the Event reason the operator would give
    message: str = ""
    fields: list[str] = field(default_factory=list)  # on the server, names only
    spec_fields: list[str] = field(default_factory=list)  # spec paths that change
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    spec_changed: bool = True  # the handler's `spec_changed` after the apply

    @property
    def changes(self) -> bool:
        return self.resource != "unchanged" or self.action not in ("nothing", "error")

    def decided(self, action: Plan, differences: Sequence[str]) -> None:
        self.action = {Verb.CREATE: "create", Verb.UPDATE: "update", Verb.DELETE: "delete"}.get(
            action.verb, "adopt" if action.reason == "Adopted" else "nothing")
        self.reason, self.message = action.reason, action.message
        if action.verb is Verb.UPDATE:
            self.fields = list(differences)

    def failed(self, error: BackendError) -> None:
        self.action = "error"
        self.problems.append(f"{error.code}: {error.message}")

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name,
                "server": self.server, "target": self.target, "resource": self.resource,
                "action": self.action, "reason": self.reason, "message": self.message,
                "fields": self.fields, "specFields": self.spec_fields, "notes": self.notes,
                "problems": self.problems, "changes": self.changes}


class Scope:
    """The cluster as the manifests would leave it, for what resources refer to:
    DatabaseServers and Secrets in the files win over those in the cluster."""

    def __init__(self, cluster: Cluster, manifests: Sequence[Manifest]) -> None:
        self.cluster = cluster
        self.files = {(m.kind, m.namespace, m.name): m for m in manifests}

    async def server_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        planned = self.files.get(("DatabaseServer", namespace, name))
        if planned is not None:
            return planned.body
        return await self.cluster.get(namespace, "databaseservers", name)

    async def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        planned = self.files.get(("Secret", namespace, name))
        if planned is not None:
            return decode_secret(planned.body)
        return await self.cluster.secret(namespace, name)


class Planner:
    def __init__(self, cluster: Cluster, manifests: Sequence[Manifest] = ()) -> None:
        self.cluster = cluster
        self.scope = Scope(cluster, manifests)
        servers = ReadOnlyServers(read_secret=self.scope.secret,
                                  read_server=self.scope.server_body,
                                  backend_factory=make_backend)
        self.ctx = OperatorContext(config=OperatorConfig(), servers=servers)
        self.notes: list[str] = []

    async def aclose(self) -> None:
        await self.ctx.servers.aclose()

    # -- the resource in the cluster ------------------------------------------------

    async def _start(self, manifest: Manifest) -> tuple[Row, dict[str, Any], dict[str, Any]]:
        """The row, the spec as the API server would store it, the previous status."""
        plural = PLURALS[manifest.kind]
        schema = await self.cluster.schema(plural)
        if schema is None and not any("defaults" in n for n in self.notes):
            self.notes.append("the CRDs cannot be read: the API server's defaults are not "
                              "applied to the files, so spec changes may be overstated")
        spec = with_defaults(spec_schema(schema), manifest.spec)
        existing = await self.cluster.get(manifest.namespace, plural, manifest.name)
        row = Row(manifest.kind, manifest.namespace, manifest.name)
        if existing is None:
            row.resource = "new"
            return row, spec, {}
        previous = dict(existing.get("status") or {})
        row.spec_fields = changed_paths(existing.get("spec") or {}, spec)
        row.resource = "changed" if row.spec_fields else "unchanged"
        generation = (existing.get("metadata") or {}).get("generation")
        row.spec_changed = bool(row.spec_fields) or \
            previous.get("observedGeneration") != generation
        if (existing.get("metadata") or {}).get("deletionTimestamp"):
            row.notes.append("being deleted: applying cannot bring it back until the "
                             "deletion is over")
        return row, spec, previous

    async def row(self, manifest: Manifest) -> Row:
        row, spec, previous = await self._start(manifest)
        try:
            if manifest.kind == "Replication":
                await self._replication(row, spec, previous)
            elif manifest.kind == "ReplicationPolicy":
                await self._policy(row, spec, previous, manifest.annotations)
            elif manifest.kind == "Token":
                await self._token(row, spec, previous, manifest.annotations)
            else:
                await self._server(row, spec)
        except BackendError as exc:
            row.failed(exc)
        except ApiException as exc:  # e.g. a reviewer's identity may not read Secrets
            row.action = "error"
            row.problems.append(f"Forbidden: the cluster refused a read this needs (HTTP "
                                f"{exc.status} {exc.reason}); plan logs in to servers with "
                                f"the credentials the operator uses, so it needs get on "
                                f"Secrets and the operator's kinds")
        return row

    # -- kinds ------------------------------------------------------------------------

    async def _resolve_replication(self, row: Row, spec: Mapping[str, Any],
                                   previous: Mapping[str, Any]
                                   ) -> replication_handler.Resolved:
        """The handler's resolve; a Token these manifests create has no credential yet:
        then the job is planned with the server's own, and the row says so."""
        try:
            return await replication_handler.resolve(self.ctx, row.namespace, row.name, spec,
                                                     previous)
        except MissingReferenceError:
            pending = [side for side in ("source", "target")
                       if (spec[side].get("tokenRef") or {}).get("name") and
                       ("Token", row.namespace, spec[side]["tokenRef"]["name"])
                       in self.scope.files]
            if not pending:
                raise
        stripped = {**spec, **{side: {k: v for k, v in spec[side].items() if k != "tokenRef"}
                               for side in pending}}
        for side in pending:
            row.notes.append(f"spec.{side}.tokenRef: Token {spec[side]['tokenRef']['name']!r} "
                             f"is created by these manifests; the job switches to its "
                             f"credential once the operator has issued it (an update)")
        return await replication_handler.resolve(self.ctx, row.namespace, row.name, stripped,
                                                 previous)

    async def _replication(self, row: Row, spec: Mapping[str, Any],
                           previous: Mapping[str, Any]) -> None:
        resolved = await self._resolve_replication(row, spec, previous)
        request, driver = resolved.request, resolved.driver
        row.server, row.target = resolved.job_server, f"job {request.external_name}"
        driver.validate(request)
        seen = await driver.observe(request, max_age=PLAN_MAX_AGE)
        applied = previous.get("tokenGenerations")
        action = plan(key=request.key, external_name=request.external_name, seen=seen,
                      suspend=request.suspend, suspend_deletes=driver.suspend_deletes,
                      adopted=request.adopted, spec_changed=row.spec_changed,
                      created_before=job_was_seen(previous),
                      credentials_rotated=applied is not None
                      and applied != resolved.token_generations)
        row.decided(action, seen.differences)
        if seen.exists and seen.phase in (ERROR, FAILED) and seen.message:
            row.notes.append(f"the server reports the job {seen.phase}: {seen.message}")

    async def _policy(self, row: Row, spec: Mapping[str, Any], previous: Mapping[str, Any],
                      annotations: Mapping[str, str]) -> None:
        row.server = policy_handler.holder_of(spec)
        driver, request = await policy_handler.resolve(self.ctx, row.namespace, row.name,
                                                       spec, previous)
        preview = getattr(driver, "preview_policy", None)
        seen = await (preview(request, max_age=PLAN_MAX_AGE) if preview is not None
                      else driver.observe_policy(request, max_age=PLAN_MAX_AGE))
        action = plan(key=request.key, external_name=request.name, seen=seen, suspend=False,
                      suspend_deletes=False, adopted=request.adopted,
                      spec_changed=row.spec_changed,
                      created_before=bool(previous.get("externalName")), noun="policy",
                      owner_kind=policy_handler.KIND)
        row.decided(action, seen.differences)
        row.target = f"policy {seen.external_id or request.external_id or request.name}"
        row.notes.extend(seen.registry_actions)
        requested = annotations.get(RUN_REQUESTED)
        decision = run_decision(requested=requested, honoured=previous.get("lastRunRequest"),
                                enabled=request.enabled,
                                exists=seen.exists or action.verb is Verb.CREATE)
        if decision.verb is RunVerb.START:
            row.notes.append(f"starts an execution ({RUN_REQUESTED}={requested})")
            if row.action in ("nothing", "adopt"):
                row.action = "run"
        elif decision.verb is RunVerb.SKIP:
            row.notes.append(decision.message)

    async def _token(self, row: Row, spec: Mapping[str, Any], previous: Mapping[str, Any],
                     annotations: Mapping[str, str]) -> None:
        row.server = str(spec.get("server") or "")
        slot = str(previous.get("externalName") or
                   token_handler.base_name(row.namespace, row.name, spec))
        request = token_handler.token_request(row.namespace, row.name, spec, slot)
        driver = await token_handler.driver_for(self.ctx, row.namespace, row.server)
        seen = await driver.observe_token(request, max_age=PLAN_MAX_AGE)
        secret = token_handler.secret_name(row.name, spec)
        data = await self.cluster.secret(row.namespace, secret) or {}
        requested = annotations.get(ROTATE_REQUESTED)
        decided = plan_token(
            seen=seen, secret_has_value=bool(data.get("token")),
            rotate_due=rotation_due(every_days=(spec.get("rotation") or {}).get("everyDays"),
                                    last_rotation=previous.get("lastRotationTime"),
                                    created_at=previous.get("createdAt"),
                                    now=datetime.now(UTC)),
            rotate_requested=bool(requested) and requested != previous.get("lastRotateRequest"),
            revocation_pending=bool(previous.get("previousCredential")))
        verb, reason = decided.verb, decided.reason
        row.action = {TokenVerb.CREATE: "create", TokenVerb.UPDATE: "update",
                      TokenVerb.ROTATE: "rotate"}.get(verb, "nothing")
        row.reason, row.target = reason, f"credential {request.external_name}"
        if verb is TokenVerb.ROTATE:
            row.message = (f"issues the other credential into Secret {secret}; "
                           f"{request.external_name} is revoked once nothing uses it")
        elif verb is not TokenVerb.NOTHING:
            row.message = f"{verb.value}s credential {request.external_name}; Secret {secret}"
        if verb is TokenVerb.UPDATE:
            row.fields = list(seen.differences)
        if verb is TokenVerb.WAIT:
            row.notes.append("a rotation waits until the previous credential is revoked")

    async def _server(self, row: Row, spec: Mapping[str, Any]) -> None:
        entry = await self.ctx.servers.refresh(row.namespace, row.name, spec)
        try:
            info = await entry.backend.probe()
        except WriteRefused:
            row.message = "not probed (its credential check is a write)"
        else:
            row.message = f"{info.flavour} {info.version} answers".replace("  ", " ")

    # -- resources the files no longer contain --------------------------------------

    async def pruned(self, manifests: Sequence[Manifest]) -> list[Row]:
        """Rows for objects of the kinds and namespaces in the files that the files do not
        contain (children a ReplicationPolicy made are its own business)."""
        kinds = sorted({m.kind for m in manifests if m.kind in PLURALS}, key=ORDER.index)
        namespaces = sorted({m.namespace for m in manifests})
        declared = {(m.kind, m.namespace, m.name) for m in manifests}
        rows = []
        for namespace in namespaces:
            for kind in kinds:
                for obj in await self.cluster.list(namespace, PLURALS[kind]):
                    meta = obj.get("metadata") or {}
                    if (kind, namespace, meta.get("name")) in declared or \
                            CHILD_LABEL in (meta.get("labels") or {}) or \
                            meta.get("deletionTimestamp"):
                        continue
                    rows.append(self._prune(kind, namespace, obj))
        for row in rows:
            users = sorted(f"{m.kind} {m.name}" for m in manifests
                           if m.kind in PLURALS and m.namespace == row.namespace
                           and row.kind == "DatabaseServer"
                           and row.name in referenced_servers(m.spec))
            if users:
                row.problems.append(f"ReferenceNotFound: {', '.join(users)} still use "
                                    f"DatabaseServer {row.name!r}, which would be removed")
        return rows

    def _prune(self, kind: str, namespace: str, obj: Mapping[str, Any]) -> Row:
        name = str(obj["metadata"]["name"])
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        row = Row(kind, namespace, name, resource="pruned", reason="Deleted")
        orphan = spec.get("deletionPolicy") == "Orphan"
        if kind == "Replication":
            row.server = str(status.get("server") or spec.get("server") or "")
            job = status.get("externalName") or spec.get("externalName") or \
                "(never created)"
            what = f"job {job}"
        elif kind == "ReplicationPolicy":
            row.server = str(spec.get("server") or spec["source"].get("server") or "")
            policy = status.get("externalName") or policy_handler.policy_name(namespace, name)
            what = f"policy {policy}"
        elif kind == "Token":
            row.server = str(spec.get("server") or "")
            what = f"credential {status.get('externalName') or f'{namespace}.{name}'}"
            orphan = False  # a Token's credential always goes (its Secret with it)
        else:
            row.message = "resource removed; nothing on the server"
            return row
        row.action, row.target = ("nothing" if orphan else "delete"), what
        row.message = f"{what} left on the server (deletionPolicy Orphan)" if orphan \
            else f"deleted {what}"
        return row


def referenced_servers(spec: Mapping[str, Any]) -> set[str]:
    """DatabaseServers a spec names."""
    out = {str(spec.get("server") or "")}
    for side in ("source", "target"):
        out.add(str((spec.get(side) or {}).get("server") or ""))
    return out - {""}
