"""Harbor documents, pure: spec → policy / registry bodies, Harbor's answers → diffs.

Harbor normalises what it stores (the local side comes back as a registry object with
id 0, remote registries with their credential masked, `trigger_settings.cron` may be
emptied for non-scheduled triggers, `deletion` mirrors `replicate_deletion`), so the
comparison works on a projection both sides agree on: a policy nobody touched compares
equal and a quiet resync sends no PUT.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from replication_operator import cron
from replication_operator.backends.policies import Execution, PolicyRequest, Remote
from replication_operator.credentials import Credentials
from replication_operator.errors import SpecError

MARKER = "managed by replication-operator"
TRIGGER_TYPES = {"manual": "manual", "scheduled": "scheduled", "eventBased": "event_based"}
DECORATED = ("tag", "label")  # Harbor refuses a decoration on name and resource filters
UNSET_TIME = "0001-01-01"  # Go's zero time: Harbor's "not yet"


def owner_marker(key: str) -> str:
    return f"{MARKER} for {key}"


def owner_of(description: str | None) -> str | None:
    """The "ns/name" an operator-made object was made for, None if not ours."""
    prefix = f"{MARKER} for "
    text = description or ""
    return text[len(prefix):].split(" ", 1)[0] or None if text.startswith(prefix) else None


def name_pattern(patterns: tuple[str, ...]) -> str:
    """Harbor takes one name filter: several patterns become a {a,b} alternative."""
    unique = sorted(set(patterns))
    return unique[0] if len(unique) == 1 else "{" + ",".join(unique) + "}"


def _filters(request: PolicyRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "name", "value": name_pattern(request.patterns)}]
    for item in request.filters:
        value: Any = item.value
        if item.type == "label":
            value = sorted({part.strip() for part in item.value.split(",") if part.strip()})
        entry: dict[str, Any] = {"type": item.type, "value": value}
        if item.type in DECORATED:
            entry["decoration"] = item.decoration or "matches"
        out.append(entry)
    return out


def harbor_cron(request: PolicyRequest) -> str:
    """The schedule in Harbor's 6-field form (seconds first), refused here for what
    Harbor refuses: a seconds field other than 0, and `*` as the minutes field (a
    replication every minute of an hour)."""
    try:
        six = cron.to_six_fields(request.schedule)
    except cron.CronError as exc:
        raise SpecError(str(exc)) from None
    seconds, minutes = six.split(" ")[:2]
    if seconds != "0":
        raise SpecError(f"spec.trigger.schedule {request.schedule!r}: Harbor runs "
                        f"replications at second 0 only; the seconds field must be 0")
    if minutes == "*":
        raise SpecError(f"spec.trigger.schedule {request.schedule!r}: Harbor refuses `*` as "
                        f"the minutes field of a replication schedule (name the minutes, "
                        f"e.g. '0 * * * *' for hourly or '*/5 * * * *')")
    return six


def policy_body(request: PolicyRequest, *, name: str, registry_id: int) -> dict[str, Any]:
    """The full policy as PUT/POST want it (PUT replaces everything)."""
    if request.trigger not in TRIGGER_TYPES:
        raise SpecError(f"spec.trigger.type {request.trigger!r} is not available on Harbor "
                        f"(allowed: {', '.join(TRIGGER_TYPES)})")
    registry = {"id": registry_id}
    scheduled = request.trigger == "scheduled"
    body: dict[str, Any] = {
        "name": name,
        "description": owner_marker(request.key),
        "dest_namespace": request.dest_namespace,
        "dest_namespace_replace_count": request.dest_namespace_replace_count,
        "trigger": {"type": TRIGGER_TYPES[request.trigger],
                    "trigger_settings": {"cron": harbor_cron(request) if scheduled else ""}},
        "filters": _filters(request),
        # Harbor (2.x) reads replicate_deletion from the deprecated `deletion`: send both
        "replicate_deletion": request.replicate_deletion,
        "deletion": request.replicate_deletion,
        "override": request.override,
        "enabled": request.enabled,
        "speed": request.speed,
        "copy_by_chunk": request.copy_by_chunk,
    }
    body["dest_registry" if request.push else "src_registry"] = registry
    return body


def desired_policy(request: PolicyRequest, *, registry_id: int,
                   stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The policy as the operator keeps it on the server. An adopted policy keeps its
    name and description (the spec has no field for them, and the id is its identity),
    so adopting a policy that matches the spec writes nothing."""
    body = policy_body(request, name=request.name, registry_id=registry_id)
    if request.adopted and stored is not None:
        body["name"] = str(stored.get("name") or request.name)
        body["description"] = str(stored.get("description") or "")
    return body


def registry_id(value: Any) -> int:
    """A policy's registry reference as an id (0: the local side)."""
    if isinstance(value, Mapping):
        return int(value.get("id") or 0)
    return 0


def _filter_key(item: Mapping[str, Any]) -> tuple[str, str, str]:
    kind = str(item.get("type", ""))
    value = item.get("value")
    text = ",".join(sorted(str(v) for v in value)) if isinstance(value, list) else str(value)
    decoration = str(item.get("decoration") or ("matches" if kind in DECORATED else ""))
    return kind, text, decoration


def _speed(value: Any) -> int:
    speed = int(value or 0)
    return -1 if speed <= 0 else speed  # 0 and -1 both mean unlimited


