"""Token decisions: create, recover a lost value, update, rotate (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from replication_operator.backends.tokens import TokenObservation
from replication_operator.reconcile.token import TokenVerb, plan_token, rotation_due

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def decide(seen: TokenObservation, *, secret: bool = True, due: bool = False,
           requested: bool = False) -> tuple[TokenVerb, str]:
    return plan_token(seen=seen, secret_has_value=secret, rotate_due=due,
                      rotate_requested=requested)


def test_missing_token_is_created() -> None:
    assert decide(TokenObservation(exists=False)) == (TokenVerb.CREATE, "Created")


def test_token_whose_value_is_lost_is_reissued() -> None:
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


def test_provisioned_tokens_are_left_alone() -> None:
    assert decide(TokenObservation(exists=True, provisioned=True, up_to_date=False),
                  secret=False)[0] is TokenVerb.NOTHING


def test_quiet_token_needs_nothing() -> None:
    assert decide(TokenObservation(exists=True)) == (TokenVerb.NOTHING, "")


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
