"""What `plan` and `export` read from the cluster: GET and LIST only, never a write
(not even a dry-run), with the manifests being planned laid over it."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from replication_operator import GROUP, VERSION, kube

PLURALS = {"DatabaseServer": "databaseservers", "Replication": "replications",
           "ReplicationPolicy": "replicationpolicies", "Token": "tokens"}
KINDS = {plural: kind for kind, plural in PLURALS.items()}
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def current_namespace() -> str:
    """The namespace kubectl would use: the kubeconfig context's, in a Pod its own."""
    try:
        _, active = kubernetes.config.list_kube_config_contexts()
        namespace = (active or {}).get("context", {}).get("namespace")
        if namespace:
            return str(namespace)
    except (kubernetes.config.ConfigException, OSError):
        if SERVICE_ACCOUNT_NAMESPACE.exists():
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


class Unknowable(Exception):
    """The cluster would not say (403): the caller must not assume either answer."""


class Cluster:
    """Read-only access to the operator's kinds, Secrets and CRDs."""

    def __init__(self) -> None:
        kube.configure()
        self._custom = kubernetes.client.CustomObjectsApi(kube.api())
        self._lists: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._schemas: dict[str, dict[str, Any] | None] = {}

    async def list(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        key = (namespace, plural)
        if key not in self._lists:
            answer = await asyncio.to_thread(self._custom.list_namespaced_custom_object,
                                             GROUP, VERSION, namespace, plural)
            self._lists[key] = list(cast(dict[str, Any], answer).get("items") or [])
        return self._lists[key]

    async def get(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        return next((o for o in await self.list(namespace, plural)
                     if o["metadata"]["name"] == name), None)

    async def exists(self, namespace: str, plural: str, name: str) -> bool:
        """Whether an object exists, in any namespace; Unknowable when not allowed to
        look there."""
        try:
            await asyncio.to_thread(self._custom.get_namespaced_custom_object, GROUP, VERSION,
                                    namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise Unknowable(f"{plural} {namespace}/{name}: HTTP {exc.status}") from None
        return True

    async def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return await kube.read_secret(namespace, name)

    async def schema(self, plural: str) -> dict[str, Any] | None:
        """The CRD's openAPIV3Schema (for the API server's defaults); None if the CRD
        cannot be read."""
        if plural not in self._schemas:
            ext = kubernetes.client.ApiextensionsV1Api(kube.api())
            try:
                answer = await asyncio.to_thread(ext.read_custom_resource_definition,
                                                 f"{plural}.{GROUP}", _preload_content=False)
            except ApiException:
                self._schemas[plural] = None
            else:
                crd = json.loads(cast(Any, answer).data)  # raw: _preload_content=False
                version: dict[str, Any] = next(
                    (v for v in crd["spec"]["versions"] if v["name"] == VERSION), {})
                self._schemas[plural] = (version.get("schema") or {}).get("openAPIV3Schema")
        return self._schemas[plural]


def decode_secret(body: dict[str, Any]) -> dict[str, str]:
    """A Secret manifest's values: `data` (base64) overlaid by `stringData`."""
    values = {k: base64.b64decode(v).decode("utf-8", "replace")
              for k, v in (body.get("data") or {}).items()}
    values.update({k: str(v) for k, v in (body.get("stringData") or {}).items()})
    return values


def names(objects: Iterable[dict[str, Any]]) -> set[str]:
    return {str(o["metadata"]["name"]) for o in objects}
