"""What an Eden does over the network, as its sync adapter does it: register at a peer
when a repository is written, and run a repository (pull / push each task). Peer
requests are made without the store's lock; results are written back through it.

Log rows, as BACKENDS.md §4 states them: a wrong peer password shows as `result: error`,
message `b'Authentication Required'` on a pull (Eden wraps the raw bytes of the peer's
answer) and `result: fatal`, `Authentication Required` on a push; a failed task ends
the run (every later task of the repository is skipped); `last_pull` becomes the newest
pulled record's modification time + 1 s; `last_push` is never set.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx

from . import s3xml
from .store import (
    ERROR,
    FATAL,
    PULL,
    PUSH,
    SUCCESS,
    WARNING,
    Registration,
    RunPlan,
    RunTask,
    Store,
)
from .times import iso

PEER_TIMEOUT = 10.0


def _client(username: str, password: str) -> httpx.AsyncClient:
    auth = httpx.BasicAuth(username, password) if username else None
    return httpx.AsyncClient(auth=auth, timeout=PEER_TIMEOUT, follow_redirects=False)


def _peer_message(body: bytes, *, wrap_bytes: bool) -> str:
    """The message Eden logs for an HTTP error from the peer: the `message` of a JSON
    answer, else the raw answer; the pull path formats the raw bytes (`b'...'`)."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])
    if wrap_bytes:
        return str(body)
    return body.decode("utf-8", "replace")


def _unavailable(exc: httpx.HTTPError) -> str:
    return f"Peer repository unavailable ({type(exc).__name__})"


async def register(store: Store, registration: Registration) -> str | None:
    """Register this site at the peer (`POST {url}/sync/repository/register.json`), log
    the outcome on the repository (no resource, the peer's message); returns the peer's
    site uuid if its answer names it (`sender`)."""
    url = f"{registration.url.rstrip('/')}/sync/repository/register.json"
    body = {"uuid": store.site_uuid, "name": store.host, "apitype": "eden"}
    try:
        async with _client(registration.username, registration.password) as client:
            response = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        store.write_log(registration.repository_id, None, PUSH, "request registration", ERROR,
                        True, _unavailable(exc))
        return None
    if response.status_code >= 400:
        store.write_log(registration.repository_id, None, PUSH, "request registration", FATAL,
                        True, _peer_message(response.content, wrap_bytes=False))
        return None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answer = answer if isinstance(answer, dict) else {}
    store.write_log(registration.repository_id, None, PUSH, "request registration", SUCCESS,
                    False, str(answer.get("message") or "Registration successful"))
    sender = answer.get("sender")
    return str(sender) if sender else None


async def run(store: Store, plan: RunPlan) -> None:
    """One run of sync_synchronize for a repository."""
    ok = True
    try:
        if not plan.url:
            store.write_log(plan.repository_id, None, None, "connect", FATAL, False,
                            "No URL set for repository")
            ok = False
            return
        async with _client(plan.username, plan.password) as client:
            # S3Sync.synchronize (Eden master of 2024): `error` is only reset by a pull,
            # so after a failed task every following task that does not pull (mode 2 or
            # 4) is skipped, until a pulling task (mode 1 or 3) runs again; a task whose
            # pull fails does not push (seen on Eden built here)
            # (web2py still counts the run as COMPLETED)
            failed = False
            for task in plan.tasks:
                if not task.known:
                    # an unknown resource is skipped: no log row, no last_pull (its "pull"
                    # answers no error, which clears one)
                    failed = failed and task.mode not in (1, 3)
                    continue
                if task.mode in (1, 3):
                    failed = not await _pull(store, plan, task, client)
                if failed:
                    continue
                if task.mode in (2, 3):
                    failed = not await _push(store, plan, task, client)
    finally:
        store.finish_job(plan.scheduler_task_id, ok)


async def _pull(store: Store, plan: RunPlan, task: RunTask, client: httpx.AsyncClient
                ) -> bool:
    assert plan.url is not None
    params = {"resource": task.resource_name, "repository": store.site_uuid,
              "include_deleted": "True"}
    if task.last_pull is not None and task.update_policy not in ("THIS", "OTHER"):
        params["msince"] = iso(task.last_pull)
    try:
        response = await client.get(f"{plan.url.rstrip('/')}/sync/sync.xml", params=params)
    except httpx.HTTPError as exc:
        store.write_log(plan.repository_id, task.resource_name, PULL, "fetch", ERROR, True,
                        _unavailable(exc))
        return False
    if response.status_code >= 400:
        store.write_log(plan.repository_id, task.resource_name, PULL, "fetch", ERROR, True,
                        _peer_message(response.content, wrap_bytes=True))
        return False
    try:
        records = s3xml.decode(response.content, task.resource_name)
    except ValueError as exc:
        store.write_log(plan.repository_id, task.resource_name, PULL, "import", FATAL, False,
                        str(exc))
        return False
    count = store.import_records(task.resource_name, records, task.strategy,
                                 task.update_policy, task.conflict_policy, task.last_pull)
    if records:
        newest = max(r.modified_on for r in records)
        store.set_last_pull(task.id, newest + timedelta(seconds=1))
    message = (f"Data imported successfully ({count} records)" if count
               else "No data to import (already up-to-date)")
    store.write_log(plan.repository_id, task.resource_name, PULL, "import", SUCCESS, False,
                    message)
    return True


async def _push(store: Store, plan: RunPlan, task: RunTask, client: httpx.AsyncClient
                ) -> bool:
    assert plan.url is not None
    records = store.export_records(task.resource_name, None)  # last_push is never set
    if not records:
        store.write_log(plan.repository_id, task.resource_name, PUSH, "send", WARNING, False,
                        "No data to send")
        return True
    params = {"resource": task.resource_name, "repository": store.site_uuid,
              "strategy": ",".join(task.strategy), "update_policy": task.update_policy,
              "conflict_policy": task.conflict_policy}
    body = s3xml.encode(task.resource_name, records, store.host)
    try:
        response = await client.post(f"{plan.url.rstrip('/')}/sync/sync.xml", params=params,
                                     content=body, headers={"Content-Type": "text/xml"})
    except httpx.HTTPError as exc:
        store.write_log(plan.repository_id, task.resource_name, PUSH, "send", ERROR, True,
                        _unavailable(exc))
        return False
    if response.status_code >= 400:
        store.write_log(plan.repository_id, task.resource_name, PUSH, "send", FATAL, True,
                        _peer_message(response.content, wrap_bytes=False))
        return False
    store.write_log(plan.repository_id, task.resource_name, PUSH, "send", SUCCESS, False,
                    f"data sent successfully ({len(records)} records)")
    return True
