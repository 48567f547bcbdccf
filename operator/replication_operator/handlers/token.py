"""Token: a credential on a server, delivered into a Secret."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import kopf

from replication_operator import GROUP, VERSION, events, kube
from replication_operator.backends.tokens import IssuedCredential, TokenDriver, TokenRequest
from replication_operator.config import ROTATE_REQUESTED
from replication_operator.context import OperatorContext
from replication_operator.errors import BackendError, SpecError, TransientBackendError
from replication_operator.handlers.cleanup import clean_up
from replication_operator.metrics import TOKEN_EXPIRY
from replication_operator.reconcile.token import TokenVerb, plan_token, rotation_due, token_status
from replication_operator.status import changed_fields, now_iso

PLURAL = "tokens"
KIND = "Token"
SECRET_LABELS = {"app.kubernetes.io/managed-by": "replication-operator"}


def secret_name(name: str, spec: Any) -> str:
    return str(spec.get("secretName") or name)


def token_request(ns: str, name: str, spec: Any, status: Any) -> TokenRequest:
    perms = spec.get("permissions") or {}
    return TokenRequest(
        key=f"{ns}/{name}",
        external_name=str(spec.get("externalName") or status.get("externalName")
                          or f"{ns}.{name}"),
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
                  issued: IssuedCredential, driver: TokenDriver, request: TokenRequest, *,
                  created: bool) -> None:
    """Write the value before anything else can fail; never keep a token whose value
    is lost: if the Secret cannot be written, a just-created token is removed again
    (the next reconcile creates a new one)."""
    try:
        await write_secret(secret_data(issued))
    except Exception as exc:
        if created:
            await driver.delete_token(request.external_name)
        raise TransientBackendError(
            f"could not write Secret {secret!r} ({type(exc).__name__}); the credential "
            f"was {'removed' if created else 'left'} and will be reissued",
            code="SecretWriteFailed") from None


async def driver_for(ctx: OperatorContext, ns: str, server: str) -> TokenDriver:
    entry = await ctx.servers.get(ns, server)
    tokens = getattr(entry.backend, "tokens", None)
    if tokens is None:
        raise SpecError(f"spec.server: {entry.settings.type} servers have no tokens")
    driver: TokenDriver = tokens()
    return driver


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    config = ctx.config

    async def reconcile(body: kopf.Body, patch: kopf.Patch) -> BackendError | None:
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        previous = dict(body.get("status") or {})
        request = token_request(ns, name, spec, previous)
        target_secret = secret_name(name, spec)
        fields: dict[str, Any] = {"externalName": request.external_name,
                                  "secretName": target_secret}
        error: BackendError | None = None
        async with ctx.lock(body.metadata.uid or f"{ns}/{name}"):
            try:
                driver = await driver_for(ctx, ns, spec["server"])
                seen = await driver.observe_token(request)
                data = await kube.read_secret(ns, target_secret) or {}
                requested = body.metadata.annotations.get(ROTATE_REQUESTED)
                verb, reason = plan_token(
                    seen=seen, secret_has_value=bool(data.get("token")),
                    rotate_due=rotation_due(every_days=(spec.get("rotation") or {})
                                            .get("everyDays"),
                                            last_rotation=previous.get("lastRotationTime"),
                                            created_at=previous.get("createdAt"),
                                            now=datetime.now(UTC)),
                    rotate_requested=bool(requested)
                    and requested != previous.get("lastRotateRequest"))
                issued: IssuedCredential | None = None
                if verb is TokenVerb.CREATE:
                    issued = await driver.create_token(request)
                elif verb is TokenVerb.ROTATE:
                    issued = await driver.rotate_token(request)
                elif verb is TokenVerb.UPDATE:
                    issued = await driver.update_token(request)
                if issued is not None:
                    await deliver(partial(kube.apply_secret, ns, target_secret,
                                          owner=kube.owner_reference(body),
                                          labels=SECRET_LABELS),
                                  target_secret, issued, driver, request,
                                  created=verb is TokenVerb.CREATE)
                    fields["generation"] = str(int(previous.get("generation") or 0) + 1)
                    if verb is TokenVerb.CREATE:
                        fields["createdAt"] = issued.created_at or now_iso()
                    else:
                        fields["lastRotationTime"] = now_iso()
                    if issued.expires_at:
                        fields["expiresAt"] = issued.expires_at
                    if issued.credentials.username:
                        fields["username"] = issued.credentials.username
                if verb is not TokenVerb.NOTHING:
                    events.normal(body, reason=reason, message=f"{verb.value}d credential "
                              f"{request.external_name}; Secret {target_secret}")
                if requested:
                    fields["lastRotateRequest"] = requested
                if seen.created_at and not previous.get("createdAt"):
                    fields.setdefault("createdAt", seen.created_at)
                if seen.expires_at:
                    fields.setdefault("expiresAt", seen.expires_at)
            except BackendError as exc:
                error = exc
        status = token_status(previous=previous, generation=body.meta.get("generation"),
                              error=error, fields=fields, now=now_iso())
        for key, value in changed_fields(previous, status).items():
            patch.status[key] = value
        expires = status.get("expiresAt") or previous.get("expiresAt")
        if expires:
            TOKEN_EXPIRY.labels(ns, name).set(
                datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp())
        ready = error is None
        ctx.tally.set(KIND, f"{ns}/{name}", "Ready" if ready else "Error", ready)
        if error is not None and (previous.get("conditions") or [{}])[0].get("message") \
                != error.message:
            events.warning(body, reason=error.code, message=error.message)
        return error

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def changed(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
        error = await reconcile(body, patch)
        if isinstance(error, TransientBackendError):
            raise kopf.TemporaryError(error.message, delay=config.backoff(retry))

    @kopf.timer(GROUP, VERSION, PLURAL, registry=registry, interval=config.resync_interval,
                initial_delay=config.resync_interval)
    async def resync(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        if not body.metadata.get("deletionTimestamp"):
            await reconcile(body, patch)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def deleted(body: kopf.Body, patch: kopf.Patch, retry: int, runtime: Any,
                      **_: Any) -> None:
        ns, name, spec = body.metadata.namespace or "", body.metadata.name or "", body.spec
        request = token_request(ns, name, spec, body.get("status") or {})
        ctx.tally.drop(KIND, f"{ns}/{name}")
        with contextlib.suppress(KeyError):
            TOKEN_EXPIRY.remove(ns, name)

        async def remove() -> str:
            driver = await driver_for(ctx, ns, spec["server"])
            await driver.delete_token(request.external_name)
            return ""

        await clean_up(body, patch, retry=retry, runtime=runtime, config=config,
                       what=f"credential {request.external_name}", remove=remove)
        await kube.delete_secret(ns, secret_name(name, spec))
