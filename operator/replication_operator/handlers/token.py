"""Token: a credential on a server, delivered into a Secret, rotated make-before-break."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from replication_operator import GROUP, VERSION, events, kube
from replication_operator.backends.tokens import (
    IssuedCredential,
    TokenDriver,
    TokenRequest,
    other_slot,
)
from replication_operator.config import CREDENTIAL, CREDENTIAL_GENERATION, ROTATE_REQUESTED
from replication_operator.context import OperatorContext
from replication_operator.errors import BackendError, SpecError, TransientBackendError
from replication_operator.handlers import following
from replication_operator.handlers.cleanup import clean_up
from replication_operator.metrics import TOKEN_EXPIRY
from replication_operator.pacing import Due
from replication_operator.reconcile.token import (
    DEFAULT_GRACE_SECONDS,
    TokenPlan,
    TokenVerb,
    delivered,
    iso,
    plan_token,
    revocation,
    rotation_due,
    token_status,
)
from replication_operator.status import now_iso

PLURAL = "tokens"
KIND = "Token"
SECRET_LABELS = {"app.kubernetes.io/managed-by": "replication-operator"}


def secret_name(name: str, spec: Any) -> str:
    return str(spec.get("secretName") or name)


def base_name(ns: str, name: str, spec: Any) -> str:
    """The credential's name on the server (its first slot; the second adds `-b`)."""
    return str(spec.get("externalName") or f"{ns}.{name}")


def token_request(ns: str, name: str, spec: Any, slot: str) -> TokenRequest:
    perms = spec.get("permissions") or {}
    return TokenRequest(
        key=f"{ns}/{name}", external_name=slot,
        full_access=bool(perms.get("fullAccess", False)),
        read=tuple(perms.get("read") or ()), write=tuple(perms.get("write") or ()),
        expires_in_days=int(spec.get("expiresInDays") or 0))


def secret_data(issued: IssuedCredential) -> dict[str, str]:
    creds = issued.credentials
    data = {"token": creds.token or creds.password}
    if creds.username:
        data["username"] = creds.username
    if creds.password:
        data["password"] = creds.password
    return data


async def deliver(write_secret: Callable[[dict[str, str]], Awaitable[None]], secret: str,
                  issued: IssuedCredential, driver: TokenDriver, request: TokenRequest
                  ) -> None:
    """Write the value before anything else can fail; never keep a credential whose
    value is lost: if the Secret cannot be written, the just-issued credential is
    removed again (the next reconcile issues a new one)."""
    try:
        await write_secret(secret_data(issued))
    except Exception as exc:
        await driver.delete_token(request.external_name)
        raise TransientBackendError(
            f"could not write Secret {secret!r} ({type(exc).__name__}); the new "
            f"credential was removed and will be reissued", code="SecretWriteFailed") from None


async def driver_for(ctx: OperatorContext, ns: str, server: str) -> TokenDriver:
    entry = await ctx.servers.get(ns, server)
    tokens = getattr(entry.backend, "tokens", None)
    if tokens is None:
        raise SpecError(f"spec.server: {entry.settings.type} servers have no tokens")
    driver: TokenDriver = tokens()
    return driver


