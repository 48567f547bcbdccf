"""HTTP: Eden's URLs under /eden over a Store, with Eden's auth rules and answers, the
peer protocol, injected faults and the request log; and the /_sim control API. A
background tick is the scheduler worker: due jobs run while the app is served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simkit.auth import basic_credentials
from simkit.faults import RequestRecord

from . import s3json, s3xml, sync
from .store import EdenError, Store, User, failed
from .times import iso, parse_msince

BASE = "/eden"
log = logging.getLogger("eden_sim")
AUTH_REQUIRED = EdenError(401, "Authentication Required",
                          {"WWW-Authenticate": 'Basic realm="eden"'})
# an empty object or a JSON array as an import body (seen on Eden built here)
INVALID_SOURCE = failed(400, "Invalid source")
INTERNAL_ERROR = ("<html><body><h1>Internal error</h1>Ticket issued: <a href=\"/admin/default/"
                  "ticket/eden/eden-sim\" target=\"_blank\">eden/eden-sim</a></body></html>")
_SEGMENT = re.compile(r"^(?P<name>[^.]*)(?:\.(?P<ext>[a-z0-9]+))?$")


@dataclass
class Call:
    """One request to /eden, taken apart: controller/function/args and the extension."""

    request: Request
    store: Store
    user: User | None
    parts: list[str]
    ext: str

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def params(self) -> Mapping[str, str]:
        return self.request.query_params

    def require_login(self) -> User:
        """Writes: 401 with a challenge unless the login is right (a wrong password is
        anonymous, BACKENDS.md §4)."""
        if self.user is None:
            raise AUTH_REQUIRED
        return self.user

    def require_delete_login(self) -> User:
        """DELETE with bad credentials: 404 "Operation not permitted" (BACKENDS.md §4)."""
        if self.user is None:
            raise failed(404, "Operation not permitted")
        if self.store.settings.strict_policy and not self.user.admin:
            raise EdenError(403, "Insufficient Privileges")
        return self.user

    async def json_body(self) -> Any:
        raw = await self.request.body()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise failed(400, str(exc)) from None  # Python's words, as Eden answers them


def ok(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status)


def render_error(error: EdenError) -> Response:
    if isinstance(error.body, str):
        return PlainTextResponse(error.body, status_code=error.status, headers=error.headers)
    return JSONResponse(error.body, status_code=error.status, headers=error.headers)


def filtered(rows: list[dict[str, Any]], params: Mapping[str, str]) -> list[dict[str, Any]]:
    """`?~.field=value`, `?~.field__belongs=a,b` and `?limit=N`, as Eden's URL filters."""
    for key, value in params.items():
        if not key.startswith("~."):
            continue
        name = key[2:]
        if name.endswith("__belongs"):
            wanted = {v.strip() for v in value.split(",")}
            name = name[: -len("__belongs")]
            rows = [r for r in rows if str(r.get(name)) in wanted]
        else:
            rows = [r for r in rows if str(r.get(name)) == value]
    limit = params.get("limit")
    if limit and limit.isdigit() and int(limit) > 0:
        rows = rows[: int(limit)]
    return rows


def _int(text: str) -> int:
    if not text.isdigit():
        raise failed(404)
    return int(text)


# ------------------------------------------------------------------ sync controller


