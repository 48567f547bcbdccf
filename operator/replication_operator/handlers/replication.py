"""Replication: keep one job on a server in line with the resource.

A spec change (and the operator's start) reconciles through kopf's change handlers;
everything after that through the Pacer's looks (`start`): at the resync interval,
sooner while ReductStore still sends queued records, and at once when the server's
change feed says the job changed (handlers/feeds.py). Both write `.status` themselves,
under the object's lock, and only the fields that changed: a handler's patch applied
after a later look's write would put an older status back (kopf applies handler
patches on return).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from replication_operator import GROUP, VERSION, events, kube
from replication_operator.backends.base import (
    ERROR,
    FAILED,
    Endpoint,
    Observation,
    ReplicationDriver,
    ReplicationRequest,
)
from replication_operator.config import CREDENTIAL_GENERATION
from replication_operator.context import OperatorContext
from replication_operator.credentials import Credentials
from replication_operator.errors import BackendError, MissingReferenceError, TransientBackendError
from replication_operator.handlers import following
from replication_operator.handlers.cleanup import clean_up
from replication_operator.handlers.feeds import JobFeeds
from replication_operator.handlers.following import Current
from replication_operator.metrics import PROGRESS, RECONCILE_SECONDS, RECONCILES
from replication_operator.pacing import Due
from replication_operator.reconcile.cadence import fresh_enough, interval, replication_busy
from replication_operator.reconcile.replication import (
    Verb,
    compute_status,
    job_was_seen,
    plan,
)
from replication_operator.servers import ServerEntry, with_credentials
from replication_operator.status import now_iso

PLURAL = "replications"
KIND = "Replication"
PUSH_TYPES = {"reductstore"}  # job lives on the source server; others pull (target)


def external_name(namespace: str, name: str, spec: Mapping[str, Any],
                  status: Mapping[str, Any], driver: ReplicationDriver) -> str:
    """The job's name on the server: spec.externalName, else the name it was made with
    (status), else the driver's deterministic default."""
    return str(spec.get("externalName") or status.get("externalName")
               or driver.default_name(namespace, name))


def job_names(namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any],
              driver: ReplicationDriver) -> set[str]:
    """Every name a Replication's job may have on its server: the one in use, one being
    retired, the default and the name a replacement takes (ReductStore swaps)."""
    default = driver.default_name(namespace, name)
    names = {external_name(namespace, name, spec, status, driver), default,
             f"{default}-b"}
    names.update(str(v) for v in (status.get("externalName"), status.get("retiring")) if v)
    return names


async def token_credentials(namespace: str, ref: Mapping[str, Any]
                            ) -> tuple[Credentials, str, str, str]:
    """Credentials from a Token's Secret, the auth type that uses them, the
    credential's generation (it changes on every rotation; it comes from the Secret
    itself, so it always belongs to the value read with it) and the Token's spec
    generation the Token has applied (its status.observedGeneration: permissions)."""
    token = await kube.get_custom(namespace, "tokens", ref["name"])
    if token is None:
        raise MissingReferenceError(f"Token {ref['name']!r} (tokenRef) not found")
    status = token.get("status") or {}
    secret_name = (status.get("secretName") or token["spec"].get("secretName") or ref["name"])
    found = await kube.read_secret_annotated(namespace, secret_name)
    data, annotations = found or ({}, {})
    if not data:
        raise MissingReferenceError(f"Token {ref['name']!r} has no credential yet (Secret "
                                    f"{secret_name!r} missing)")
    generation = str(annotations.get(CREDENTIAL_GENERATION) or status.get("generation") or "")
    applied = str(status.get("observedGeneration") or "")
    if data.get("password"):
        creds = Credentials(username=data.get("username", ""), password=data["password"])
        return creds, "basic", generation, applied
    return Credentials(username=data.get("username", ""), token=data.get("token", "")), \
        "bearer", generation, applied


