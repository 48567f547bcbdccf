"""HTTP: Harbor's /api/v2.0 routes over a Store, with Harbor's auth, paging, error bodies
and X-Request-Id, plus injected faults and the request log; and the /_sim control API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import query, views
from .errors import (
    CODE_BY_STATUS,
    HarborError,
    bad_request,
    error_body,
    forbidden,
    not_found,
    unauthorized,
)
from .faults import RequestRecord
from .store import REGISTRY_TYPES, Project, Robot, Store, validate_http_url

API = "/api/v2.0"
log = logging.getLogger("harbor_sim")


@dataclass(frozen=True)
class Principal:
    kind: str  # "admin" | "robot" | "anonymous"
    robot: Robot | None = None

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        username, sep, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


def authenticate(store: Store, request: Request) -> Principal:
    """Wrong credentials make the request anonymous, as in Harbor's security middleware."""
    credentials = _basic_credentials(request)
    if credentials is None:
        return Principal("anonymous")
    username, password = credentials
    if username == store.username and password == store.password:
        return Principal("admin")
    robot = store.authenticate_robot(username, password)
    if robot is not None:
        return Principal("robot", robot)
    return Principal("anonymous")


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> Response:
    return JSONResponse(data, status_code=status, headers=dict(headers or {}))


def error_response(error: HarborError, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(error.body()) + "\n", status_code=error.status,
                    headers=dict(headers or {}),
                    media_type="application/json; charset=utf-8")


async def read_json(request: Request, name: str, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise HarborError("UNPROCESSABLE_ENTITY",
                              f"validation failure list:\n{name} in body is required")
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"parsing {name} body from \"\" failed, because {exc}") from exc
    if not isinstance(data, dict):
        raise bad_request(f"parsing {name} body from \"\" failed, because json: cannot "
                          f"unmarshal {type(data).__name__} into Go value")
    return data


@dataclass
class Ctx:
    request: Request
    store: Store
    principal: Principal

    def path_int(self, name: str) -> int:
        return int(self.request.path_params[name])

    @property
    def params(self) -> Mapping[str, str]:
        return self.request.query_params


Handler = Callable[[Ctx], Awaitable[Response]]


def list_response(ctx: Ctx, rows: Sequence[tuple[dict[str, Any], Any]],
                  render: Callable[[Any], dict[str, Any]],
                  extra: Mapping[str, query.Matcher] | None = None,
                  use_q: bool = True) -> Response:
    """Filter (q and `extra`), sort, page; answer with X-Total-Count and Link.
    `rows` pairs each entity's filterable/sortable fields with the entity itself."""
    page = query.parse_page(ctx.params)
    keywords = query.parse_q(ctx.params.get("q")) if use_q else {}
    keywords.update(extra or {})
    by_fields = {id(fields): entity for fields, entity in rows}
    kept = query.filter_items([fields for fields, _ in rows], keywords)
    ordered = query.sort_items(kept, query.parse_sort(ctx.params.get("sort")),
                               default=[("creation_time", True), ("id", True)])
    body = [render(by_fields[id(fields)]) for fields in query.paginate(ordered, page)]
    headers = {"X-Total-Count": str(len(ordered))}
    link = query.links(ctx.request.url.path, ctx.request.query_params.multi_items(),
                       len(ordered), page)
    if link:
        headers["Link"] = link
    return json_response(body, headers=headers)


def created(location: str, body: Any = None) -> Response:
    if body is None:
        return Response(status_code=201, headers={"Location": location})
    return json_response(body, status=201, headers={"Location": location})


# --------------------------------------------------------------------- system


async def get_systeminfo(ctx: Ctx) -> Response:
    return json_response(views.system_info(ctx.store, ctx.principal.authenticated))


async def get_health(ctx: Ctx) -> Response:
    return json_response(views.health())


async def get_ping(ctx: Ctx) -> Response:
    return PlainTextResponse("Pong")


async def get_current_user(ctx: Ctx) -> Response:
    return json_response(views.current_user(ctx.store))


# ------------------------------------------------------------------- projects


def _project_fields(store: Store, project: Project) -> dict[str, Any]:
    return {"project_id": project.id, "id": project.id, "name": project.name,
            "public": project.public, "creation_time": project.created,
            "update_time": project.updated}


