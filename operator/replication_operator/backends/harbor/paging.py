"""Harbor list paging and Location headers (shared by policies, registries, robots)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from replication_operator.errors import PermanentBackendError
from replication_operator.http import ServerConnection

API = "/api/v2.0"
PAGE_SIZE = 100  # Harbor's maximum


async def list_all(conn: ServerConnection, path: str,
                   params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every item of a paged list: one request per PAGE_SIZE items."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        response = await conn.request("GET", f"{API}{path}", params={
            **(params or {}), "page": page, "page_size": PAGE_SIZE})
        batch = list(response.json() or [])
        items.extend(batch)
        total = response.headers.get("x-total-count")
        if len(batch) < PAGE_SIZE or (total is not None and len(items) >= int(total)):
            return items
        page += 1


def id_from_location(response: httpx.Response) -> int:
    """The id of what a POST created, from `Location: .../things/{id}`."""
    location = response.headers.get("location", "")
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise PermanentBackendError(f"the server answered {response.status_code} without "
                                    f"the new object's id in Location", code="UnexpectedAnswer")
    return int(tail)
