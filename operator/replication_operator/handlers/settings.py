"""kopf settings: own finalizer and annotation prefix, watch timeouts, quiet events;
and the process's housekeeping (metrics endpoint, memory trimming)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from replication_operator import GROUP, incluster, memory
from replication_operator.context import OperatorContext
from replication_operator.metrics import serve

# A watch stream never silently hangs longer than this. An integer: the API server
# refuses timeoutSeconds=300.0.
WATCH_SERVER_TIMEOUT = 300


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
        settings.persistence.finalizer = ctx.config.finalizer
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration")
        settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
        settings.watching.client_timeout = WATCH_SERVER_TIMEOUT + 30
        settings.watching.connect_timeout = 30
        settings.posting.level = logging.WARNING  # our own Events say what happened
        settings.batching.error_delays = (1, 2, 5, 10, 20, 30, 60, 120, 300)
        settings.networking.request_timeout = 60
        # A resource deleted while its resync timer is mid-reconcile: kopf removes the
        # finalizer only once the timer has exited, and checks again after this many
        # seconds (default 60, so such a deletion took a minute and ran twice).
        settings.background.cancellation_polling = 1.0
        if ctx.config.metrics_port:
            serve(ctx.config.metrics_port)
            logger.info("metrics on :%d/metrics", ctx.config.metrics_port)

    trimming: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def start_trimming(**_: Any) -> None:
        trimming.append(asyncio.get_running_loop().create_task(memory.keep_trimming()))

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod, the service account at KUBERNETES_SERVICE_HOST (no DNS needed);
        else the kubeconfig (as `kubectl` would)."""
        return (incluster.connection_info(trust_env=settings.networking.trust_env)
                or kopf.login_with_kubeconfig(settings=settings, **kwargs))

    @kopf.on.cleanup(registry=registry)
    async def close_connections(**_: Any) -> None:
        for task in trimming:
            task.cancel()
        await ctx.servers.aclose()
