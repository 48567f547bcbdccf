"""HTTP: Harbor's /api/v2.0 routes over a Store, with Harbor's auth, paging, error bodies
and X-Request-Id, plus injected faults and the request log; and the /_sim control API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simkit.auth import basic_credentials
from simkit.faults import RequestRecord

from . import query, views
from .errors import (
    CODE_BY_STATUS,
    HarborError,
    bad_request,
    error_body,
    forbidden,
    not_found,
    precondition,
    unauthorized,
)
from .store import REGISTRY_TYPES, Project, Registry, Robot, Store, validate_http_url

API = "/api/v2.0"
log = logging.getLogger("harbor_sim")


@dataclass(frozen=True)
class Principal:
    kind: str  # "admin" | "robot" | "anonymous"
    robot: Robot | None = None

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"


def authenticate(store: Store, request: Request) -> Principal:
    """Wrong credentials make the request anonymous, as in Harbor's security middleware."""
    credentials = basic_credentials(request)
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


NEWEST_FIRST = [("creation_time", True), ("id", True)]
BY_NAME = [("name", False)]
STARTED_LAST_FIRST = [("start_time", True), ("id", True)]


def list_response(ctx: Ctx, rows: Sequence[tuple[dict[str, Any], Any]],
                  render: Callable[[Any], dict[str, Any]],
                  extra: Mapping[str, query.Matcher] | None = None,
                  use_q: bool = True,
                  default_order: list[tuple[str, bool]] | None = None) -> Response:
    """Filter (q and `extra`), sort, page; answer with X-Total-Count and Link.
    `rows` pairs each entity's filterable/sortable fields with the entity itself.
    Default orders as seen on Harbor 2.12.4: policies newest first, executions and
    tasks by start time (newest first), projects and robots by name, registries in no
    order at all (the database's: an updated row moves to the end), given as []."""
    page = query.parse_page(ctx.params)
    keywords = query.parse_q(ctx.params.get("q")) if use_q else {}
    keywords.update(extra or {})
    by_fields = {id(fields): entity for fields, entity in rows}
    kept = query.filter_items([fields for fields, _ in rows], keywords)
    ordered = query.sort_items(kept, query.parse_sort(ctx.params.get("sort")),
                               default=NEWEST_FIRST if default_order is None
                               else default_order)
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


async def get_api_version(ctx: Ctx) -> Response:
    """`GET /api/version` (anonymous): what a remote Harbor's adapter reads first."""
    return json_response({"version": "v2.0"})


async def get_service_token(ctx: Ctx) -> Response:
    """The registry token service. Wrong credentials are not refused (BACKENDS.md §2a):
    the answer is 200 with a token for the anonymous user, which grants no actions."""
    principal = ctx.principal
    subject = "" if principal.kind == "anonymous" else (
        principal.robot.full_name if principal.robot else ctx.store.username)
    token = ctx.store.issue_registry_token(subject)
    now = views.fmt_time(ctx.store.now())
    return json_response({"token": token, "access_token": token, "expires_in": 1800,
                          "issued_at": now})


async def get_registry_base(ctx: Ctx) -> Response:
    """`GET /v2/`: 200 for an authenticated caller (Basic, or a Bearer token the token
    service issued to a real user or robot), else 401 with the Bearer challenge."""
    header = ctx.request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    bearer_ok = scheme.lower() == "bearer" and bool(ctx.store.registry_token_subject(value))
    if ctx.principal.authenticated or bearer_ok:
        return json_response({})
    challenge = (f'Bearer realm="{ctx.store.url}/service/token",'
                 f'service="harbor-registry"')
    return Response(json.dumps(error_body("UNAUTHORIZED", "authentication required")) + "\n",
                    status_code=401, headers={"WWW-Authenticate": challenge},
                    media_type="application/json; charset=utf-8")


async def get_current_user(ctx: Ctx) -> Response:
    """Proves credentials: 401 for a wrong password (anonymous), 412 for a robot."""
    if ctx.principal.kind == "robot":
        raise precondition("get current user not available for security context: robot")
    if ctx.principal.kind != "admin":
        raise unauthorized()
    return json_response(views.current_user(ctx.store))


# ------------------------------------------------------------------- projects


def _project_fields(store: Store, project: Project) -> dict[str, Any]:
    return {"project_id": project.id, "id": project.id, "name": project.name,
            "public": project.public, "creation_time": project.created,
            "update_time": project.updated}