async def list_projects(ctx: Ctx) -> Response:
    store = ctx.store
    admin = ctx.principal.kind == "admin"
    with store.lock:
        projects = [p for p in store.projects.values() if admin or p.public]
        rows = [(_project_fields(store, p), p) for p in projects]
        extra: dict[str, query.Matcher] = {}
        if ctx.params.get("name"):
            extra["name"] = query.Fuzzy(ctx.params["name"])
        if ctx.params.get("public") is not None:
            extra["public"] = query.Exact(ctx.params["public"].lower())
        return list_response(ctx, rows, lambda p: views.project(store, p, admin), extra)


async def head_projects(ctx: Ctx) -> Response:
    name = ctx.params.get("project_name")
    if not name:
        raise HarborError("UNPROCESSABLE_ENTITY",
                          "validation failure list:\nproject_name in query is required")
    if ctx.store.project_by_name(name) is None:
        raise not_found(f"project {name} not found")
    return Response(status_code=200)


async def create_project(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "project")
    project = ctx.store.create_project(body)
    in_location = ctx.request.headers.get("x-resource-name-in-location", "").lower() == "true"
    ref = project.name if in_location else str(project.id)
    return created(f"{API}/projects/{ref}")


def _readable_project(ctx: Ctx, ref: str) -> Project:
    """RequireProjectAccess then lookup: an unknown project *name* is 403 (Harbor checks
    the permission before the existence), an unknown id is 404 for the admin."""
    is_name = ctx.request.headers.get("x-is-resource-name", "").lower() == "true"
    project = ctx.store.project_by_ref(ref, is_name)
    principal = ctx.principal
    if principal.kind == "admin":
        if project is None:
            if not is_name and ref.isdigit():
                raise not_found(f"project {ref} not found")
            raise forbidden()
        return project
    allowed = project is not None and (project.public or (
        principal.robot is not None and ctx.store.robot_can_pull(principal.robot, project)))
    if allowed and project is not None:
        return project
    if not principal.authenticated:
        raise unauthorized()
    raise forbidden()


async def get_project(ctx: Ctx) -> Response:
    project = _readable_project(ctx, ctx.request.path_params["ref"])
    return json_response(views.project(ctx.store, project, ctx.principal.kind == "admin"))


async def list_repositories(ctx: Ctx) -> Response:
    project = _readable_project(ctx, ctx.request.path_params["ref"])
    entries = ctx.store.repositories(project)
    rows = [(entry, entry) for entry in entries]
    return list_response(ctx, rows, views.repository)


# ----------------------------------------------------------------- registries


async def registry_healthy(store: Store, url: str) -> bool:
    """Unhealthy when marked unreachable; the simulator itself is healthy; otherwise the
    URL's host:port must accept a TCP connection (unless the check is switched off)."""
    if store.is_unreachable(url):
        return False
    if url.rstrip("/") == store.url.rstrip("/") or not store.settings.check_registry_health:
        return True
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _registry_fields(store: Store, registry: Any) -> dict[str, Any]:
    return {"id": registry.id, "name": registry.name, "type": registry.type,
            "url": registry.url, "description": registry.description,
            "status": store.registry_status(registry), "creation_time": registry.created,
            "update_time": registry.updated}


async def list_registries(ctx: Ctx) -> Response:
    store = ctx.store
    with store.lock:
        rows = [(_registry_fields(store, r), r) for r in store.registries.values()]
        extra = {"name": query.Fuzzy(ctx.params["name"])} if ctx.params.get("name") else {}
        return list_response(ctx, rows, lambda r: views.registry(store, r), extra)


async def create_registry(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "registry")
    registry = ctx.store.prepare_registry(body)
    if not await registry_healthy(ctx.store, registry.url):
        raise bad_request("the registry is unhealthy")
    registry = ctx.store.save_registry(registry)
    return created(f"{API}/registries/{registry.id}")


async def get_registry(ctx: Ctx) -> Response:
    return json_response(views.registry(ctx.store, ctx.store.get_registry(ctx.path_int("id"))))


async def update_registry(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "registry")
    current = ctx.store.get_registry(ctx.path_int("id"))
    registry = ctx.store.prepare_registry(body, base=current)
    if not await registry_healthy(ctx.store, registry.url):
        raise bad_request("the registry is unhealthy")
    ctx.store.save_registry(registry)
    return Response(status_code=200)


async def delete_registry(ctx: Ctx) -> Response:
    ctx.store.delete_registry(ctx.path_int("id"))
    return Response(status_code=200)


