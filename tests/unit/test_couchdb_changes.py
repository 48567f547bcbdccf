"""The `_replicator` change feed, read line by line and applied to a stored doc map."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from replication_operator.backends.couchdb import changes
from replication_operator.backends.couchdb.changes import Change, FeedEnd


def line(**item: Any) -> str:
    return json.dumps(item)


def test_pouchdb_and_couchdb_lines() -> None:
    pouch = line(id="j1", changes=[{"rev": "3-a"}], seq=4,
                 doc={"_id": "j1", "_rev": "3-a", "_replication_state": "completed"})
    assert changes.parse_line(pouch) == Change(
        "j1", "4", {"_id": "j1", "_rev": "3-a", "_replication_state": "completed"},
        False, "3-a")
    couch = line(seq="12-g1AAAA", id="j2", changes=[{"rev": "2-b"}], deleted=True,
                 doc={"_id": "j2", "_rev": "2-b", "_deleted": True})
    assert changes.parse_line(couch) == Change("j2", "12-g1AAAA", None, True, "2-b")


def test_heartbeats_design_docs_and_the_end() -> None:
    assert changes.parse_line("") is None
    assert changes.parse_line("\n") is None
    assert changes.parse_line("not json") is None
    assert changes.parse_line("[1, 2]") is None
    assert changes.parse_line(line(id="_design/_replicator", seq=1, changes=[])) is None
    assert changes.parse_line(line(last_seq=9)) == FeedEnd("9")
    assert changes.parse_line(line(last_seq="9-xyz", pending=0)) == FeedEnd("9-xyz")


def test_a_change_without_its_doc_is_not_complete() -> None:
    bare = changes.parse_line(line(id="j", seq=3, changes=[{"rev": "2-x"}]))
    assert isinstance(bare, Change) and bare.doc is None and not bare.deleted
    assert not changes.complete([bare])
    # and applying it keeps what is stored (the caller lists again)
    assert changes.apply({"j": {"_rev": "1-a"}}, [bare]) == {"j": {"_rev": "1-a"}}


def test_a_change_older_than_the_stored_doc_is_skipped() -> None:
    """A job replaced by delete and re-create: a list already shows the new doc when the
    deletion arrives; applying the deletion would make the job look gone."""
    stored = {"j": {"_id": "j", "_rev": "5-new"}}
    deletion = Change("j", "7", None, True, "4-del")
    assert changes.apply(stored, [deletion]) == stored
    newer = Change("j", "9", {"_id": "j", "_rev": "6-x"}, False, "6-x")
    assert changes.apply(stored, [deletion, newer]) == {"j": {"_id": "j", "_rev": "6-x"}}
    assert changes.apply(stored, [Change("j", "9", None, True, "6-y")]) == {}


def test_apply_leaves_the_given_map_alone() -> None:
    stored = {"a": {"_rev": "1-a"}}
    changes.apply(stored, [Change("b", "2", {"_rev": "1-b"}, False, "1-b")])
    assert stored == {"a": {"_rev": "1-a"}}


def test_rev_number() -> None:
    assert changes.rev_number("12-abc") == 12
    assert changes.rev_number("") == 0
    assert changes.rev_number(None) == 0
    assert changes.rev_number("x-1") == 0


# A doc's history on the server: its revisions in order; None is a deletion.
histories = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                            st.lists(st.booleans(), min_size=1, max_size=6), max_size=4)


def feed_of(history: dict[str, list[bool]]) -> tuple[list[Change], dict[str, dict[str, Any]]]:
    """The feed (in seq order) and the final doc map of a history: True = a write,
    False = a deletion (of a doc that exists; otherwise skipped)."""
    feed: list[Change] = []
    final: dict[str, dict[str, Any]] = {}
    seq = 0
    for doc_id, steps in history.items():
        rev = 0
        for write in steps:
            if not write and doc_id not in final:
                continue
            rev += 1
            seq += 1
            if write:
                final[doc_id] = {"_id": doc_id, "_rev": f"{rev}-x"}
                feed.append(Change(doc_id, str(seq), final[doc_id], False, f"{rev}-x"))
            else:
                del final[doc_id]
                feed.append(Change(doc_id, str(seq), None, True, f"{rev}-x"))
    return feed, final


@given(histories, st.data())
def test_any_list_plus_the_rest_of_the_feed_is_the_server(history: dict[str, list[bool]],
                                                           data: st.DataObject) -> None:
    """A list taken at any point of the feed, then the feed from where that list was
    taken — or from earlier (changes the list already holds come again) — ends at the
    server's final state."""
    feed, final = feed_of(history)
    taken = data.draw(st.integers(0, len(feed)))
    replay_from = data.draw(st.integers(0, taken))
    listed = changes.apply({}, feed[:taken])
    assert changes.apply(listed, feed[replay_from:]) == final