async def list_projects(ctx: Ctx) -> Response:
    store = ctx.store
    admin = ctx.principal.kind == "admin"
    robot = ctx.principal.robot
    with store.lock:
        # a robot also sees every project it has any permission on (seen on 2.12.4)
        projects = [p for p in store.projects.values() if admin or p.public or (
            robot is not None and store.robot_has_any_permission(robot, p))]
        rows = [(_project_fields(store, p), p) for p in projects]
        extra: dict[str, query.Matcher] = {}
        if ctx.params.get("name"):
            extra["name"] = query.Fuzzy(ctx.params["name"])
        if ctx.params.get("public") is not None:
            extra["public"] = query.Exact(ctx.params["public"].lower())
        return list_response(ctx, rows, lambda p: views.project(store, p, admin), extra,
                             default_order=BY_NAME)


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


def _readable_project(ctx: Ctx, ref: str, resource: str, action: str) -> Project:
    """RequireProjectAccess(resource:action) then lookup: an unknown project is 404 for
    the admin (`project nosuch not found`), 403 for a robot, 401 for anonymous. Anyone
    may read a public project; a robot needs the permission itself: `project:read` for
    the project, `repository:list` for its repositories."""
    is_name = ctx.request.headers.get("x-is-resource-name", "").lower() == "true"
    project = ctx.store.project_by_ref(ref, is_name)
    principal = ctx.principal
    if principal.kind == "admin":
        if project is None:
            raise not_found(f"project {ref} not found")
        return project
    allowed = project is not None and (project.public or (
        principal.robot is not None
        and ctx.store.robot_may(principal.robot, project, resource, action)))
    if allowed and project is not None:
        return project
    if not principal.authenticated:
        raise unauthorized()
    raise forbidden()


async def get_project(ctx: Ctx) -> Response:
    project = _readable_project(ctx, ctx.request.path_params["ref"], "project", "read")
    return json_response(views.project(ctx.store, project, ctx.principal.kind == "admin"))


async def list_repositories(ctx: Ctx) -> Response:
    project = _readable_project(ctx, ctx.request.path_params["ref"], "repository", "list")
    entries = ctx.store.repositories(project)
    rows = [(entry, entry) for entry in entries]
    return list_response(ctx, rows, views.repository)


# ----------------------------------------------------------------- registries


CONNECT_TIMEOUT = 2.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _bearer_challenge(response: httpx.Response) -> tuple[str, str] | None:
    """(realm, service) of a `WWW-Authenticate: Bearer realm="...",service="..."`."""
    header = response.headers.get("www-authenticate", "")
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return (params["realm"], params.get("service", "")) if "realm" in params else None


async def _ping(client: httpx.AsyncClient, url: str, auth: tuple[str, str] | None) -> int:
    """The status of `GET {url}/v2/` as Harbor's registry client sees it: with
    credentials it follows a Bearer challenge through the token service; 0 when the
    registry cannot be reached."""
    try:
        response = await client.get(f"{url}/v2/", auth=auth)
        challenge = _bearer_challenge(response)
        if response.status_code != 401 or auth is None or challenge is None:
            return response.status_code
        realm, service = challenge
        token = await client.get(realm, params={"service": service}, auth=auth)
        if token.status_code != 200:
            return token.status_code
        bearer = str(token.json().get("token") or "")
        response = await client.get(f"{url}/v2/",
                                    headers={"Authorization": f"Bearer {bearer}"})
        return response.status_code
    except (httpx.HTTPError, ValueError):
        return 0