async def sync_repository(call: Call) -> Response:
    """sync/repository[/<id>[/<component>[/<component id>]]][.ext]"""
    store, parts, method, ext = call.store, call.parts, call.method, call.ext
    args = parts[2:]
    if args and args[0] == "register":
        call.require_login()
        return ok(store.register_peer(await call.json_body()))
    if args and args[0] == "create":
        if method in ("POST", "PUT") and ext == "s3json":
            call.require_login()
            raise failed(415, "Unsupported data format!")
        raise failed(404)
    if not args:
        if method == "GET":
            # URL filters may name fields the list does not show (`~.url=`: seen on Eden
            # built here)
            wanted = {r["id"] for r in filtered(store.repositories_list(hidden=True),
                                                call.params)}
            return ok([r for r in store.repositories_list() if r["id"] in wanted])
        if method in ("POST", "PUT") and ext == "s3json":
            return await _import(call, None)
        if method == "POST":  # a POST to .json creates nothing: it answers with the list
            call.require_login()
            return ok(store.repositories_list())
        raise failed(405, "Method Not Allowed")
    repository_id = _int(args[0])
    if len(args) == 1:
        if method == "GET" and ext == "s3json":
            raw = call.params.get("mcomponents")
            components = None if raw is None else {c for c in raw.split(",") if c != "None"}
            return ok(store.export_repository(repository_id, components))
        if method == "GET":
            rows = [r for r in store.repositories_list() if r["id"] == repository_id]
            if not rows:
                raise failed(404)
            return ok(rows)
        if method in ("POST", "PUT") and ext == "s3json":
            return await _import(call, repository_id)
        if method == "DELETE":
            call.require_delete_login()
            store.delete_repository(repository_id)
            return ok({"status": "success", "statuscode": "200",
                       "message": "Repository configuration deleted"})
        raise failed(405, "Method Not Allowed")
    component = args[1]
    if component not in ("task", "job", "log"):
        raise failed(404)
    if len(args) == 2:
        if method == "GET":
            if component == "task":
                return ok(filtered(store.tasks_list(repository_id), call.params))
            if component == "job":
                return ok(filtered(store.jobs_list(repository_id), call.params))
            rows = [r for r in store.log_list() if r["repository_id"] == repository_id]
            return ok(filtered(rows, call.params))
        if method in ("POST", "PUT"):
            # BACKENDS.md §4: a write to the component URL answers success, creates nothing
            call.require_login()
            store.tasks_list(repository_id)  # 404 for an unknown repository
            return ok({"status": "success", "statuscode": "200", "records": 0})
        raise failed(405, "Method Not Allowed")
    item_id = _int(args[2])
    if method == "DELETE" and component in ("task", "job"):
        call.require_delete_login()
        if component == "task":
            store.delete_task(repository_id, item_id)
        else:
            store.delete_job(repository_id, item_id)
        return ok({"status": "success", "statuscode": "200", "message": "Record deleted"})
    if method == "GET":
        rows = (store.tasks_list(repository_id) if component == "task"
                else store.jobs_list(repository_id) if component == "job" else [])
        found = [r for r in rows if r["id"] == item_id]
        if not found:
            raise failed(404)
        return ok(found[:1])
    raise failed(405, "Method Not Allowed")


async def _import(call: Call, record_id: int | None) -> Response:
    user = call.require_login()
    body = await call.json_body()
    if not body or not isinstance(body, Mapping):
        raise INVALID_SOURCE
    store = call.store
    if store.settings.adapter_bug and _has_url(body):
        # Eden's sync adapter before its Python 3.9 fix (base64.encodestring)
        raise EdenError(500, "<type 'exceptions.AttributeError'> module 'base64' has no "
                             "attribute 'encodestring'")
    faithful = store.settings.one_repository_per_peer
    saved = store.checkpoint() if faithful else None
    answer, registrations = store.import_repositories(body, record_id, user)
    for registration in registrations:
        sender = await sync.register(store, registration)
        if sender and faithful and not store.take_peer_uuid(registration.repository_id,
                                                            sender):
            # seen on Eden built here: the adapter's uuid update fails a unique
            # constraint (another repository, e.g. the passive one the peer's own
            # registration made, has the peer's uuid); the import is rolled back, what
            # the registration did at the peer stays
            store.restore(saved)
            raise EdenError(500, INTERNAL_ERROR)
    return ok(answer)


def _has_url(body: Any) -> bool:
    items = s3json.records(body, "sync_repository") if isinstance(body, Mapping) else None
    return any(s3json.raw_value(i.get("url")) for i in items or [])


async def sync_log(call: Call) -> Response:
    if call.method != "GET":
        raise failed(405, "Method Not Allowed")
    return ok(filtered(call.store.log_list(), call.params))


