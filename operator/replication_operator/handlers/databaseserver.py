"""DatabaseServer: probe the server, keep its settings and credentials current."""

from __future__ import annotations

from typing import Any

import kopf

from replication_operator import GROUP, VERSION, events, kube
from replication_operator.backends.base import ServerInfo
from replication_operator.context import OperatorContext
from replication_operator.errors import BackendError
from replication_operator.http import redact_url
from replication_operator.reconcile.server import server_status
from replication_operator.status import changed_fields, condition, now_iso

PLURAL = "databaseservers"
KIND = "DatabaseServer"


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    only = ctx.config.selection()  # this shard's resources (--selector)
    async def probe(body: kopf.Body, logger: kopf.Logger) -> None:
        ns, name = body.metadata.namespace or "", body.metadata.name or ""
        info: ServerInfo | None = None
        error: BackendError | None = None
        try:
            entry = await ctx.servers.refresh(ns, name, body.spec)
            info = await entry.backend.probe()
        except BackendError as exc:
            error = exc
        previous = body.get("status") or {}
        desired = server_status(previous=previous, generation=body.meta.get("generation"),
                                url=redact_url(str(body.spec.get("url", ""))), info=info,
                                error=error, now=now_iso())
        patch = changed_fields(previous, desired)
        was_ready = (condition(previous, "Ready") or {}).get("status")
        now_ready = "True" if error is None else "False"
        if was_ready != now_ready:
            if error is None and info is not None:
                events.normal(body, reason="Connected", message=f"{info.flavour} {info.version}")
            elif error is not None:
                events.warning(body, reason=error.code, message=error.message)
        if patch:
            patch["lastProbeTime"] = now_iso()
            await kube.patch_status(ns, PLURAL, name, patch)
        ctx.tally.set(KIND, f"{ns}/{name}", "Ready" if error is None else "NotReady",
                      error is None)
        if error is not None:
            logger.warning("probe of %s failed: %s", name, error.message)

    # No on.create probe: the daemon below starts with one (it would be done twice).
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry, **only)
    async def changed(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        await probe(body, logger)

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, **only, cancellation_timeout=5.0)
    async def keep_probing(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger,
                           **_: Any) -> None:
        """Probe on start and every probeIntervalSeconds; re-reads the auth Secret."""
        while not stopped:
            await probe(body, logger)
            interval = float(body.spec.get("probeIntervalSeconds")
                             or ctx.config.probe_interval)
            await stopped.wait(interval)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, **only, optional=True)
    async def deleted(body: kopf.Body, **_: Any) -> None:
        # The entry stays cached: Replications deleted after their server still need
        # its URL and credentials to clean up.
        ctx.tally.drop(KIND, f"{body.metadata.namespace}/{body.metadata.name}")
