"""Pure: the `_changes` feed of `_replicator`, read line by line.

`GET /_replicator/_changes?feed=continuous&since=...&heartbeat=...&include_docs=true`
answers one JSON object per line: `{"seq", "id", "changes": [{"rev"}], "doc",
"deleted"}` for each changed doc (its current revision), empty lines as heartbeats,
and `{"last_seq": ...}` when the server ends the feed. CouchDB and PouchDB Server
4.2 answer alike (PouchDB's seqs are numbers, CouchDB 2+'s opaque strings). PouchDB
Server ignores `timeout` on `longpoll` (the request hangs), so the feed is
`continuous` with a heartbeat everywhere.

A job's state reaches the doc where the server writes it there: every transition on
1.x-style servers (PouchDB Server), and on CouchDB 2.1+ the terminal ones only
(`completed` with `_replication_stats`, `failed` with the reason: couch_replicator_docs
update_doc_completed / update_failed). So the feed tells when a job finishes or fails
on every flavour; a job that starts crashing on CouchDB 2+ shows at the next list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DocMap = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Change:
    """One changed doc: its current body (None if deleted, or if the server sent none)
    and the feed position."""

    id: str
    seq: str
    doc: dict[str, Any] | None
    deleted: bool = False
    rev: str = ""


@dataclass(frozen=True)
class FeedEnd:
    """The server ended the feed; go on from `seq`."""

    seq: str


def seq_text(seq: Any) -> str:
    """A seq as the `since` parameter takes it (numbers stay numbers, tokens as they are)."""
    return seq if isinstance(seq, str) else json.dumps(seq)


def parse_line(line: str) -> Change | FeedEnd | None:
    """One line of a continuous feed; None for heartbeats, design docs and lines that
    are not a change (a server answering unlike CouchDB is left to the next list)."""
    line = line.strip()
    if not line:
        return None
    try:
        item = json.loads(line)
    except ValueError:
        return None
    if not isinstance(item, dict):
        return None
    if "last_seq" in item and "id" not in item:
        return FeedEnd(seq_text(item["last_seq"]))
    doc_id, seq = item.get("id"), item.get("seq")
    if not isinstance(doc_id, str) or seq is None or doc_id.startswith("_design/"):
        return None
    doc = item.get("doc")
    deleted = bool(item.get("deleted")) or (isinstance(doc, dict) and bool(doc.get("_deleted")))
    revs = item.get("changes")
    rev = (doc.get("_rev") if isinstance(doc, dict) else None) or (
        revs[0].get("rev") if isinstance(revs, list) and revs and isinstance(revs[0], dict)
        else None)
    return Change(doc_id, seq_text(seq), doc if isinstance(doc, dict) and not deleted
                  else None, deleted, str(rev or ""))


def rev_number(rev: Any) -> int:
    """The generation of a revision ("3-abc" → 3; 0 when unknown). It only grows for a
    doc: every edit, the deletion and a re-creation over the tombstone add one."""
    head = str(rev or "").partition("-")[0]
    return int(head) if head.isdigit() else 0


def complete(changes: Iterable[Change]) -> bool:
    """Whether the changes carry every changed doc (include_docs), so applying them
    gives the server's doc map without a list."""
    return all(c.deleted or c.doc is not None for c in changes)


def apply(docs: Mapping[str, dict[str, Any]], changes: Iterable[Change]) -> DocMap:
    """The doc map after these changes (a new map; the given one is not touched).

    A change older than the stored doc is skipped: a list read while the change was
    on its way already holds something newer (seen: a job replaced by delete and
    re-create, whose deletion arrives after a list that shows the new doc — applied,
    it would make the job look gone). A change to a doc the list does not hold is
    applied; if it was deleted before the list, its deletion follows in the feed."""
    result = dict(docs)
    for change in changes:
        stored = result.get(change.id)
        if stored is not None and rev_number(change.rev) < rev_number(stored.get("_rev")):
            continue
        if change.deleted:
            result.pop(change.id, None)
        elif change.doc is not None:
            result[change.id] = change.doc
    return result
