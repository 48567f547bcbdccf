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
    policy,
    replication,
    settings,
    token,
)


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    settings.register(registry, ctx)
    databaseserver.register(registry, ctx)
    replication.register(registry, ctx)
    policy.register(registry, ctx, fanout.register(registry, ctx))
    token.register(registry, ctx)