async def check_registry(store: Store, registry: Registry) -> None:
    """The registry controller's health check before a create or update, per type:

    - `harbor`: creating the adapter reads `{url}/api/version` first; a remote that
      cannot be reached makes that an internal error (500 "internal server error": an
      unreachable URL is 500, BACKENDS.md §2a), not an unhealthy registry.
    - every type: the native adapter pings `{url}/v2/`. With credentials the ping must
      succeed (200, after the token service for a Bearer challenge), so wrong
      credentials are 400 "the registry is unhealthy"; without credentials only the
      connection counts (401/403 are fine). A registry that does not answer is
      unhealthy too, except a `harbor` one (see above).
    """
    if not store.settings.check_registry_health:
        return
    url = registry.url.rstrip("/")
    unreachable = store.is_unreachable(url)
    auth = (registry.access_key, registry.access_secret) if registry.access_key else None
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT, verify=not registry.insecure,
                                 follow_redirects=True) as client:
        if registry.type == "harbor":
            try:
                if unreachable:
                    raise httpx.ConnectError("marked unreachable")
                version = await client.get(f"{url}/api/version", auth=auth)
            except httpx.HTTPError as exc:
                log.info("harbor-sim: registry %s: GET /api/version: %s", url, exc)
                raise HarborError("UNKNOWN", "internal server error") from None
            if version.status_code >= 500:
                raise HarborError("UNKNOWN", "internal server error")
        status = 0 if unreachable else await _ping(client, url, auth)
    healthy = status == 200 or (auth is None and status in (401, 403))
    if not healthy:
        raise bad_request("the registry is unhealthy")


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
        return list_response(ctx, rows, lambda r: views.registry(store, r), extra,
                             default_order=[])


async def create_registry(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "registry")
    registry = ctx.store.prepare_registry(body)
    await check_registry(ctx.store, registry)
    registry = ctx.store.save_registry(registry)
    return created(f"{API}/registries/{registry.id}")


async def get_registry(ctx: Ctx) -> Response:
    return json_response(views.registry(ctx.store, ctx.store.get_registry(ctx.path_int("id"))))


async def update_registry(ctx: Ctx) -> Response:
    body = await read_json(ctx.request, "registry")
    current = ctx.store.get_registry(ctx.path_int("id"))
    registry = ctx.store.prepare_registry(body, base=current)
    await check_registry(ctx.store, registry)
    ctx.store.save_registry(registry)
    return Response(status_code=200)


async def delete_registry(ctx: Ctx) -> Response:
    ctx.store.delete_registry(ctx.path_int("id"))
    return Response(status_code=200)


async def ping_registry(ctx: Ctx) -> Response:
    """RegistryPing: `{id}` plus optional overrides (`type, url, credential_type,
    access_key, access_secret, insecure`), or a registry given in full; 200 when the
    check passes, 400 "the registry is unhealthy" / 500 as for a create."""
    body = await read_json(ctx.request, "registry")
    base: Registry | None = None
    if body.get("id") is not None:
        if isinstance(body["id"], bool) or not isinstance(body["id"], int):
            raise bad_request("parsing registry body from \"\" failed: id")
        base = ctx.store.get_registry(body["id"])
    registry_type = body.get("type") if isinstance(body.get("type"), str) else \
        (base.type if base else "")
    url = body.get("url") if isinstance(body.get("url"), str) else (base.url if base else "")
    if not registry_type or not url:
        raise bad_request("type or url cannot be empty")
    if registry_type not in REGISTRY_TYPES:
        raise HarborError("UNKNOWN", "internal server error")
    probe = Registry(**vars(base)) if base else ctx.store.prepare_registry(
        {"name": "ping", "type": registry_type, "url": url})
    probe.type, probe.url = registry_type, validate_http_url(url)
    for key in ("access_key", "access_secret"):
        if isinstance(body.get(key), str):
            setattr(probe, key, body[key])
    if isinstance(body.get("insecure"), bool):
        probe.insecure = body["insecure"]
    await check_registry(ctx.store, probe)
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
                             use_q=False, default_order=STARTED_LAST_FIRST)


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
    return json_response(None)  # Harbor answers 200 with the body `null`


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
        return list_response(ctx, rows, views.task, extra, use_q=False,
                             default_order=STARTED_LAST_FIRST)


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
        return list_response(ctx, rows, views.robot, extra, default_order=BY_NAME)


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
            if body.get("status_refresh_seconds") is not None:
                ctx.store.set_status_refresh_seconds(float(body["status_refresh_seconds"]))
        except (TypeError, ValueError) as exc:
            raise bad_request(str(exc)) from exc
    return json_response(vars(ctx.store.settings).copy())


async def sim_stuck(ctx: Ctx) -> Response:
    """POST `{execution_id}` (or `{}`: the next execution started) never closes;
    DELETE lets every stuck execution close."""
    if ctx.request.method == "DELETE":
        ctx.store.release_stuck()
        return Response(status_code=200)
    body = await read_json(ctx.request, "stuck", required=False)
    execution_id = body.get("execution_id")
    if execution_id is None:
        ctx.store.stick_next_execution()
    elif isinstance(execution_id, bool) or not isinstance(execution_id, int):
        raise bad_request("execution_id must be an integer")
    else:
        ctx.store.set_stuck(execution_id, True)
    return Response(status_code=200)


