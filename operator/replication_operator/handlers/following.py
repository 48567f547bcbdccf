"""The objects of one kind the Pacer follows, and the part of each body it keeps.

A kopf index handler sees every change of every object: it keeps a trimmed copy of the
newest body (what a look reads: kopf's own body also holds `managedFields` and the
last-handled configuration, several KiB per object) and tells the Pacer when an object
appears, changes (its next look may be sooner) or its deletion begins.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from replication_operator import GROUP, VERSION
from replication_operator.context import OperatorContext
from replication_operator.handlers.cleanup import timer_may_act
from replication_operator.memory import shared_strings
from replication_operator.pacing import Due, Look

log = logging.getLogger(__name__)

KEPT_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion",
                 "deletionTimestamp", "finalizers", "labels", "annotations", "ownerReferences")
DIFFBASE = f"{GROUP}/last-handled-configuration"  # kopf's copy of the spec (settings.py)

Current = Callable[[], kopf.Body | None]
# A kind's look at one object, given its newest kept body and whether it was woken.
BodyLook = Callable[[kopf.Body, bool], Awaitable[None]]
# (uid, the newest kept body, or None once unfollowed) → the object's due and look
Start = Callable[[str, Current], tuple[Due, BodyLook]]


def kept(body: Mapping[str, Any]) -> kopf.Body:
    """What a look reads of a body: identity, generation, finalizers, labels and
    annotations (without kopf's diff base), spec and status; a fresh copy whose keys
    and short words are shared with every other kept body (memory.shared_strings)."""
    meta = body.get("metadata") or {}
    kept_meta = {k: meta[k] for k in KEPT_METADATA if k in meta}
    if DIFFBASE in (meta.get("annotations") or {}):
        kept_meta["annotations"] = {k: v for k, v in meta["annotations"].items()
                                    if k != DIFFBASE}
    raw: Any = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                "metadata": kept_meta, "spec": body.get("spec") or {},
                "status": body.get("status") or {}}
    return kopf.Body(shared_strings(raw))


def follow(registry: kopf.OperatorRegistry, ctx: OperatorContext, plural: str,
           start: Start, *, bind: Callable[[Mapping[str, Any]], None] | None = None) -> None:
    """Have the Pacer follow every object of `plural` this shard handles; `start` makes
    an object's callbacks when it first appears; `bind` gets kopf's handler kwargs.

    The kept bodies live in a kopf index (by uid): kopf drops an object's entry when it
    is deleted or leaves this shard's selector, and a look that finds no body lets the
    object go. An index handler, unlike an event handler, is not logged per event."""
    index_id = f"followed_{plural}"
    found: list[kopf.Index[str, kopf.Body]] = []  # kopf's index, from the first call

    def current(uid: str) -> Current:
        def newest() -> kopf.Body | None:
            store = found[0].get(uid) if found else None
            return next(iter(store), None) if store else None
        return newest

    @kopf.index(GROUP, VERSION, plural, id=index_id, registry=registry,
                **ctx.config.selection())
    async def followed(body: kopf.Body, **kwargs: Any) -> dict[str, kopf.Body]:
        if bind is not None:
            bind(kwargs)
        if not found:
            found.append(kwargs[index_id])
        uid = body.metadata.uid or ""
        if body.metadata.get("deletionTimestamp"):
            ctx.pacer.unfollow(uid)  # the deletion handler's from now on
            return {}
        if uid in ctx.pacer:
            ctx.pacer.reschedule(uid)  # its status may have changed: due sooner?
        else:
            due, look = start_following(uid)
            ctx.pacer.follow(uid, due=due, look=look)
        return {uid: kept(body)}

    def start_following(uid: str) -> tuple[Due, Look]:
        newest = current(uid)
        due, look = start(uid, newest)

        async def look_while_there(woken: bool) -> None:
            body = newest()
            if body is None:  # deleted, or out of this shard, since the last look
                ctx.pacer.unfollow(uid)
                return
            if not timer_may_act(body, ctx.config.finalizer):
                return  # deleting, or no finalizer yet
            try:
                await look(body, woken)
            except ApiException as exc:  # the status memory keeps what was not written
                log.warning("status of %s %s/%s not written (%s): sent again at the next "
                            "look", body.get("kind"), body.metadata.namespace,
                            body.metadata.name, exc.reason)

        return due, look_while_there
