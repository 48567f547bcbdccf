"""Token decisions: create, recover a lost value, update, rotate (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from replication_operator.backends.tokens import TokenObservation, other_slot
from replication_operator.reconcile.token import (
    TokenVerb,
    delivered,
    plan_token,
    revocation,
    rotation_due,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def decide(seen: TokenObservation, *, secret: bool = True, due: bool = False,
           requested: bool = False, pending: bool = False) -> tuple[TokenVerb, str]:
    plan = plan_token(seen=seen, secret_has_value=secret, rotate_due=due,
                      rotate_requested=requested, revocation_pending=pending)
    return plan.verb, plan.reason


def test_missing_token_is_created() -> None:
    assert decide(TokenObservation(exists=False)) == (TokenVerb.CREATE, "Created")


def test_token_whose_value_is_lost_is_reissued_in_the_other_slot() -> None:
    assert decide(TokenObservation(exists=True), secret=False) == (TokenVerb.ROTATE,
                                                                   "CredentialRecovered")


def test_changed_permissions_update() -> None:
    seen = TokenObservation(exists=True, up_to_date=False, differences=["read"])
    assert decide(seen) == (TokenVerb.UPDATE, "Updated")


@pytest.mark.parametrize("due, requested, reason", [(True, False, "Rotated"),
                                                    (False, True, "RotatedOnRequest")])
def test_rotation(due: bool, requested: bool, reason: str) -> None:
    assert decide(TokenObservation(exists=True), due=due, requested=requested) == (
        TokenVerb.ROTATE, reason)


def test_a_rotation_waits_while_the_previous_credential_is_in_its_grace() -> None:
    assert decide(TokenObservation(exists=True), requested=True, pending=True)[0] \
        is TokenVerb.WAIT
    urgent = plan_token(seen=TokenObservation(exists=True), secret_has_value=False,
                        rotate_due=False, rotate_requested=False, revocation_pending=True)
    assert urgent.verb is TokenVerb.ROTATE and urgent.urgent, "a lost value cannot wait"


def test_provisioned_tokens_are_left_alone() -> None:
    assert decide(TokenObservation(exists=True, provisioned=True, up_to_date=False),
                  secret=False)[0] is TokenVerb.NOTHING


def test_quiet_token_needs_nothing() -> None:
    assert decide(TokenObservation(exists=True)) == (TokenVerb.NOTHING, "")


def test_slots_take_turns() -> None:
    assert other_slot("ns.t", "ns.t") == "ns.t-b"
    assert other_slot("ns.t", "ns.t-b") == "ns.t"


def test_the_old_credential_goes_once_every_dependent_switched_or_the_grace_ended() -> None:
    previous = {"externalName": "ns.t", "revokeAfter": "2026-06-01T00:05:00Z"}
    early = NOW
    waiting = revocation(previous=previous, generation="3",
                         dependents=[("a", "3"), ("b", "2")], now=early)
    assert not waiting.due and waiting.message == "waiting for b to use the new credential"
    assert revocation(previous=previous, generation="3", dependents=[("a", "3"), ("b", "3")],
                      now=early).due
    assert revocation(previous=previous, generation="3", dependents=[], now=early).due
    late = revocation(previous=previous, generation="3", dependents=[("b", "2")],
                      now=datetime(2026, 6, 1, 0, 5, tzinfo=UTC))
    assert late.due and "grace period ended" in late.message and "b" in late.message
    assert not revocation(previous=None, generation="3", dependents=[], now=early).due


def test_status_catches_up_with_what_the_secret_holds() -> None:
    keys = {"credential_key": "c", "generation_key": "g"}
    status = {"externalName": "ns.t", "generation": "2"}
    assert delivered(status, {"c": "ns.t", "g": "2"}, **keys) == {}
    assert delivered(status, {}, **keys) == {}, "a Secret of an older version"
    caught = delivered(status, {"c": "ns.t-b", "g": "3"}, **keys)
    assert caught == {"externalName": "ns.t-b", "generation": "3",
                      "previousCredential": {"externalName": "ns.t"}}


@pytest.mark.parametrize("every, last, created, due", [
    (None, None, "2026-01-01T00:00:00Z", False),
    (30, None, "2026-05-01T00:00:00Z", True),
    (30, None, "2026-05-10T00:00:00Z", False),
    (30, "2026-05-31T00:00:00Z", "2025-01-01T00:00:00Z", False),
    (1, "2026-05-31T00:00:00Z", "2025-01-01T00:00:00Z", True),
    (30, None, None, False),
])
def test_rotation_due(every: int | None, last: str | None, created: str | None,
                      due: bool) -> None:
    assert rotation_due(every_days=every, last_rotation=last, created_at=created,
                        now=NOW) is due