async def sim_state(ctx: Ctx) -> Response:
    return json_response(ctx.store.snapshot())


# ---------------------------------------------------------------- wiring

# auth: "public" (anyone), "admin" (admin only; robots 403), "project" (admin, robots
# with pull, anonymous on public projects; checked in the handler), "sim" (admin, /_sim)
ROUTES: list[tuple[str, list[str], Handler, str]] = [
    ("/api/version", ["GET"], get_api_version, "public"),
    ("/service/token", ["GET"], get_service_token, "public"),
    ("/v2/", ["GET"], get_registry_base, "public"),
    (f"{API}/systeminfo", ["GET"], get_systeminfo, "public"),
    (f"{API}/health", ["GET"], get_health, "public"),
    (f"{API}/ping", ["GET"], get_ping, "public"),
    (f"{API}/users/current", ["GET"], get_current_user, "public"),
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
    ("/_sim/stuck", ["POST", "DELETE"], sim_stuck, "sim"),
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


HARBOR_PREFIXES = ("/api/", "/service/", "/v2/")
SESSION_COOKIE = "sid"
CSRF_COOKIE = "_gorilla_csrf"
CSRF_HEADER = "X-Harbor-CSRF-Token"


class HarborMiddleware:
    """For Harbor's own paths: the `sid` session cookie and gorilla/csrf, X-Request-Id,
    injected latency and faults, the request log.

    An answer to a request without a session sets a new `sid` (beego's session; also an
    unknown `sid` is replaced). A request that carries any `sid` counts as a browser
    session (server/middleware/session checks only the cookie's presence), so gorilla/csrf
    applies: every answer sets `_gorilla_csrf` and `X-Harbor-CSRF-Token`, and a write
    (POST, PUT, PATCH, DELETE) needs that header with the token of the `_gorilla_csrf`
    cookie it sends: without the header 403 "CSRF token not found in request", with a
    wrong one 403 "CSRF token invalid" (BACKENDS.md §2a, and seen on 2.12.4). The 403
    does not set `sid`. API clients with Basic auth must not keep cookies.
    """

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(HARBOR_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        method, path = scope["method"], scope["path"]
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        credentials = basic_credentials(request)
        session = request.cookies.get(SESSION_COOKIE) or None
        new_session = None if session and self.store.known_session(session) \
            else self.store.new_session()
        csrf_cookie, csrf_token = (self.store.csrf_for(request.cookies.get(CSRF_COOKIE))
                                   if session else (None, None))
        refusal = self._csrf_refusal(request, method, session is not None)
        recorded = [False]

        def record(status: int) -> None:
            if not recorded[0]:
                recorded[0] = True
                self.store.requests.add(RequestRecord(
                    method=method, path=path, query=scope.get("query_string", b"").decode(),
                    status=status, time=views.fmt_time(self.store.now()),
                    user=credentials[0] if credentials else "", session=session is not None))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                if new_session and refusal is None:
                    headers.append((b"set-cookie", f"{SESSION_COOKIE}={new_session}; Path=/; "
                                                   f"HttpOnly".encode("latin-1")))
                if csrf_cookie and csrf_token:
                    headers.append((b"set-cookie", f"{CSRF_COOKIE}={csrf_cookie}; Path=/; "
                                                   f"Max-Age=43200; HttpOnly; "
                                                   f"SameSite=Strict".encode("latin-1")))
                    headers.append((CSRF_HEADER.lower().encode(), csrf_token.encode()))
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
                await response(scope, receive, send_with_headers)
            elif refusal is not None:
                await error_response(refusal)(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            record(500)

    def _csrf_refusal(self, request: Request, method: str, in_session: bool
                      ) -> HarborError | None:
        """gorilla/csrf as Harbor applies it: only to requests that carry a session."""
        if not in_session or method in SAFE_METHODS:
            return None
        given = request.headers.get(CSRF_HEADER)
        if not given:
            return forbidden("CSRF token not found in request")
        if not self.store.csrf_valid(request.cookies.get(CSRF_COOKIE), given):
            return forbidden("CSRF token invalid")
        return None


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