async def ping_registry(ctx: Ctx) -> Response:
    """RegistryPing: `{id}` and/or `{type, url, credential_type, access_key,
    access_secret, insecure}`; 200 when healthy, 400 otherwise."""
    body = await read_json(ctx.request, "registry")
    registry_type, url = "", ""
    if body.get("id") is not None:
        if not isinstance(body["id"], int):
            raise bad_request("parsing registry body from \"\" failed: id")
        existing = ctx.store.get_registry(body["id"])
        registry_type, url = existing.type, existing.url
    if isinstance(body.get("type"), str):
        registry_type = body["type"]
    if isinstance(body.get("url"), str):
        url = validate_http_url(body["url"])
    if not registry_type or not url:
        raise bad_request("type or url cannot be empty")
    if registry_type not in REGISTRY_TYPES:
        raise HarborError("UNKNOWN", "internal server error")
    if not await registry_healthy(ctx.store, url):
        raise bad_request("the registry is unhealthy")
    return Response(status_code=200)


# ------------------------------------------------------------------- policies


def _policy_fields(policy: Any) -> dict[str, Any]:
    return {"id": policy.id, "name": policy.name, "description": policy.description,
            "enabled": policy.enabled, "src_registry_id": policy.src_registry_id,
            "dest_registry_id": policy.dest_registry_id,
            "creation_time": policy.created, "update_time": policy.updated}


async def list_policies(ctx: Ctx) -> Response:
    store = ctx.store
    with store.lock:
        rows = [(_policy_fields(p), p) for p in store.policies.values()]
        extra = {"name": query.Fuzzy(ctx.params["name"])} if ctx.params.get("name") else {}
        return list_response(ctx, rows, lambda p: views.policy(store, p), extra)


async def create_policy(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "policy")
    policy = ctx.store.create_policy(body, ctx.store.username)
    return created(f"{API}/replication/policies/{policy.id}")


async def get_policy(ctx: Ctx) -> Response:
    store = ctx.store
    with store.lock:
        return json_response(views.policy(store, store.get_policy(ctx.path_int("id"))))


async def update_policy(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "policy")
    ctx.store.update_policy(ctx.path_int("id"), body)
    return Response(status_code=200)


async def delete_policy(ctx: Ctx) -> Response:
    ctx.store.delete_policy(ctx.path_int("id"))
    return Response(status_code=200)


# ----------------------------------------------------------------- executions

_EXEC_STATUSES = {"InProgress", "Succeed", "Failed", "Stopped"}


async def list_executions(ctx: Ctx) -> Response:
    """policy_id, status and trigger are exact filters; Harbor takes no `q` here."""
    store = ctx.store
    with store.lock:
        rows = []
        for execution in store.executions.values():
            status, ended = store.execution_status(execution)
            rows.append(({"id": execution.id, "policy_id": execution.policy_id,
                          "status": status, "trigger": execution.trigger,
                          "start_time": execution.started, "end_time": ended},
                         execution))
        extra: dict[str, query.Matcher] = {}
        policy_id = ctx.params.get("policy_id")
        if policy_id:
            if not policy_id.lstrip("-").isdigit():
                raise HarborError("UNPROCESSABLE_ENTITY", "validation failure list:\n"
                                  f"policy_id in query must be of type int64: \"{policy_id}\"")
            extra["policy_id"] = query.Exact(int(policy_id))
        for name in ("status", "trigger"):
            if ctx.params.get(name):
                extra[name] = query.Exact(ctx.params[name])
        return list_response(ctx, rows, lambda e: views.execution(store, e), extra,
                             use_q=False)


async def start_execution(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "execution")
    policy_id = body.get("policy_id")
    if isinstance(policy_id, bool) or not isinstance(policy_id, int):
        raise bad_request("parsing execution body from \"\" failed: policy_id")
    trigger = "scheduled" if ctx.params.get("trigger") == "scheduled" else "manual"
    execution = ctx.store.start_execution(policy_id, trigger)
    return created(f"{API}/replication/executions/{execution.id}")


async def get_execution(ctx: Ctx) -> Response:
    store = ctx.store
    with store.lock:
        return json_response(views.execution(store, store.get_execution(ctx.path_int("id"))))


async def stop_execution(ctx: Ctx) -> Response:
    ctx.store.stop_execution(ctx.path_int("id"))
    return Response(status_code=200)