class Resolved:
    """A request plus the server entry whose driver runs the job."""

    def __init__(self, request: ReplicationRequest, job_server: str, entry: ServerEntry,
                 token_generations: dict[str, str], token_specs: dict[str, str]) -> None:
        self.request = request
        self.job_server = job_server
        self.entry = entry
        self.token_generations = token_generations  # Token → credential generation
        self.token_specs = token_specs  # Token → the spec generation it has applied

    @property
    def driver(self) -> ReplicationDriver:
        return self.entry.backend.replications()


async def resolve(ctx: OperatorContext, namespace: str, name: str, spec: Mapping[str, Any],
                  status: Mapping[str, Any], *, for_deletion: bool = False) -> Resolved:
    """`for_deletion`: a Token gone already is no obstacle (the job is removed with the
    job server's own credentials, never a Token's), so a Replication deleted together
    with its Token does not wait forever for it."""
    generations: dict[str, str] = {}
    specs: dict[str, str] = {}

    async def endpoint(side: str) -> Endpoint:
        ref = spec[side]
        entry = await ctx.servers.get(namespace, ref["server"])
        settings = entry.settings
        if ref.get("tokenRef") and for_deletion:
            return Endpoint(settings, str(ref["database"]))
        if ref.get("tokenRef"):
            creds, auth_type, generation, applied = await token_credentials(
                namespace, ref["tokenRef"])
            settings = with_credentials(
                settings, creds, auth_type,
                f"the credential of Token {ref['tokenRef']['name']!r} (spec.{side}.tokenRef)")
            generations[ref["tokenRef"]["name"]] = generation
            specs[ref["tokenRef"]["name"]] = applied
        return Endpoint(settings, str(ref["database"]))

    source, target = await endpoint("source"), await endpoint("target")
    job_server = spec.get("server") or (
        spec["source"]["server"] if source.server.type in PUSH_TYPES
        else spec["target"]["server"])
    entry = await ctx.servers.get(namespace, job_server)
    request = ReplicationRequest(
        key=f"{namespace}/{name}",
        external_name=external_name(namespace, name, spec, status,
                                    entry.backend.replications()),
        source=source, target=target,
        continuous=bool(spec.get("continuous", True)),
        create_target=bool(spec["target"].get("create", False)),
        suspend=bool(spec.get("suspend", False)),
        filter=dict(spec.get("filter") or {}),
        options=dict(spec.get("options") or {}),
        adopted=bool(spec.get("externalName")),
        retiring=str(status.get("retiring") or ""),
        run_id=str(spec.get("runId") or ""),
    )
    return Resolved(request, job_server, entry, generations, specs)


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext, feeds: JobFeeds) -> None:
    only = ctx.config.selection()  # this shard's resources (--selector)
    config = ctx.config

    async def reconcile(body: kopf.Body, *, max_age: float) -> BackendError | None:
        """Converge and write the status fields that changed (ApiException if that
        write fails: the status memory keeps it, so the next reconcile sends it again)."""
        ns, name = body.metadata.namespace or "", body.metadata.name or ""
        uid = body.metadata.uid or f"{ns}/{name}"
        started = time.monotonic()
        async with ctx.lock(uid):
            if ctx.deleting(uid):  # the deletion handler has it now
                return None
            previous = ctx.statuses.current(uid, body.get("status"))
            try:
                status, error = await converge(body, previous, uid=uid, max_age=max_age)
            finally:
                ctx.pace.done(uid)
            changed = ctx.statuses.write(uid, body.get("status"), status)
            if changed:
                await kube.patch_status(ns, PLURAL, name, changed)
        if error is not None and (not previous.get("lastError") or
                                  previous["lastError"].get("message") != error.message):
            events.warning(body, reason=error.code, message=error.message)
        record(ns, name, status, error, time.monotonic() - started)
        return error

    async def converge(body: kopf.Body, previous: Mapping[str, Any], *, uid: str,
                       max_age: float) -> tuple[dict[str, Any], BackendError | None]:
        """Bring the job in line with the spec; the new status and the error, if any."""
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        generation = body.meta.get("generation")
        seen: Observation | None = None
        error: BackendError | None = None
        job_server = str(previous.get("server") or "")
        ext = str(spec.get("externalName") or previous.get("externalName") or "")
        retiring = str(previous.get("retiring") or "")
        token_generations: dict[str, str] | None = None
        token_specs: dict[str, str] | None = None
        try:
            resolved = await resolve(ctx, ns, name, spec, previous)
            job_server, driver, request = (resolved.job_server, resolved.driver,
                                           resolved.request)
            ext = request.external_name
            feeds.track(uid, ns, job_server, resolved.entry.backend,
                        (ext, request.retiring))
            driver.validate(request)
            seen = await driver.observe(request, max_age=max_age)
            token_generations, token_specs = resolved.token_generations, resolved.token_specs
            applied = previous.get("jobTokenGenerations") or previous.get("tokenGenerations")
            specs_then = previous.get("tokenSpecGenerations")
            action = plan(key=request.key, external_name=ext, seen=seen,
                          suspend=request.suspend, suspend_deletes=driver.suspend_deletes,
                          adopted=request.adopted,
                          spec_changed=previous.get("observedGeneration") != generation,
                          created_before=job_was_seen(previous),
                          credentials_rotated=applied is not None
                          and applied != token_generations,
                          failed_since_token_changed=seen.phase in (ERROR, FAILED)
                          and specs_then is not None and specs_then != token_specs)
            replaced_by: str | None = None
            if action.verb is Verb.CREATE:
                await driver.create(request)
            elif action.verb is Verb.UPDATE:
                rotated = action.reason == "CredentialsRotated"
                replaced_by = await driver.update(
                    dataclasses.replace(request, rotated=rotated), seen)
            elif action.verb is Verb.DELETE:
                await driver.delete(ext, seen)
            if replaced_by:  # the job moved to a new one; the old one drains, then goes
                request = dataclasses.replace(request, external_name=replaced_by,
                                              retiring=request.external_name)
                ext = replaced_by
            if action.verb is not Verb.NOTHING:
                emit = events.warning if action.reason == "DriftCorrected" else events.normal
                emit(body, action.reason, action.message + (
                    f" (as {replaced_by}; the old one is removed once it has sent what it "
                    f"holds)" if replaced_by else ""))
                feeds.track(uid, ns, job_server, resolved.entry.backend,
                            (ext, request.retiring))
                # the server after the write: listed again, unless the backend has put
                # its write into the stored state (a list per write would make N new
                # Replications read N lists of up to N jobs)
                seen = await driver.observe(request, max_age=max_age if
                                            driver.writes_through else 0)
            elif action.reason:  # adopted as it is: nothing to write
                events.normal(body, action.reason, action.message)
            retiring = request.retiring
            if retiring and seen.retired:
                events.normal(body, "Replaced", f"removed {retiring} after it had sent what "
                                                f"it held; {ext} replaces it")
                retiring = ""
        except BackendError as exc:
            error = exc
            if exc.code in ("Unauthorized", "CredentialsRefused"):
                for side in ("source", "target"):
                    ctx.servers.invalidate(ns, spec[side]["server"])
        status = compute_status(previous=previous, generation=generation, seen=seen,
                                error=error, suspended=bool(spec.get("suspend", False)),
                                external_name=ext, server=job_server, now=now_iso())
        if error is None and token_generations is not None:
            status["retiring"] = retiring or None
            status["jobTokenGenerations"] = token_generations or None
            # the credentials in use are the new ones only once nothing old still sends:
            # a Token revokes its previous credential when every dependent says so
            if not retiring:
                status["tokenGenerations"] = token_generations
        if error is None and token_specs is not None:  # kept as it was on an error: a
            # change not acted on yet must still show as one at the next reconcile
            status["tokenSpecGenerations"] = token_specs or None
        return status, error

    def record(ns: str, name: str, status: Mapping[str, Any], error: BackendError | None,
               seconds: float) -> None:
        RECONCILES.labels(KIND, "error" if error else "ok").inc()
        RECONCILE_SECONDS.labels(KIND).observe(seconds)
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", []))
        ctx.tally.set(KIND, f"{ns}/{name}", str(status.get("phase")), ready)
        PROGRESS.set(ns, name, status.get("progress"))

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, **only)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, **only)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry, **only)
    async def changed(body: kopf.Body, retry: int, reason: str, **_: Any) -> None:
        # a spec change wants the server as it is now; a restart may share the lists
        # its many resumes read (they are as fresh as any resync's)
        max_age = config.resync_interval if reason == "resume" else 1.0
        try:
            error = await reconcile(body, max_age=max_age)
        except ApiException as exc:
            raise kopf.TemporaryError(f"writing the status failed: {exc.reason}",
                                      delay=config.backoff(retry)) from None
        if isinstance(error, TransientBackendError):
            delay = max(config.backoff(retry), error.retry_after or 0)
            raise kopf.TemporaryError(error.message, delay=delay)
        # permanent errors: status says Stalled; the Pacer looks again at the resync
        # pace, which heals references created later without a hot retry loop

    def start(uid: str, current: Current) -> tuple[Due, following.BodyLook]:
        """An object's look: when due (resync interval after the last reconcile,
        FAST_POLL while records are still queued) or woken by a change feed."""
        begun = time.monotonic()

        def every() -> float:
            body = current()
            status = ctx.statuses.current(uid, body.get("status") if body else None)
            return interval(busy=replication_busy(status), resync=config.resync_interval)

        def due() -> float:
            return (ctx.pace.last(uid) or begun) + every()

        async def look(body: kopf.Body, woken: bool) -> None:
            # woken: the feed has put the change into the server's stored state already
            max_age = config.resync_interval if woken else \
                fresh_enough(time.monotonic(), ctx.pace.last(uid), every())
            await reconcile(body, max_age=max_age)

        return due, look

    following.follow(registry, ctx, PLURAL, start)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, **only)
    async def deleted(body: kopf.Body, patch: kopf.Patch, retry: int, runtime: Any,
                      **_: Any) -> None:
        uid = body.metadata.uid or ""
        # the Pacer lets go of it, but a look under way finishes: wait for it, or its
        # create could land after the job is removed here
        async with ctx.lock(uid):
            await delete_job(body, patch, retry=retry, runtime=runtime, uid=uid)

    async def delete_job(body: kopf.Body, patch: kopf.Patch, *, retry: int, runtime: Any,
                         uid: str) -> None:
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        status = dict(body.get("status") or {})
        ctx.tally.drop(KIND, f"{ns}/{name}")
        PROGRESS.drop(ns, name)
        ctx.begin_deletion(uid)
        feeds.untrack(uid)

        async def remove() -> str:
            resolved = await resolve(ctx, ns, name, spec, status, for_deletion=True)
            jobs = [resolved.request.external_name, resolved.request.retiring]
            replacement = getattr(resolved.driver, "replacement_name", None)
            if replacement is not None and not resolved.request.adopted:
                # a swap (ReductStore) cut short between creating the replacement and
                # writing the status that names it: the replacement is ours all the same
                jobs.append(replacement(resolved.request))
            for job in dict.fromkeys(jobs):
                if job:
                    await resolved.driver.delete(job, None)
            return ""

        what = str(spec.get("externalName") or status.get("externalName") or f"{ns}/{name}")
        await clean_up(body, patch, retry=retry, runtime=runtime, config=config,
                       what=f"job {what}", remove=remove)
        ctx.release(uid)
