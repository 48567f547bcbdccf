"""kopf handlers, thin: read the resource, call reconcile, write status.

`register` wires them into a registry with the operator's settings (timer intervals
come from the command line, so handlers are registered at start, not at import).
"""

from __future__ import annotations

import kopf

from replication_operator.context import OperatorContext
from replication_operator.handlers import (
    databaseserver,
    fanout,
    feeds,
    policy,
    replication,
    settings,
    token,
)


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.cleanup(registry=registry)
    async def stop_looks(**_: object) -> None:
        """First of the cleanups: the looks under way finish while the connections
        they use are still open."""
        await ctx.pacer.stop()

    settings.register(registry, ctx)
    databaseserver.register(registry, ctx)
    job_feeds = feeds.JobFeeds(ctx)

    @kopf.on.cleanup(registry=registry)
    async def stop_feeds(**_: object) -> None:
        await job_feeds.aclose()

    replication.register(registry, ctx, job_feeds)
    policy.register(registry, ctx, fanout.register(registry, ctx))
    token.register(registry, ctx)