async def list_tasks(ctx: Ctx) -> Response:
    store = ctx.store
    with store.lock:
        execution = store.get_execution(ctx.path_int("id"))
        tasks = store.execution_tasks(execution)
        rows = [({"id": t.id, "status": t.status, "resource_type": t.resource_type,
                  "operation": t.operation, "creation_time": t.created,
                  "start_time": t.started, "end_time": t.ended}, t) for t in tasks]
        extra: dict[str, query.Matcher] = {}
        if ctx.params.get("status"):
            extra["status"] = query.Exact(ctx.params["status"])
        if ctx.params.get("resource_type"):
            extra["resource_type"] = query.Exact(ctx.params["resource_type"])
        return list_response(ctx, rows, views.task, extra, use_q=False)


async def get_task_log(ctx: Ctx) -> Response:
    store = ctx.store
    with store.lock:
        task = store.get_task(ctx.path_int("id"), ctx.path_int("task_id"))
        return PlainTextResponse(store.task_log(task))


# --------------------------------------------------------------------- robots


def _robot_fields(robot: Robot) -> dict[str, Any]:
    return {"id": robot.id, "name": robot.name, "project_id": robot.project_id,
            "disabled": robot.disabled, "creation_time": robot.created,
            "update_time": robot.updated}


async def list_robots(ctx: Ctx) -> Response:
    """Harbor's ListRobot: without a `Level` keyword (exactly that key) only system robots
    (ProjectID 0) are listed; `Level=project` needs `ProjectID`. `name` matches the stored
    name, without the `robot$` prefix."""
    store = ctx.store
    keywords = query.parse_q(ctx.params.get("q"))
    level = keywords.pop("Level", None)
    extra: dict[str, query.Matcher] = {}
    if level is None:
        extra["project_id"] = query.Exact(0)
    else:
        level_value = level.value if isinstance(level, query.Exact) else None
        if level_value not in ("system", "project"):
            raise bad_request("bad request error level input")
        if level_value == "project":
            project_id = keywords.get("ProjectID")
            if project_id is None:
                raise bad_request("must with project ID when to query project robots")
            if not isinstance(project_id, query.Exact) or \
                    not str(project_id.value).isdigit():
                raise bad_request("Project ID must be int type.")
    with store.lock:
        rows = [(_robot_fields(r), r) for r in store.robots.values()]
        return list_response(ctx, rows, views.robot, extra)


async def create_robot(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "robot")
    robot, secret = ctx.store.create_robot(body)
    return created(f"{API}/robots/{robot.id}", views.robot_created(robot, secret))


async def get_robot(ctx: Ctx) -> Response:
    return json_response(views.robot(ctx.store.get_robot(ctx.path_int("id"))))


async def update_robot(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "robot")
    ctx.store.update_robot(ctx.path_int("id"), body)
    return Response(status_code=200)


async def delete_robot(ctx: Ctx) -> Response:
    ctx.store.delete_robot(ctx.path_int("id"))
    return Response(status_code=200)


async def refresh_robot_secret(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "robotSec")
    secret = body.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise bad_request("parsing robotSec body from \"\" failed: secret")
    generated = ctx.store.refresh_robot_secret(ctx.path_int("id"), secret)
    return json_response({"secret": generated} if generated else {})


# --------------------------------------------------------------- control API


async def sim_requests(ctx: Ctx) -> Response:
    if ctx.request.method == "DELETE":
        ctx.store.requests.clear()
        return Response(status_code=200)
    records = ctx.store.requests.list(ctx.params.get("method"), ctx.params.get("path_prefix"))
    return json_response([asdict(r) for r in records])


async def sim_faults(ctx: Ctx) -> Response:
    if ctx.request.method == "DELETE":
        ctx.store.faults.clear()
        return Response(status_code=200)
    body = await read_json(ctx.request, "fault")
    try:
        if body.get("latency") is not None:
            latency = ctx.store.faults.add_latency(
                float(body["latency"]), body.get("count"), body.get("path_prefix"),
                body.get("method"))
            return json_response(asdict(latency), status=201)
        fault = ctx.store.faults.add_fault(
            int(body.get("status", 503)), int(body.get("count", 1)), body.get("retry_after"),
            body.get("path_prefix"), body.get("method"))
    except (TypeError, ValueError) as exc:
        raise bad_request(str(exc)) from exc
    return json_response(asdict(fault), status=201)