def _projection(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that decide whether a policy matches the spec, keyed by spec name."""
    trigger = policy.get("trigger") or {}
    trigger_type = str(trigger.get("type") or "manual")
    settings = trigger.get("trigger_settings") or {}
    filters = sorted(_filter_key(f) for f in policy.get("filters") or [])
    count = policy.get("dest_namespace_replace_count")
    deletion = policy.get("replicate_deletion")
    if deletion is None:
        deletion = policy.get("deletion")
    return {
        "name": policy.get("name") or "",
        "description": policy.get("description") or "",
        "source.server": registry_id(policy.get("src_registry")),
        "target.server": registry_id(policy.get("dest_registry")),
        "target.namespace": policy.get("dest_namespace") or "",
        "target.namespaceReplaceCount": -1 if count is None else int(count),
        "trigger": (trigger_type, str(settings.get("cron") or "")
                    if trigger_type == "scheduled" else ""),
        "source.databases": [f for f in filters if f[0] == "name"],
        "filters": [f for f in filters if f[0] != "name"],
        "replicateDeletion": bool(deletion),
        "override": bool(policy.get("override")),
        "enabled": bool(policy.get("enabled")),
        "speed": _speed(policy.get("speed")),
        "copyByChunk": bool(policy.get("copy_by_chunk")),
    }


def policy_differences(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> list[str]:
    """Spec field names whose value on the server differs (never the values)."""
    want, have = _projection(desired), _projection(observed)
    return [key for key in want if want[key] != have[key]]


def _time(value: Any) -> str | None:
    text = str(value or "")
    return None if not text or text.startswith(UNSET_TIME) else text


def execution_from(item: Mapping[str, Any]) -> Execution:
    return Execution(
        id=int(item["id"]), status=str(item.get("status") or ""),
        trigger=str(item.get("trigger") or ""), status_text=str(item.get("status_text") or ""),
        start_time=_time(item.get("start_time")), end_time=_time(item.get("end_time")),
        total=int(item.get("total") or 0), succeeded=int(item.get("succeed") or 0),
        failed=int(item.get("failed") or 0), in_progress=int(item.get("in_progress") or 0),
        stopped=int(item.get("stopped") or 0))


def error_line(log: str, limit: int = 300) -> str:
    """The last line of a task log that reports an error (else its last line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fail" in line.lower()]
    chosen = (errors or lines or [""])[-1]
    return chosen[:limit]


# --- registries: the other side of a policy as a Harbor endpoint --------------------

# The registry types Harbor 2.12 has adapters for (src/pkg/reg/manager.go); any other
# type is a 500 from Harbor, so it is refused before it gets there.
REGISTRY_TYPES = ("harbor", "docker-registry", "docker-hub", "quay", "gitlab", "github-ghcr",
                  "aws-ecr", "google-gcr", "azure-acr", "ali-acr", "huawei-SWR",
                  "tencent-tcr", "volcengine-cr", "jfrog-artifactory", "dtr")
REGISTRY_NAME_MAX = 64  # Harbor: "the max length of name is 64"


def registry_name(remote: Remote) -> str:
    """Deterministic: one registry per remote ("ns/name" of a DatabaseServer, or of a
    plain registry declared in a policy), within Harbor's 64 characters."""
    name = "dbops." + remote.settings.key.replace("/", ".")
    if len(name) <= REGISTRY_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:REGISTRY_NAME_MAX - 9].rstrip('.-')}-{digest}"


def registry_credential(remote: Remote) -> dict[str, str] | None:
    settings = remote.settings
    creds: Credentials = settings.credentials
    match settings.auth_type:
        case "none":
            return None
        case "basic" | "session":
            return {"type": "basic", "access_key": creds.username,
                    "access_secret": creds.password}
        case "bearer":
            return {"type": "oauth", "access_key": creds.username,
                    "access_secret": creds.token or creds.password}
    raise SpecError(f"spec.auth.type {settings.auth_type!r} of DatabaseServer "
                    f"{remote.name!r} cannot be used as a Harbor registry credential "
                    f"(allowed: none, basic, bearer)")


def registry_body(remote: Remote) -> dict[str, Any]:
    """Shared by every policy (in the namespace) that replicates with `remote`; marked
    with the DatabaseServer or declared registry it stands for."""
    body: dict[str, Any] = {
        "name": registry_name(remote), "type": remote.registry_type,
        "url": remote.settings.url.rstrip("/"),
        "insecure": remote.settings.insecure_skip_verify,
        "description": owner_marker(remote.settings.key)}
    credential = registry_credential(remote)
    if credential is not None:
        body["credential"] = credential
    return body


def registry_serves(remote: Remote, registry: Mapping[str, Any]) -> bool:
    """Whether an existing registry points where `remote` does: same type, URL and TLS
    choice (its masked credential cannot be compared)."""
    return (str(registry.get("type") or "") == remote.registry_type
            and str(registry.get("url") or "").rstrip("/") == remote.settings.url.rstrip("/")
            and bool(registry.get("insecure")) == remote.settings.insecure_skip_verify)


def registry_update(body: Mapping[str, Any]) -> dict[str, Any]:
    """Harbor's RegistryUpdate (flat credential fields) from a registry body."""
    credential = body.get("credential") or {}
    return {"name": body["name"], "description": body.get("description", ""),
            "url": body["url"], "insecure": body.get("insecure", False),
            "credential_type": credential.get("type", ""),
            "access_key": credential.get("access_key", ""),
            "access_secret": credential.get("access_secret", "")}


def registry_differences(desired: Mapping[str, Any], observed: Mapping[str, Any]
                         ) -> list[str]:
    """What differs besides the secret (Harbor masks it on read)."""
    diff = [k for k in ("url", "type") if desired.get(k) != observed.get(k)]
    if bool(desired.get("insecure")) != bool(observed.get("insecure")):  # false is omitted
        diff.append("insecure")
    want = desired.get("credential") or {}
    have = observed.get("credential") or {}
    if want.get("access_key", "") != (have.get("access_key") or "") or \
            (want.get("type") or "") != ((have.get("type") or "") if want else ""):
        diff.append("credential")
    return diff
