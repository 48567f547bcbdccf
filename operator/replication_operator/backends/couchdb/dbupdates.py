"""Pure: CouchDB's database list and `_db_updates` answers.

`GET /_db_updates?feed=longpoll&since=<seq>&timeout=<ms>` (CouchDB 2+, Cloudant; it
needs the `_global_changes` database) answers `{"results": [{"db_name", "type",
"seq"}, ...], "last_seq": ...}` with `type` one of created, updated, deleted. PouchDB
Server 4.2 answers 400 (not implemented): there the list is read each resync instead.
"""

from __future__ import annotations

from typing import Any

# The events that change which databases exist (updated: documents changed).
MEMBERSHIP = frozenset({"created", "deleted"})


def database_names(payload: Any) -> list[str]:
    """`GET /_all_dbs` → names (anything else is a server answering unlike CouchDB)."""
    if not isinstance(payload, list):
        raise ValueError("_all_dbs did not answer a list")
    return [str(name) for name in payload]


def parse_updates(payload: Any, since: str) -> tuple[list[tuple[str, str]], str]:
    """(database, created|deleted) events and the seq to continue from."""
    if not isinstance(payload, dict):
        return [], since
    events = [(str(r["db_name"]), str(r["type"])) for r in payload.get("results") or []
              if isinstance(r, dict) and r.get("type") in MEMBERSHIP and "db_name" in r]
    last = payload.get("last_seq")
    return events, since if last is None else str(last)