async def sim_artifacts(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "artifact")
    project, repository, tag = (str(body.get(k, "")) for k in ("project", "repository", "tag"))
    if ctx.request.method == "DELETE":
        executions = ctx.store.delete_artifact(project, repository, tag)
        return json_response({"executions": [e.id for e in executions]})
    executions = ctx.store.push_artifact(project, repository, tag)
    return json_response({"executions": [e.id for e in executions]}, status=201)


async def sim_unreachable(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "unreachable", required=ctx.request.method == "POST")
    if ctx.request.method == "DELETE":
        ctx.store.clear_unreachable(body.get("url"))
    else:
        if not body.get("url"):
            raise bad_request("url is required")
        ctx.store.mark_unreachable(str(body["url"]))
    return json_response({"unreachable": sorted(ctx.store.unreachable)})


async def sim_fail(ctx: Ctx) -> Response:
    if ctx.request.method == "DELETE":
        ctx.store.clear_failure_patterns()
    else:
        body = await read_json(ctx.request, "fail")
        if not body.get("pattern"):
            raise bad_request("pattern is required")
        ctx.store.add_failure_pattern(str(body["pattern"]))
    return json_response({"patterns": list(ctx.store.failure_patterns)})


async def sim_settings(ctx: Ctx) -> Response:
    if ctx.request.method == "POST":
        body = await read_json(ctx.request, "settings")
        try:
            if body.get("task_seconds") is not None:
                ctx.store.set_task_seconds(float(body["task_seconds"]))
            if body.get("check_registry_health") is not None:
                ctx.store.set_registry_health_check(bool(body["check_registry_health"]))
        except (TypeError, ValueError) as exc:
            raise bad_request(str(exc)) from exc
    return json_response(vars(ctx.store.settings).copy())


async def sim_state(ctx: Ctx) -> Response:
    return json_response(ctx.store.snapshot())


# ---------------------------------------------------------------- wiring

# auth: "public" (anyone), "admin" (admin only; robots 403), "project" (admin, robots
# with pull, anonymous on public projects; checked in the handler), "sim" (admin, /_sim)
ROUTES: list[tuple[str, list[str], Handler, str]] = [
    (f"{API}/systeminfo", ["GET"], get_systeminfo, "public"),
    (f"{API}/health", ["GET"], get_health, "public"),
    (f"{API}/ping", ["GET"], get_ping, "public"),
    (f"{API}/users/current", ["GET"], get_current_user, "admin"),
    (f"{API}/projects", ["GET"], list_projects, "project"),
    (f"{API}/projects", ["HEAD"], head_projects, "admin"),
    (f"{API}/projects", ["POST"], create_project, "admin"),
    (f"{API}/projects/{{ref}}", ["GET"], get_project, "project"),
    (f"{API}/projects/{{ref}}/repositories", ["GET"], list_repositories, "project"),
    (f"{API}/registries", ["GET"], list_registries, "admin"),
    (f"{API}/registries", ["POST"], create_registry, "admin"),
    (f"{API}/registries/ping", ["POST"], ping_registry, "admin"),
    (f"{API}/registries/{{id:int}}", ["GET"], get_registry, "admin"),
    (f"{API}/registries/{{id:int}}", ["PUT"], update_registry, "admin"),
    (f"{API}/registries/{{id:int}}", ["DELETE"], delete_registry, "admin"),
    (f"{API}/replication/policies", ["GET"], list_policies, "admin"),
    (f"{API}/replication/policies", ["POST"], create_policy, "admin"),
    (f"{API}/replication/policies/{{id:int}}", ["GET"], get_policy, "admin"),
    (f"{API}/replication/policies/{{id:int}}", ["PUT"], update_policy, "admin"),
    (f"{API}/replication/policies/{{id:int}}", ["DELETE"], delete_policy, "admin"),
    (f"{API}/replication/executions", ["GET"], list_executions, "admin"),
    (f"{API}/replication/executions", ["POST"], start_execution, "admin"),
    (f"{API}/replication/executions/{{id:int}}", ["GET"], get_execution, "admin"),
    (f"{API}/replication/executions/{{id:int}}", ["PUT"], stop_execution, "admin"),
    (f"{API}/replication/executions/{{id:int}}/tasks", ["GET"], list_tasks, "admin"),
    (f"{API}/replication/executions/{{id:int}}/tasks/{{task_id:int}}/log", ["GET"],
     get_task_log, "admin"),
    (f"{API}/robots", ["GET"], list_robots, "admin"),
    (f"{API}/robots", ["POST"], create_robot, "admin"),
    (f"{API}/robots/{{id:int}}", ["GET"], get_robot, "admin"),
    (f"{API}/robots/{{id:int}}", ["PUT"], update_robot, "admin"),
    (f"{API}/robots/{{id:int}}", ["DELETE"], delete_robot, "admin"),
    (f"{API}/robots/{{id:int}}", ["PATCH"], refresh_robot_secret, "admin"),
    ("/_sim/requests", ["GET", "DELETE"], sim_requests, "sim"),
    ("/_sim/faults", ["POST", "DELETE"], sim_faults, "sim"),
    ("/_sim/artifacts", ["POST", "DELETE"], sim_artifacts, "sim"),
    ("/_sim/unreachable", ["POST", "DELETE"], sim_unreachable, "sim"),
    ("/_sim/fail", ["POST", "DELETE"], sim_fail, "sim"),
    ("/_sim/settings", ["GET", "POST"], sim_settings, "sim"),
    ("/_sim/state", ["GET"], sim_state, "sim"),
]


