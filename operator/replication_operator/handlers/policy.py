"""ReplicationPolicy: keep one policy on a server in line with the resource, run it on
request, and report its executions.

As for Replications (handlers/replication.py), spec changes go through kopf's change
handlers and everything else through the Pacer's looks, which resync, and poll the
server's recent executions every FAST_POLL seconds while one of its executions runs on
a Harbor. Status is written by whoever reconciled, under the object's lock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from replication_operator import GROUP, VERSION, events, kube
from replication_operator.backends.policies import (
    FAILED,
    STOPPED,
    Execution,
    FailedTask,
    PolicyDriver,
    PolicyFilter,
    PolicyObservation,
    PolicyRequest,
    Remote,
)
from replication_operator.config import RUN_REQUESTED
from replication_operator.context import OperatorContext
from replication_operator.errors import BackendError, SpecError, TransientBackendError
from replication_operator.handlers import following
from replication_operator.handlers.cleanup import clean_up
from replication_operator.handlers.fanout import Fanout
from replication_operator.handlers.following import Current
from replication_operator.metrics import RECONCILE_SECONDS, RECONCILES
from replication_operator.pacing import Due
from replication_operator.reconcile.cadence import (
    FAST_POLL,
    fresh_enough,
    interval,
    policy_busy,
)
from replication_operator.reconcile.fanout import refuse_fanout_fields
from replication_operator.reconcile.policy import (
    RunDecision,
    RunVerb,
    declared_registry,
    finished_message,
    merge_history,
    needs_failed_tasks,
    newly_finished,
    next_run_time,
    policy_status,
    previous_history,
    run_decision,
)
from replication_operator.reconcile.replication import Verb, plan
from replication_operator.servers import ServerEntry
from replication_operator.status import now_iso

PLURAL = "replicationpolicies"
KIND = "ReplicationPolicy"
FAILED_TASKS_SHOWN = 3
POLLED_EXECUTIONS = {"harbor"}  # servers whose recent executions are a list of their own


def policy_name(namespace: str, name: str) -> str:
    """Deterministic, so a restart in the middle of a create never makes a duplicate."""
    return f"{namespace}.{name}"


def holder_of(spec: Mapping[str, Any]) -> str:
    """The server holding the policy: spec.server, by default the source (push), or the
    side that is a DatabaseServer when the other is a declared registry."""
    sides = [str(spec[side]["server"]) for side in ("source", "target")
             if spec[side].get("server")]
    if not sides:
        raise SpecError("spec.source.server or spec.target.server must name the Harbor "
                        "DatabaseServer holding the policy")
    holder = str(spec.get("server") or sides[0])
    if holder not in sides:
        raise SpecError("spec.server must name spec.source.server (push) or "
                        "spec.target.server (pull)")
    return holder


async def remote_of(ctx: OperatorContext, namespace: str, spec: Mapping[str, Any],
                    side: str) -> Remote:
    """The other side: a DatabaseServer, or a registry declared in the spec."""
    block = spec[side]
    if block.get("server"):
        return Remote((await ctx.servers.get(namespace, block["server"])).settings)
    ref = block["registry"].get("secretRef") or {}
    secret = await kube.read_secret(namespace, ref["name"]) if ref else None
    return declared_registry(namespace, f"spec.{side}.registry", block["registry"], secret)


def driver_of(entry: ServerEntry) -> PolicyDriver:
    policies = getattr(entry.backend, "policies", None)
    if policies is None:
        raise SpecError(f"spec.server: ReplicationPolicy on {entry.settings.type} servers is "
                        f"not available in this version (Harbor and Eden only)")
    driver: PolicyDriver = policies()
    return driver


async def resolve(ctx: OperatorContext, namespace: str, name: str, spec: Mapping[str, Any],
                  previous: Mapping[str, Any]) -> tuple[PolicyDriver, PolicyRequest]:
    holder = holder_of(spec)
    push = holder == spec["source"].get("server")
    entry = await ctx.servers.get(namespace, holder)
    driver = driver_of(entry)
    refuse_fanout_fields(spec, entry.settings.type)
    target, trigger = spec["target"], spec.get("trigger") or {}
    request = PolicyRequest(
        key=f"{namespace}/{name}", name=policy_name(namespace, name),
        external_id=str(spec.get("externalName") or previous.get("externalName") or ""),
        adopted=bool(spec.get("externalName")),
        remote=await remote_of(ctx, namespace, spec, "target" if push else "source"),
        push=push,
        patterns=tuple(spec["source"]["databases"]),
        dest_namespace=str(target.get("namespace") or ""),
        dest_namespace_replace_count=int(target.get("namespaceReplaceCount", -1)),
        trigger=str(trigger.get("type") or "manual"),
        schedule=str(trigger.get("schedule") or ""),
        filters=tuple(PolicyFilter(str(f["type"]), str(f["value"]),
                                   str(f.get("decoration") or ""))
                      for f in spec.get("filters") or []),
        replicate_deletion=bool(spec.get("replicateDeletion", False)),
        override=bool(spec.get("override", True)), enabled=bool(spec.get("enabled", True)),
        speed=int(spec.get("speed", -1)), copy_by_chunk=bool(spec.get("copyByChunk", False)),
        options=dict(spec.get("options") or {}))
    driver.validate(request)
    return driver, request


async def honour_run_request(body: kopf.Body, driver: PolicyDriver, request: PolicyRequest,
                             seen: PolicyObservation, decision: RunDecision,
                             requested: str | None, follow: list[int]
                             ) -> tuple[PolicyObservation, list[int]]:
    """Start the requested execution (or say why not); the policy as seen afterwards,
    and the execution started."""
    if decision.verb is RunVerb.SKIP:
        events.warning(body, "RunSkipped", decision.message)
        return seen, []
    execution_id = await driver.run_policy(seen.external_id)
    events.normal(body, "RunStarted",
                  f"started execution {execution_id} ({RUN_REQUESTED}={requested})")
    after = await driver.observe_policy(
        dataclasses.replace(request, external_id=seen.external_id), max_age=0, follow=follow)
    report_registry_actions(body, after)
    return after, [execution_id]


def report_registry_actions(body: kopf.Body, seen: PolicyObservation) -> None:
    for message in seen.registry_actions:
        events.normal(body, "RegistryUpdated", message)


def report_finished(body: kopf.Body, finished: list[Execution]) -> None:
    """An Event per execution that finished since the last look."""
    for execution in finished:
        reason = {FAILED: "ExecutionFailed", STOPPED: "ExecutionStopped"}.get(
            execution.outcome, "ExecutionSucceeded")
        emit = events.warning if execution.outcome == FAILED else events.normal
        emit(body, reason, finished_message(execution))


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext, fanout: Fanout) -> None:
    """`fanout` takes the policies on CouchDB, Cloudant and ReductStore (expanded into
    Replications); the others are kept by their server's PolicyDriver here."""
    only = ctx.config.selection()  # this shard's resources (--selector)
    config = ctx.config

    async def reconcile(body: kopf.Body, *, max_age: float,
                        executions_max_age: float | None = None) -> BackendError | None:
        """Converge and write the status fields that changed (ApiException if that write
        fails: the status memory keeps it, so the next reconcile sends it again)."""
        ns, name = body.metadata.namespace or "", body.metadata.name or ""
        uid = body.metadata.uid or f"{ns}/{name}"
        started = time.monotonic()
        async with ctx.lock(uid):
            if ctx.deleting(uid):  # the deletion handler has it now
                return None
            previous = ctx.statuses.current(uid, body.get("status"))
            try:
                status, error = await converge(body, previous, max_age=max_age,
                                               executions_max_age=executions_max_age)
            finally:
                ctx.pace.done(uid)
            changed = ctx.statuses.write(uid, body.get("status"), status)
            if changed:
                await kube.patch_status(ns, PLURAL, name, changed)
        if error is not None and (previous.get("lastError") or {}).get("message") \
                != error.message:
            events.warning(body, reason=error.code, message=error.message)
        RECONCILES.labels(KIND, "error" if error else "ok").inc()
        RECONCILE_SECONDS.labels(KIND).observe(time.monotonic() - started)
        ctx.tally.set(KIND, f"{ns}/{name}", "Error" if error else "Ready", error is None)
        return error

    async def converge(body: kopf.Body, previous: Mapping[str, Any], *, max_age: float,
                       executions_max_age: float | None
                       ) -> tuple[dict[str, Any], BackendError | None]:
        """Bring the policy in line with the spec, honour a run request, read its
        executions; the new status and the error, if any."""
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        generation = body.meta.get("generation")
        known = previous_history(previous)
        follow = [e.id for e in known if not e.settled]
        seen: PolicyObservation | None = None
        error: BackendError | None = None
        next_run: str | None = None
        failed_tasks: list[FailedTask] | None = None
        fields: dict[str, Any] = {}
        try:
            driver, request = await resolve(ctx, ns, name, spec, previous)
            seen = await driver.observe_policy(request, max_age=max_age, follow=follow,
                                               executions_max_age=executions_max_age)
            report_registry_actions(body, seen)
            action = plan(key=request.key, external_name=request.name, seen=seen,
                          suspend=False, suspend_deletes=False, adopted=request.adopted,
                          spec_changed=previous.get("observedGeneration") != generation,
                          created_before=bool(previous.get("externalName")),
                          noun="policy", owner_kind=KIND)
            if action.verb is Verb.CREATE:
                request = dataclasses.replace(
                    request, external_id=await driver.create_policy(request))
            elif action.verb is Verb.UPDATE:
                await driver.update_policy(request, seen)
            if action.verb is not Verb.NOTHING:
                emit = events.warning if action.reason == "DriftCorrected" else events.normal
                emit(body, action.reason, action.message)
                seen = await driver.observe_policy(request, max_age=0, follow=follow)
                report_registry_actions(body, seen)
            elif action.reason:  # adopted as it is: nothing to write
                events.normal(body, action.reason, action.message)
            requested = body.metadata.annotations.get(RUN_REQUESTED)
            decision = run_decision(requested=requested,
                                    honoured=previous.get("lastRunRequest"),
                                    enabled=request.enabled, exists=seen.exists)
            begun: list[int] = []
            if decision.verb is not RunVerb.NOTHING:
                seen, begun = await honour_run_request(body, driver, request, seen,
                                                       decision, requested, follow)
                fields["lastRunRequest"] = requested
            report_finished(body, newly_finished(known, seen.executions, begun))
            history = merge_history(known, seen.executions, seen.gone)
            if needs_failed_tasks(history, previous):
                failed_tasks = await driver.failed_tasks(history[0].id, FAILED_TASKS_SHOWN)
            next_run = next_run_time(trigger=spec.get("trigger") or {},
                                     enabled=request.enabled, now=datetime.now(UTC))
        except BackendError as exc:
            error = exc
            history = merge_history(known, [], ())
        status = policy_status(previous=previous, generation=generation, seen=seen,
                               history=history, history_limit=int(spec.get("historyLimit", 10)),
                               error=error, next_run=next_run, failed_tasks=failed_tasks,
                               fields=fields, now=now_iso())
        return status, error

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, **only)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, **only)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, **only)  # spec and run-requested
    async def changed(body: kopf.Body, retry: int, reason: str, **kwargs: Any) -> None:
        fanout.bind(kwargs)
        max_age = config.resync_interval if reason == "resume" else 1.0
        try:
            if await fanout.handles(body):
                error = await fanout.reconcile(body.metadata.namespace or "",
                                               body.metadata.name or "", max_age=max_age)
                ctx.pace.done(body.metadata.uid or "")
            else:
                error = await reconcile(body, max_age=max_age)
        except ApiException as exc:
            raise kopf.TemporaryError(f"writing the status failed: {exc.reason}",
                                      delay=config.backoff(retry)) from None
        if isinstance(error, TransientBackendError):
            delay = max(config.backoff(retry), error.retry_after or 0)
            raise kopf.TemporaryError(error.message, delay=delay)

    def run_waiting(body: kopf.Body, type: str | None, **_: Any) -> bool:
        """A run-requested value this process has not honoured yet."""
        requested = body.metadata.annotations.get(RUN_REQUESTED)
        return type != "DELETED" and bool(requested) and requested != ctx.statuses.current(
            body.metadata.uid or "", body.get("status")).get("lastRunRequest")

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, **only, when=run_waiting)
    async def run_requested(body: kopf.Body, **_: Any) -> None:
        """A new run-requested value runs now, not at the next resync: kopf's change
        detection leaves out every annotation under the operator's prefix (its progress
        storage, prefixed `replication.dbops.dev`, strips `replication.dbops.dev/*` from
        the diff), so no update handler sees it. The Pacer wakes its look instead."""
        ctx.pacer.wake(body.metadata.uid or "")

    def start(uid: str, current: Current) -> tuple[Due, following.BodyLook]:
        """A policy's look: when due (the resync interval after the last reconcile,
        FAST_POLL while an execution runs on a Harbor: only the recent executions are
        read again then) or woken (a run requested)."""
        begun = time.monotonic()
        full_look = begun  # when it last read everything (not just executions)
        closing: dict[int, float] = {}  # see policy_busy

        def polled() -> bool:
            """An execution runs on a server whose executions can be polled alone."""
            body = current()
            if body is None:
                return False
            status = ctx.statuses.current(uid, body.get("status"))
            if not policy_busy(status, closing, time.monotonic()):
                return False
            try:
                entry = ctx.servers.cached(body.metadata.namespace or "",
                                           holder_of(body.spec))
            except SpecError:
                return False
            return entry is not None and entry.settings.type in POLLED_EXECUTIONS

        def due() -> float:
            return (ctx.pace.last(uid) or begun) + interval(busy=polled(),
                                                            resync=config.resync_interval)

        async def look(body: kopf.Body, woken: bool) -> None:
            nonlocal full_look
            ns, name = body.metadata.namespace or "", body.metadata.name or ""
            now, last = time.monotonic(), ctx.pace.last(uid)
            if await fanout.handles(body):
                await fanout.reconcile(ns, name, max_age=fresh_enough(
                    now, last, config.resync_interval))
                ctx.pace.done(uid)
            elif polled() and now - full_look < config.resync_interval:
                await reconcile(body, max_age=config.resync_interval,
                                executions_max_age=fresh_enough(now, last, FAST_POLL))
            else:
                full_look = now
                await reconcile(body, max_age=fresh_enough(now, last,
                                                           config.resync_interval))

        return due, look

    following.follow(registry, ctx, PLURAL, start, bind=fanout.bind)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, **only)
    async def deleted(body: kopf.Body, patch: kopf.Patch, retry: int, runtime: Any,
                      **kwargs: Any) -> None:
        fanout.bind(kwargs)
        if await fanout.handles(body):
            await fanout.delete(body, patch, retry=retry, runtime=runtime)
            return
        uid = body.metadata.uid or ""
        # the Pacer lets go of it, but a look under way finishes: wait for it, or its
        # create could land after the policy is removed here
        async with ctx.lock(uid):
            await delete_policy(body, patch, retry=retry, runtime=runtime, uid=uid)

    async def delete_policy(body: kopf.Body, patch: kopf.Patch, *, retry: int,
                            runtime: Any, uid: str) -> None:
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        ext = str((body.get("status") or {}).get("externalName") or
                  spec.get("externalName") or "")
        what = f"policy {ext or policy_name(ns, name)}"
        ctx.tally.drop(KIND, f"{ns}/{name}")
        ctx.begin_deletion(uid)

        async def remove() -> str:
            entry = await ctx.servers.get(ns, holder_of(spec))
            removed = await driver_of(entry).delete_policy(policy_name(ns, name), ext)
            return f" and registries {', '.join(removed)}" if removed else ""

        await clean_up(body, patch, retry=retry, runtime=runtime, config=config,
                       what=what, remove=remove)
        ctx.release(uid)