@dataclass
class Outcome:
    """What one reconcile of a Token decided: status fields, Events, a note."""

    fields: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)  # (reason, message)
    note: str = ""


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    only = ctx.config.selection()  # this shard's resources (--selector)
    config = ctx.config

    # this shard's Replications only (kopf takes the finalizer off any object it watches
    # and has no handler for): a Token and the Replications using it share a shard
    @kopf.index(GROUP, VERSION, "replications", id="token_users", registry=registry, **only)
    def token_users(namespace: str | None, name: str, body: kopf.Body, **_: Any
                    ) -> dict[tuple[str, str], tuple[str, str | None]]:
        """Replications by the Token they use: (namespace, token) → (replication, the
        credential generation it applied last)."""
        spec: Mapping[str, Any] = body.get("spec") or {}
        applied: Mapping[str, Any] = (body.get("status") or {}).get("tokenGenerations") or {}
        users: dict[tuple[str, str], tuple[str, str | None]] = {}
        for side in ("source", "target"):
            ref: Mapping[str, Any] = (spec.get(side) or {}).get("tokenRef") or {}
            if ref.get("name"):
                users[(namespace or "", ref["name"])] = (name, applied.get(ref["name"]))
        return users

    users: list[kopf.Index[tuple[str, str], tuple[str, str | None]]] = []  # from kopf

    def bind(kwargs: Mapping[str, Any]) -> None:
        if not users and "token_users" in kwargs:
            users.append(kwargs["token_users"])

    def dependents(ns: str, name: str) -> list[tuple[str, str | None]]:
        return list(users[0].get((ns, name), [])) if users else []

    async def reconcile(body: kopf.Body) -> BackendError | None:
        """Converge and write the status fields that changed (ApiException if that
        write fails: the status memory keeps it, so the next reconcile sends it again)."""
        ns, name = body.metadata.namespace or "", body.metadata.name or ""
        uid = body.metadata.uid or f"{ns}/{name}"
        async with ctx.lock(uid):
            if ctx.deleting(uid):  # the deletion handler has it now
                return None
            previous = ctx.statuses.current(uid, body.get("status"))
            outcome = Outcome()
            error: BackendError | None = None
            try:
                await converge(body, previous, outcome, dependents(ns, name))
            except BackendError as exc:
                error = exc
            finally:
                ctx.pace.done(uid)
            status = token_status(previous=previous, generation=body.meta.get("generation"),
                                  error=error, fields=outcome.fields, now=now_iso(),
                                  note=outcome.note)
            changed = ctx.statuses.write(uid, body.get("status"), status)
            if changed:
                await kube.patch_status(ns, PLURAL, name, changed)
        for reason, message in outcome.events:
            events.normal(body, reason=reason, message=message)
        expires = status.get("expiresAt") or previous.get("expiresAt")
        if expires:
            TOKEN_EXPIRY.labels(ns, name).set(
                datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp())
        ctx.tally.set(KIND, f"{ns}/{name}", "Ready" if error is None else "Error",
                      error is None)
        if error is not None and (previous.get("conditions") or [{}])[0].get("message") \
                != error.message:
            events.warning(body, reason=error.code, message=error.message)
        return error

    async def converge(body: kopf.Body, previous: Mapping[str, Any], outcome: Outcome,
                       dependents: Iterable[tuple[str, str | None]]) -> None:
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        target_secret = secret_name(name, spec)
        base = base_name(ns, name, spec)
        fields = outcome.fields
        found = await kube.read_secret_owned(ns, target_secret)
        if found is not None and body.metadata.uid not in found[2]:
            raise SpecError(f"spec.secretName: Secret {target_secret!r} exists and does not "
                            f"belong to this Token; name another Secret (the operator never "
                            f"overwrites one it did not make for this Token)")
        fields["secretName"] = target_secret
        driver = await driver_for(ctx, ns, spec["server"])
        data, annotations = (found[0], found[1]) if found is not None else ({}, {})
        # a crash between the Secret write and the status write: the Secret knows
        fields.update(delivered(previous, annotations, credential_key=CREDENTIAL,
                                generation_key=CREDENTIAL_GENERATION))
        state = {**previous, **fields}
        current = str(state.get("externalName") or base)
        fields["externalName"] = current
        generation = str(state.get("generation") or "")
        now = datetime.now(UTC)
        grace = int((spec.get("rotation") or {}).get("graceSeconds", DEFAULT_GRACE_SECONDS))
        pending = state.get("previousCredential")
        if pending and not pending.get("revokeAfter"):  # caught up from the Secret
            pending = {**pending, "revokeAfter": iso(now + timedelta(seconds=grace))}
            fields["previousCredential"] = pending
        seen = await driver.observe_token(token_request(ns, name, spec, current),
                                          max_age=config.resync_interval)
        requested = body.metadata.annotations.get(ROTATE_REQUESTED)
        new_request = bool(requested) and requested != previous.get("lastRotateRequest")
        plan = plan_token(
            seen=seen, secret_has_value=bool(data.get("token")) and
            annotations.get(CREDENTIAL, current) == current,
            rotate_due=rotation_due(every_days=(spec.get("rotation") or {}).get("everyDays"),
                                    last_rotation=previous.get("lastRotationTime"),
                                    created_at=previous.get("createdAt"), now=now),
            rotate_requested=new_request, revocation_pending=bool(pending))
        if plan.verb is TokenVerb.UPDATE and not await driver.update_token(
                token_request(ns, name, spec, current)):
            plan = TokenPlan(TokenVerb.ROTATE, "Updated", urgent=True)
        elif plan.verb is TokenVerb.UPDATE:
            outcome.events.append(("Updated", f"updated credential {current} in place"))
        if plan.verb is TokenVerb.ROTATE and pending:  # urgent: the old one goes first
            await revoke(driver, pending, outcome, "a new credential had to be issued now")
            pending = None
        if plan.verb in (TokenVerb.CREATE, TokenVerb.ROTATE):
            slot = current if plan.verb is TokenVerb.CREATE else other_slot(base, current)
            generation = str(int(generation or 0) + 1)
            issued = await issue(body, driver, slot, generation, target_secret)
            fields.update({"externalName": slot, "generation": generation})
            if issued.created_at and plan.verb is TokenVerb.CREATE:
                fields["createdAt"] = issued.created_at
            elif plan.verb is TokenVerb.CREATE:
                fields["createdAt"] = now_iso()
            else:
                fields["lastRotationTime"] = now_iso()
            if issued.expires_at:
                fields["expiresAt"] = issued.expires_at
            if issued.credentials.username:
                fields["username"] = issued.credentials.username
            if plan.verb is TokenVerb.ROTATE and seen.exists:
                pending = {"externalName": current,
                           "revokeAfter": iso(now + timedelta(seconds=grace))}
                fields["previousCredential"] = pending
            outcome.events.append((plan.reason, issued_message(
                slot, generation, target_secret, pending if plan.verb is TokenVerb.ROTATE
                else None)))
        if plan.verb is TokenVerb.WAIT and pending:
            outcome.note = (f"a rotation waits until the previous credential "
                            f"{pending['externalName']} is revoked (at the latest "
                            f"{pending.get('revokeAfter', 'now')})")
        elif requested and plan.verb is not TokenVerb.WAIT:
            fields["lastRotateRequest"] = requested
        decision = revocation(previous=pending, generation=generation,
                              dependents=dependents, now=now)
        if decision.due and pending:
            await revoke(driver, pending, outcome, decision.message)
        elif pending:
            outcome.note = outcome.note or decision.message
        if not pending and plan.verb not in (TokenVerb.CREATE, TokenVerb.ROTATE) and \
                body.metadata.uid not in leftovers_checked:
            await remove_leftover(body, driver, other_slot(base, current), outcome)
        if seen.created_at and not previous.get("createdAt"):
            fields.setdefault("createdAt", seen.created_at)
        if seen.expires_at:
            fields.setdefault("expiresAt", seen.expires_at)

    leftovers_checked: set[str] = set()  # Tokens whose unused slot was looked at

    async def remove_leftover(body: kopf.Body, driver: TokenDriver, slot: str,
                              outcome: Outcome) -> None:
        """Delete the credential in the slot no status or Secret names: an operator
        killed between creating it and writing the Secret left it behind (once per Token
        per process, so once after every restart)."""
        ns, name = body.metadata.namespace or "", body.metadata.name or ""
        if (await driver.observe_token(token_request(ns, name, body.spec, slot),
                                       max_age=config.resync_interval)).exists:
            await driver.delete_token(slot)
            outcome.events.append(("LeftoverRemoved", f"removed credential {slot}, left "
                                                      f"behind by an interrupted issue"))
        leftovers_checked.add(str(body.metadata.uid))

    async def issue(body: kopf.Body, driver: TokenDriver, slot: str, generation: str,
                    target_secret: str) -> IssuedCredential:
        """Create the credential in `slot` (removing a leftover of an interrupted
        rotation first: its value is lost) and deliver it into the Secret at once."""
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        request = token_request(ns, name, spec, slot)
        if (await driver.observe_token(request, max_age=0)).exists:
            await driver.delete_token(slot)
        issued = await driver.create_token(request)
        await deliver(partial(kube.apply_secret, ns, target_secret,
                              owner=kube.owner_reference(body), labels=SECRET_LABELS,
                              annotations={CREDENTIAL: slot, CREDENTIAL_GENERATION: generation}),
                      target_secret, issued, driver, request)
        return issued

    async def revoke(driver: TokenDriver, pending: Mapping[str, Any], outcome: Outcome,
                     why: str) -> None:
        old = str(pending["externalName"])
        await driver.delete_token(old)
        outcome.fields["previousCredential"] = None
        outcome.events.append(("Revoked", f"revoked the previous credential {old}: {why}"))

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, **only)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, **only)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, **only)
    async def changed(body: kopf.Body, retry: int, **kwargs: Any) -> None:
        bind(kwargs)
        try:
            error = await reconcile(body)
        except ApiException as exc:
            raise kopf.TemporaryError(f"writing the status failed: {exc.reason}",
                                      delay=config.backoff(retry)) from None
        if isinstance(error, TransientBackendError):
            raise kopf.TemporaryError(error.message, delay=config.backoff(retry))

    def start(uid: str, current: following.Current) -> tuple[Due, following.BodyLook]:
        """A Token's look: a resync interval after its last reconcile (rotation and
        expiry are decided there, as is the revocation of a previous credential)."""
        begun = time.monotonic()

        def due() -> float:
            return (ctx.pace.last(uid) or begun) + config.resync_interval

        async def look(body: kopf.Body, woken: bool) -> None:
            await reconcile(body)

        return due, look

    following.follow(registry, ctx, PLURAL, start, bind=bind)

    async def revoke_unused(body: kopf.Body, ns: str, spec: Mapping[str, Any], slot: str
                            ) -> None:
        """`Orphan` leaves the credential in use; the other slot (a previous credential
        awaiting revocation, or one a crash left) is no one's to keep."""
        try:
            driver = await driver_for(ctx, ns, spec["server"])
            await driver.delete_token(slot)
        except BackendError as exc:
            events.warning(body, reason="RevokeFailed",
                           message=f"the unused credential {slot} was left on the server: "
                                   f"{exc.message}")

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, **only)
    async def deleted(body: kopf.Body, patch: kopf.Patch, retry: int, runtime: Any,
                      **_: Any) -> None:
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        base = base_name(ns, name, spec)
        uid = body.metadata.uid or f"{ns}/{name}"
        ctx.tally.drop(KIND, f"{ns}/{name}")
        ctx.begin_deletion(uid)
        with contextlib.suppress(KeyError):
            TOKEN_EXPIRY.remove(ns, name)

        async def remove() -> str:
            driver = await driver_for(ctx, ns, spec["server"])
            for slot in (base, other_slot(base, base)):  # current and previous, if any
                await driver.delete_token(slot)
            return ""

        async with ctx.lock(uid):  # after a reconcile in flight, never during it
            in_use = str(ctx.statuses.current(uid, body.get("status")).get("externalName")
                         or base)
            if spec.get("deletionPolicy") == "Orphan":
                await revoke_unused(body, ns, spec, other_slot(base, in_use))
            await clean_up(body, patch, retry=retry, runtime=runtime, config=config,
                           what=f"credential {in_use}", remove=remove)
            await kube.delete_secret(ns, secret_name(name, spec), owner_uid=uid)
        ctx.release(uid)


def issued_message(slot: str, generation: str, secret: str,
                   pending: Mapping[str, Any] | None) -> str:
    text = f"issued credential {slot} (generation {generation}) into Secret {secret}"
    if pending:
        text += (f"; the previous credential {pending['externalName']} is revoked once "
                 f"every Replication using it has switched, at the latest "
                 f"{pending['revokeAfter']}")
    return text