def _endpoint(store: Store, handler: Handler, auth: str
              ) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            principal = authenticate(store, request)
            if auth in ("admin", "sim") and principal.kind != "admin":
                raise forbidden() if principal.kind == "robot" else unauthorized()
            store.advance()
            return await handler(Ctx(request, store, principal))
        except HarborError as exc:
            return error_response(exc)
        except Exception:
            log.exception("harbor-sim: %s %s failed", request.method, request.url.path)
            return error_response(HarborError("UNKNOWN", "internal server error"))

    return run


def _routes(store: Store) -> list[Route]:
    by_path: dict[str, dict[str, tuple[Handler, str]]] = {}
    for path, methods, handler, auth in ROUTES:
        for method in methods:
            by_path.setdefault(path, {})[method] = (handler, auth)
    routes = []
    for path, table in by_path.items():
        endpoints = {m: _endpoint(store, h, a) for m, (h, a) in table.items()}

        async def dispatch(request: Request, endpoints: dict[str, Callable[
                [Request], Awaitable[Response]]] = endpoints) -> Response:
            return await endpoints[request.method](request)

        routes.append(Route(path, dispatch, methods=list(table)))
    return routes


class HarborMiddleware:
    """For /api/v2.0: X-Request-Id, injected latency and faults, the request log."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        method, path = scope["method"], scope["path"]
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        credentials = _basic_credentials(request)
        recorded = [False]

        def record(status: int) -> None:
            if not recorded[0]:
                recorded[0] = True
                self.store.requests.add(RequestRecord(
                    method=method, path=path, query=scope.get("query_string", b"").decode(),
                    status=status, time=views.fmt_time(self.store.now()),
                    user=credentials[0] if credentials else ""))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
                record(message["status"])  # before the client can see the answer
            await send(message)

        try:
            delay, fault = self.store.faults.take(method, path)
            if delay:
                await asyncio.sleep(delay)  # simulated slowness, not synchronisation
            if fault is not None:
                code = CODE_BY_STATUS.get(fault.status, "UNKNOWN")
                message = ("too many requests" if fault.status == 429
                           else "internal server error" if fault.status == 500
                           else f"simulated fault {fault.status}")
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after \
                    is not None else {}
                response = Response(json.dumps(error_body(code, message)) + "\n",
                                    status_code=fault.status, headers=headers,
                                    media_type="application/json; charset=utf-8")
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            record(500)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return error_response(HarborError("METHOD_NOT_ALLOWED", "method not allowed"))
    if status == 404:
        return error_response(not_found("not found"))
    return error_response(HarborError(CODE_BY_STATUS.get(status, "UNKNOWN"), str(exc),
                                      status))


def create_app(store: Store, tick_seconds: float = 0.25) -> Starlette:
    """The ASGI app. A background tick keeps schedules firing on time while served."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store.resume()

        async def tick() -> None:
            while True:
                await asyncio.sleep(tick_seconds)
                try:
                    store.advance()
                except Exception:  # keep ticking; the next request reports problems
                    log.exception("harbor-sim: tick failed")

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    app = Starlette(routes=_routes(store), lifespan=lifespan,
                    exception_handlers={HTTPException: _not_found})
    app.add_middleware(HarborMiddleware, store=store)
    return app
