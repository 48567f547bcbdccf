"""The few Kubernetes API calls the operator makes besides kopf's own.

The official client is synchronous, so every call runs in a worker thread: nothing
here blocks the event loop. Secret values are decoded here and handed on as
`Credentials`/dicts; they are never logged.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from replication_operator import GROUP, VERSION

_api: kubernetes.client.ApiClient | None = None


def configure() -> None:
    """Load in-cluster config, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    global _api
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    _api = kubernetes.client.ApiClient()


def api() -> kubernetes.client.ApiClient:
    if _api is None:
        configure()
    assert _api is not None
    return _api


def _decode(data: dict[str, Any] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (data or {}).items()}


async def read_secret(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's data, decoded; None if it does not exist."""
    found = await read_secret_annotated(namespace, name)
    return None if found is None else found[0]


async def read_secret_annotated(namespace: str, name: str
                                ) -> tuple[dict[str, str], dict[str, str]] | None:
    """The Secret's data, decoded, and its annotations; None if it does not exist."""
    found = await read_secret_owned(namespace, name)
    return None if found is None else (found[0], found[1])


async def read_secret_owned(namespace: str, name: str
                            ) -> tuple[dict[str, str], dict[str, str], set[str]] | None:
    """The Secret's data, decoded, its annotations and the uids of its owners; None if
    it does not exist."""
    core = kubernetes.client.CoreV1Api(api())
    try:
        secret = await asyncio.to_thread(core.read_namespaced_secret, name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    meta = secret.metadata
    owners = {str(ref.uid) for ref in (meta.owner_references if meta else None) or []}
    return _decode(secret.data), dict((meta.annotations if meta else None) or {}), owners


class ForeignSecretError(Exception):
    """A Secret of that name exists and belongs to something else: never overwritten."""


async def get_custom(namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    custom = kubernetes.client.CustomObjectsApi(api())
    try:
        obj = await asyncio.to_thread(
            custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return cast(dict[str, Any], obj)


def owner_reference(body: Any) -> kubernetes.client.V1OwnerReference:
    """Makes the owner's deletion remove the object (garbage collection)."""
    meta = body["metadata"]
    return kubernetes.client.V1OwnerReference(
        api_version=body["apiVersion"], kind=body["kind"], name=meta["name"], uid=meta["uid"],
        controller=True, block_owner_deletion=True)


async def apply_secret(namespace: str, name: str, data: dict[str, str], *,
                       owner: kubernetes.client.V1OwnerReference | None,
                       labels: dict[str, str],
                       annotations: dict[str, str] | None = None) -> None:
    """Create or replace a Secret holding `data` (values are plain strings); a Secret
    that `owner` does not own is never replaced (ForeignSecretError)."""
    core = kubernetes.client.CoreV1Api(api())
    body = kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(
            name=name, namespace=namespace, labels=labels, annotations=annotations,
            owner_references=[owner] if owner else None),
        type="Opaque",
        data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()})
    try:
        await asyncio.to_thread(core.create_namespaced_secret, namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        found = await read_secret_owned(namespace, name)
        if owner is not None and found is not None and owner.uid not in found[2]:
            raise ForeignSecretError(name) from None
        await asyncio.to_thread(core.replace_namespaced_secret, name, namespace, body)


async def delete_secret(namespace: str, name: str, *, owner_uid: str | None = None) -> None:
    """Delete the Secret; with `owner_uid`, only if that object owns it."""
    core = kubernetes.client.CoreV1Api(api())
    if owner_uid is not None:
        found = await read_secret_owned(namespace, name)
        if found is None or owner_uid not in found[2]:
            return
    try:
        await asyncio.to_thread(core.delete_namespaced_secret, name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise


async def patch_status(namespace: str, plural: str, name: str, status: dict[str, Any]) -> None:
    """Merge-patch `.status` (used where no kopf patch object is at hand: daemons)."""
    custom = kubernetes.client.CustomObjectsApi(api())
    try:
        await asyncio.to_thread(
            custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural,
            name, {"status": status})
    except ApiException as exc:
        if exc.status != 404:  # deleted meanwhile: nothing to report on
            raise


# -- custom objects the operator creates itself (a ReplicationPolicy's Replications) --

async def create_custom(namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create; an ApiException (409 if the name is taken) goes to the caller."""
    custom = kubernetes.client.CustomObjectsApi(api())
    obj = await asyncio.to_thread(custom.create_namespaced_custom_object, GROUP, VERSION,
                                  namespace, plural, body)
    return cast(dict[str, Any], obj)


async def patch_custom(namespace: str, plural: str, name: str,
                       patch: dict[str, Any] | list[dict[str, Any]]) -> None:
    """A merge patch (dict) or a JSON patch (list of operations); gone meanwhile is fine."""
    custom = kubernetes.client.CustomObjectsApi(api())
    content_type = "application/json-patch+json" if isinstance(patch, list) else None
    try:
        await asyncio.to_thread(custom.patch_namespaced_custom_object, GROUP, VERSION,
                                namespace, plural, name, patch, _content_type=content_type)
    except ApiException as exc:
        if exc.status != 404:
            raise


async def delete_custom(namespace: str, plural: str, name: str) -> None:
    """Ask for deletion (finalizers run); already gone is fine."""
    custom = kubernetes.client.CustomObjectsApi(api())
    try:
        await asyncio.to_thread(custom.delete_namespaced_custom_object, GROUP, VERSION,
                                namespace, plural, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