async def sync_xml(call: Call) -> Response:
    """The peer protocol: GET pulls a resource as S3XML, POST/PUT pushes one.

    Seen on Eden built here (permissive default policy): a pull needs no login (a wrong
    password reads as anonymous and gets the data); a push does (401). Under
    `strict_policy` a pull needs one too (an assumption: BACKENDS.md §4's
    `b'Authentication Required'` for a pull needs a peer that refuses anonymous reads)."""
    store = call.store
    if call.method != "GET" or store.settings.strict_policy:
        call.require_login()
    resource = call.params.get("resource", "")
    if "_" not in resource:
        raise EdenError(400, "Invalid request")
    if resource not in store.tables:
        # BACKENDS.md §4: "the peer answers 400 to sync/sync.xml?resource=<unknown>";
        # without a message (seen on Eden built here)
        raise failed(400)
    if call.method == "GET":
        msince = parse_msince(call.params.get("msince"))
        records = store.export_records(resource, msince)
        return Response(s3xml.encode(resource, records, store.host),
                        media_type="text/xml; charset=utf-8")
    if call.method not in ("POST", "PUT"):
        raise failed(405, "Method Not Allowed")
    try:
        records = s3xml.decode(await call.request.body(), resource)
    except ValueError as exc:
        raise failed(400, str(exc)) from None
    strategy = [s for s in call.params.get("strategy", ",".join(s3json.STRATEGIES)).split(",")
                if s]
    store.import_records(resource, records, strategy,
                         call.params.get("update_policy", "NEWER"),
                         call.params.get("conflict_policy", "NEWER"), None)
    return ok({"status": "success", "statuscode": "200", "message": "Data received from peer"})


# ------------------------------------------------------------------ other controllers


async def about(call: Call) -> Response:
    store = call.store
    # the layout of default/about on Eden built here: the row after "Core Components |
    # Version" is the deployment's short system name and Eden's VERSION file
    html = ("<html><head><title>About</title></head><body><div><table "
            'class="table-container"><thead></thead><tbody class="dataTable display">'
            '<tr class="odd"><td><strong>Configuration</strong></td><td></td></tr>'
            f"<tr><td>Public URL</td><td>{store.url.rsplit('/eden', 1)[0]}</td></tr>"
            '<tr class="odd"><td><strong>Core Components</strong></td><td><strong>Version'
            "</strong></td></tr>"
            f"<tr><td>Sahana</td><td>{store.version}</td></tr>"
            '<tr class="odd"><td>Web Server</td><td>eden-sim</td></tr>'
            "<tr><td>Web2Py</td><td>2.21.2-stable+timestamp.2021.10.15.07.44.23\n</td></tr>"
            '<tr class="odd"><td>Python</td><td>3.11</td></tr>'
            "</tbody></table></div></body></html>")
    return Response(html, media_type="text/html; charset=utf-8")


async def data(call: Call, table: str) -> Response:
    """The generic REST of a data table: GET <prefix>/<name>.json, POST/PUT .s3json,
    DELETE <prefix>/<name>/<id>.json."""
    store, method = call.store, call.method
    if len(call.parts) == 3 and method == "DELETE":
        call.require_delete_login()
        store.data_delete(table, _int(call.parts[2]))
        return ok({"status": "success", "statuscode": "200", "message": "Record deleted"})
    if len(call.parts) != 2:
        raise failed(404)
    if method == "GET":
        return ok(filtered(store.data_list(table), call.params))
    if method in ("POST", "PUT") and call.ext == "s3json":
        call.require_login()
        body = await call.json_body()
        if not body or not isinstance(body, Mapping):
            raise INVALID_SOURCE
        items = s3json.records(body, table)
        if items is None:
            return ok({"status": "success", "statuscode": "200", "records": 0})
        return ok(store.data_import(table, items))
    raise failed(405, "Method Not Allowed")


async def dispatch(call: Call) -> Response:
    parts = call.parts
    if call.method in ("POST", "PUT") and parts[:1] == ["sync"] and call.user is not None \
            and call.store.settings.strict_policy and not call.user.admin:
        raise EdenError(403, "Insufficient Privileges")
    if parts[:2] == ["sync", "repository"]:
        return await sync_repository(call)
    if parts == ["sync", "log"]:
        return await sync_log(call)
    if parts == ["sync", "sync"] and call.ext == "xml":
        return await sync_xml(call)
    if parts == ["default", "about"]:
        return await about(call)
    if len(parts) >= 2:
        table = f"{parts[0]}_{parts[1]}"
        if table in call.store.tables:
            return await data(call, table)
    raise failed(404, "Invalid URL")


def eden_endpoint(store: Store) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        path = request.path_params.get("path", "")
        segments = [s for s in path.split("/") if s]
        ext = ""
        if segments:
            match = _SEGMENT.match(segments[-1])
            if match:
                segments[-1], ext = match["name"], match["ext"] or ""
        credentials = basic_credentials(request)
        user = store.authenticate(*credentials) if credentials else None
        try:
            return await dispatch(Call(request, store, user, segments, ext))
        except EdenError as exc:
            return render_error(exc)
        except Exception:
            log.exception("eden-sim: %s %s failed", request.method, request.url.path)
            return render_error(failed(500, "Internal Server Error"))

    return run


