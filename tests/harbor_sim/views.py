"""The JSON Harbor writes for each model. Harbor's go-swagger models drop zero values
(`omitempty`: false, "", 0, empty lists) unless the swagger says `x-omitempty: false` or
the field is a pointer; date-times are never dropped and a zero time is written as
`0001-01-01T00:00:00.000Z`. The `keep` sets below list the fields always present."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .store import (
    LOCAL_REGISTRY_ID,
    MASK,
    Execution,
    Policy,
    Project,
    Registry,
    Robot,
    Store,
    Task,
)

ZERO_TIME = "0001-01-01T00:00:00.000Z"


def fmt_time(value: float | None) -> str:
    """strfmt.DateTime: RFC 3339 with milliseconds, UTC as `Z`."""
    if value is None:
        return ZERO_TIME
    moment = datetime.fromtimestamp(value, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def omit_empty(data: dict[str, Any], keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {k: v for k, v in data.items()
            if k in keep or not (v is None or v is False or v == "" or v == 0 or v == []
                                 or v == {})}


_REGISTRY_KEEP = frozenset({"id", "creation_time", "update_time"})


def registry(store: Store, item: Registry) -> dict[str, Any]:
    credential = omit_empty({"type": item.credential_type, "access_key": item.access_key,
                             "access_secret": MASK if item.access_secret else ""})
    return omit_empty({
        "id": item.id, "url": item.url, "name": item.name, "credential": credential,
        "type": item.type, "insecure": item.insecure, "description": item.description,
        "status": store.registry_status(item), "creation_time": fmt_time(item.created),
        "update_time": fmt_time(item.updated)}, _REGISTRY_KEEP | {"credential"})


def local_registry(store: Store) -> dict[str, Any]:
    """reg.getLocalRegistry: id 0, "Local", the core URL, a masked jobservice secret."""
    return {"id": LOCAL_REGISTRY_ID, "url": store.url, "name": "Local",
            "credential": {"type": "secret", "access_secret": MASK}, "type": "harbor",
            "insecure": True, "status": "healthy", "creation_time": ZERO_TIME,
            "update_time": ZERO_TIME}


def _registry_by_id(store: Store, registry_id: int) -> dict[str, Any]:
    if registry_id == LOCAL_REGISTRY_ID:
        return local_registry(store)
    item = store.registries.get(registry_id)
    return registry(store, item) if item else {"id": registry_id}


# "filters" is null when there are none (seen on 2.12.4), never absent
_POLICY_KEEP = frozenset({"dest_namespace_replace_count", "speed", "copy_by_chunk",
                          "creation_time", "update_time", "src_registry", "dest_registry",
                          "filters"})


def policy(store: Store, item: Policy) -> dict[str, Any]:
    trigger = None
    if item.trigger is not None:
        trigger = omit_empty({"type": item.trigger.get("type", "")})
        if "trigger_settings" in item.trigger:
            trigger["trigger_settings"] = omit_empty(dict(item.trigger["trigger_settings"]))
    filters = [omit_empty(dict(f), frozenset({"value"})) for f in item.filters]
    return omit_empty({
        "id": item.id, "name": item.name, "description": item.description,
        "src_registry": _registry_by_id(store, item.src_registry_id),
        "dest_registry": _registry_by_id(store, item.dest_registry_id),
        "dest_namespace": item.dest_namespace,
        "dest_namespace_replace_count": item.dest_namespace_replace_count,
        "trigger": trigger, "filters": filters or None,
        "replicate_deletion": item.replicate_deletion, "deletion": item.replicate_deletion,
        "override": item.override, "enabled": item.enabled,
        "creation_time": fmt_time(item.created), "update_time": fmt_time(item.updated),
        "speed": item.speed, "copy_by_chunk": item.copy_by_chunk}, _POLICY_KEEP)


_EXECUTION_KEEP = frozenset({"status_text", "total", "failed", "succeed", "in_progress",
                             "stopped", "start_time", "end_time"})


def execution(store: Store, item: Execution) -> dict[str, Any]:
    status, ended = store.execution_status(item)
    tasks = store.execution_tasks(item)
    count = {s: sum(1 for t in tasks if t.status == s)
             for s in ("Pending", "InProgress", "Succeed", "Failed", "Stopped")}
    return omit_empty({
        "id": item.id, "policy_id": item.policy_id, "status": status,
        "trigger": item.trigger, "start_time": fmt_time(item.started),
        "end_time": fmt_time(ended), "status_text": item.status_text, "total": len(tasks),
        "failed": count["Failed"], "succeed": count["Succeed"],
        "in_progress": count["Pending"] + count["InProgress"], "stopped": count["Stopped"],
    }, _EXECUTION_KEEP)


def task(item: Task) -> dict[str, Any]:
    return omit_empty({
        "id": item.id, "execution_id": item.execution_id, "status": item.status,
        "job_id": item.job_id, "operation": item.operation,
        "resource_type": item.resource_type, "src_resource": item.src_resource,
        "dst_resource": item.dst_resource, "start_time": fmt_time(item.started),
        "end_time": fmt_time(item.ended)}, frozenset({"start_time", "end_time"}))


def robot(item: Robot) -> dict[str, Any]:
    permissions = [omit_empty({"kind": p["kind"], "namespace": p["namespace"],
                               "access": [omit_empty(dict(a)) for a in p["access"]]})
                   for p in item.permissions]
    return omit_empty({
        "id": item.id, "name": item.full_name, "description": item.description,
        "level": item.level, "duration": item.duration, "editable": True,
        "disable": item.disabled, "expires_at": item.expires_at,
        "permissions": permissions, "creator_ref": 1, "creator_type": "local",
        "creation_time": fmt_time(item.created), "update_time": fmt_time(item.updated)},
        frozenset({"editable", "disable", "creation_time", "update_time"}))


def robot_created(item: Robot, secret: str) -> dict[str, Any]:
    return {"id": item.id, "name": item.full_name, "secret": secret,
            "creation_time": fmt_time(item.created), "expires_at": item.expires_at}


def project(store: Store, item: Project, admin: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project_id": item.id, "owner_id": 1, "name": item.name,
        "creation_time": fmt_time(item.created), "update_time": fmt_time(item.updated),
        "owner_name": store.username, "repo_count": store.repo_count(item),
        "chart_count": 0,
        "metadata": {"public": "true" if item.public else "false"},
        "cve_allowlist": {"id": item.id, "project_id": item.id, "items": [],
                          "creation_time": ZERO_TIME, "update_time": ZERO_TIME},
    }
    if admin:
        data.update({"togglable": True, "current_user_role_id": 1,
                     "current_user_role_ids": [1]})
    return omit_empty(data, frozenset({"repo_count", "chart_count", "creation_time",
                                       "update_time", "cve_allowlist"}))


def repository(entry: dict[str, Any]) -> dict[str, Any]:
    return omit_empty({**entry, "creation_time": fmt_time(entry["creation_time"]),
                       "update_time": fmt_time(entry["update_time"])},
                      frozenset({"artifact_count", "pull_count"}))


def current_user(store: Store) -> dict[str, Any]:
    return {"user_id": 1, "username": store.username, "email": "admin@example.com",
            "realname": "system admin", "comment": "admin user", "sysadmin_flag": True,
            "admin_role_in_auth": False, "creation_time": fmt_time(store.created),
            "update_time": fmt_time(store.created)}


def system_info(store: Store, authenticated: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"auth_mode": "db_auth", "primary_auth_mode": False,
                            "self_registration": False,
                            "harbor_version": store.settings.harbor_version}
    if authenticated:
        host = store.url.split("://", 1)[-1]
        data.update({
            "has_ca_root": False, "project_creation_restriction": "everyone",
            "external_url": store.url, "registry_url": host, "with_chartmuseum": False,
            "read_only": False, "registry_storage_provider_name": "filesystem",
            "notification_enable": True, "current_time": fmt_time(store.now())})
    return data


def health() -> dict[str, Any]:
    names = ["core", "database", "jobservice", "portal", "redis", "registry",
             "registryctl", "trivy"]
    return {"status": "healthy",
            "components": [{"name": name, "status": "healthy"} for name in names]}