# ---------------------------------------------------------------- control API


def control_endpoint(store: Store) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        credentials = basic_credentials(request)
        user = store.authenticate(*credentials) if credentials else None
        if user is None or not user.admin:
            return render_error(AUTH_REQUIRED)
        what, method = request.path_params.get("what", ""), request.method
        try:
            body: Any = {}
            if method in ("POST", "PUT"):
                raw = await request.body()
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise ValueError("a JSON object is required")
            return await control(store, what, method, body, request.query_params)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return run


async def control(store: Store, what: str, method: str, body: dict[str, Any],
                  params: Mapping[str, str]) -> Response:
    if what == "requests":
        if method == "DELETE":
            store.requests.clear()
            return Response(status_code=200)
        return ok([asdict(r) for r in store.requests.list(params.get("method"),
                                                           params.get("path_prefix"))])
    if what == "faults":
        if method == "DELETE":
            store.faults.clear()
            return Response(status_code=200)
        if body.get("latency") is not None:
            latency = store.faults.add_latency(float(body["latency"]), body.get("count"),
                                               body.get("path_prefix"), body.get("method"))
            return ok(asdict(latency), status=201)
        fault = store.faults.add_fault(int(body.get("status", 503)), int(body.get("count", 1)),
                                       body.get("retry_after"), body.get("path_prefix"),
                                       body.get("method"))
        return ok(asdict(fault), status=201)
    if what == "settings":
        if method == "POST":
            store.set_settings(**body)
        return ok(vars(store.settings).copy())
    if what == "users" and method == "POST":
        store.add_user(str(body["email"]), str(body["password"]), bool(body.get("admin")))
        return ok({"email": body["email"]}, status=201)
    if what == "tables" and method == "POST":
        store.add_table(str(body["table"]))
        return ok(sorted(store.tables), status=201)
    if what == "run" and method == "POST":
        return ok({"runs": await run_due(store, body.get("repository_id"))})
    if what == "state" and method == "GET":
        return ok(store.snapshot())
    return JSONResponse({"error": f"unknown control {method} /_sim/{what}"}, status_code=404)


async def run_due(store: Store, repository_id: Any = None) -> int:
    """Run the due jobs now, or (with `repository_id`) that repository at once."""
    if repository_id is not None:
        plan = store.run_plan(int(repository_id))
        if plan is None:
            raise ValueError(f"no repository {repository_id}")
        await sync.run(store, plan)
        return 1
    plans = store.claim_due()
    for plan in plans:
        await sync.run(store, plan)
    return len(plans)


# ---------------------------------------------------------------- middleware, app


class EdenMiddleware:
    """For /eden: injected latency and faults, and the request log (no bodies)."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(BASE):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        credentials = basic_credentials(Request(scope))
        recorded = [False]

        def record(status: int) -> None:
            if not recorded[0]:
                recorded[0] = True
                self.store.requests.add(RequestRecord(
                    method=method, path=path, query=scope.get("query_string", b"").decode(),
                    status=status, time=iso(self.store.now()),
                    user=credentials[0] if credentials else ""))

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])  # before the client can see the answer
            await send(message)

        try:
            delay, fault = self.store.faults.take(method, path)
            if delay:
                await asyncio.sleep(delay)  # simulated slowness, not synchronisation
            if fault is not None:
                headers = {"Retry-After": str(fault.retry_after)} \
                    if fault.retry_after is not None else {}
                response = render_error(EdenError(fault.status, {
                    "status": "failed", "statuscode": str(fault.status),
                    "message": f"simulated fault {fault.status}"}, headers))
                await response(scope, receive, send_logged)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            record(500)


def create_app(store: Store, tick_seconds: float = 0.25) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def tick() -> None:
            while True:
                await asyncio.sleep(tick_seconds)
                try:
                    await run_due(store)
                except Exception:  # keep ticking; a broken run shows in the sync log
                    log.exception("eden-sim: scheduler tick failed")

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    routes = [Route(f"{BASE}/{{path:path}}", eden_endpoint(store), methods=methods),
              Route("/_sim/{what}", control_endpoint(store), methods=methods)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(EdenMiddleware, store=store)
    return app
