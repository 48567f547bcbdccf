"""Which verb reconcile picks, and what status it writes (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication_operator.backends.base import (
    COMPLETED,
    ERROR,
    FAILED,
    PENDING,
    RUNNING,
    Observation,
    Progress,
)
from replication_operator.errors import (
    PermanentBackendError,
    SpecError,
    TransientBackendError,
)
from replication_operator.reconcile.replication import (
    OwnershipConflict,
    Verb,
    compute_status,
    plan,
)
from replication_operator.status import changed_fields

KEY = "ns/rep"


def decide(seen: Observation, **kw: bool) -> tuple[Verb, str]:
    args = dict(suspend=False, suspend_deletes=True, adopted=False, spec_changed=False,
                created_before=False)
    args.update(kw)
    result = plan(key=KEY, external_name="ns.rep", seen=seen, **args)
    return result.verb, result.reason


def mine(**kw: object) -> Observation:
    return Observation(exists=True, owner=KEY, **kw)  # type: ignore[arg-type]


def test_missing_job_is_created() -> None:
    assert decide(Observation.absent(), spec_changed=True) == (Verb.CREATE, "Created")


def test_job_removed_by_hand_is_recreated_as_drift() -> None:
    assert decide(Observation.absent(), created_before=True) == (Verb.CREATE, "DriftCorrected")


def test_matching_job_is_left_alone() -> None:
    assert decide(mine()) == (Verb.NOTHING, "")


def test_mismatch_after_spec_change_is_an_update_and_otherwise_drift() -> None:
    seen = mine(up_to_date=False, differences=["selector"])
    assert decide(seen, spec_changed=True) == (Verb.UPDATE, "Updated")
    assert decide(seen) == (Verb.UPDATE, "DriftCorrected")


def test_suspend_removes_a_job_that_cannot_pause_and_keeps_one_that_can() -> None:
    assert decide(mine(), suspend=True) == (Verb.DELETE, "Suspended")
    assert decide(Observation.absent(), suspend=True) == (Verb.NOTHING, "")
    assert decide(mine(up_to_date=False), suspend=True, suspend_deletes=False)[0] is Verb.UPDATE


def test_job_of_another_replication_is_never_taken_silently() -> None:
    with pytest.raises(OwnershipConflict, match="ns/other"):
        decide(Observation(exists=True, owner="ns/other"))
    other = Observation(exists=True, owner="ns/other", up_to_date=False, differences=["x"])
    assert decide(other, adopted=True, spec_changed=True) == (Verb.UPDATE, "Adopted")


def test_unmarked_job_named_by_external_name_is_adopted() -> None:
    drifted = Observation(exists=True, owner=None, up_to_date=False, differences=["source"])
    assert decide(drifted, adopted=True, spec_changed=True) == (Verb.UPDATE, "Adopted")


def test_adopting_a_job_that_matches_the_spec_writes_nothing() -> None:
    """Bringing a fleet under GitOps must not rewrite it: the first reconcile of an
    adopting spec says Adopted without a write, later quiet resyncs say nothing."""
    for owner in (None, "ns/gone"):
        matching = Observation(exists=True, owner=owner)
        assert decide(matching, adopted=True, spec_changed=True) == (Verb.NOTHING, "Adopted")
        assert decide(matching, adopted=True, created_before=True) == (Verb.NOTHING, "")
        assert decide(matching, adopted=True, spec_changed=True, credentials_rotated=True) \
            == (Verb.UPDATE, "Adopted")


def test_an_adopted_job_without_owner_marker_is_not_rewritten_at_every_resync() -> None:
    """ReductStore keeps no owner marker: an adopted replication must not be updated at
    each resync (only drift is put back, as for any job)."""
    unmarked = Observation(exists=True, owner=None)
    assert decide(unmarked, adopted=True, created_before=True) == (Verb.NOTHING, "")
    drifted = Observation(exists=True, owner=None, up_to_date=False, differences=["mode"])
    assert decide(drifted, adopted=True, created_before=True) == (Verb.UPDATE,
                                                                  "DriftCorrected")


def test_provisioned_jobs_are_never_written() -> None:
    assert decide(mine(provisioned=True, up_to_date=False)) == (Verb.NOTHING, "")


def conditions(status: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def status_for(seen: Observation | None = None, error: Exception | None = None,
               previous: dict | None = None, suspended: bool = False) -> dict:
    return compute_status(previous=previous, generation=3, seen=seen, error=error,  # type: ignore[arg-type]
                          suspended=suspended, external_name="ns.rep", server="couch",
                          now="2026-01-01T00:00:00Z")


@pytest.mark.parametrize("phase, ready, stalled", [
    (RUNNING, "True", "False"), (COMPLETED, "True", "False"), (PENDING, "False", "False"),
    (ERROR, "False", "False"), (FAILED, "False", "True")])
def test_phase_and_conditions_agree(phase: str, ready: str, stalled: str) -> None:
    status = status_for(Observation(exists=True, phase=phase, reason="R", message="m"))
    assert status["phase"] == phase
    assert conditions(status)["Ready"] == ready
    assert conditions(status)["Stalled"] == stalled
    assert status["observedGeneration"] == 3


def test_transient_error_is_backend_unavailable_and_not_stalled() -> None:
    status = status_for(error=TransientBackendError("GET http://x/: cannot connect"))
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["Ready"]["reason"] == "BackendUnavailable"
    assert cond["Stalled"]["status"] == "False" and cond["Reconciling"]["status"] == "True"
    assert status["lastError"]["message"] == "GET http://x/: cannot connect"


def test_permanent_error_is_stalled_with_its_reason() -> None:
    status = status_for(error=SpecError("spec.filter.entries is a ReductStore filter"))
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["Stalled"]["status"] == "True" and cond["Ready"]["reason"] == "InvalidSpec"
    assert cond["Synced"]["status"] == "False"


def test_suspended_without_job_is_ready() -> None:
    status = status_for(Observation.absent(), suspended=True)
    assert status["phase"] == "Suspended" and conditions(status)["Ready"] == "True"


OBSERVATIONS = st.builds(
    Observation, exists=st.just(True), phase=st.sampled_from([PENDING, RUNNING, COMPLETED,
                                                              FAILED, ERROR]),
    reason=st.sampled_from(["Running", "Completed", "Unauthorized"]),
    message=st.text(max_size=20),
    progress=st.builds(Progress, docs_written=st.none() | st.integers(0, 10)))
ERRORS = st.none() | st.builds(TransientBackendError, st.text(min_size=1, max_size=20)) | \
    st.builds(PermanentBackendError, st.text(min_size=1, max_size=20))


@given(OBSERVATIONS, ERRORS)
def test_recomputing_an_unchanged_outcome_writes_nothing(seen: Observation,
                                                         error: Exception | None) -> None:
    first = status_for(seen, error)
    second = compute_status(previous=first, generation=3, seen=seen, error=error,  # type: ignore[arg-type]
                            suspended=False, external_name="ns.rep", server="couch",
                            now="2027-06-01T00:00:00Z")
    assert changed_fields(first, second) == {}


@given(OBSERVATIONS, ERRORS)
def test_ready_and_stalled_are_never_both_true(seen: Observation, error: Exception | None
                                               ) -> None:
    cond = conditions(status_for(seen, error))
    assert not (cond["Ready"] == "True" and cond["Stalled"] == "True")
    assert not (cond["Ready"] == "True" and cond["Reconciling"] == "True")


def test_rotated_credential_updates_a_job_that_otherwise_matches() -> None:
    assert decide(mine(), credentials_rotated=True) == (Verb.UPDATE, "CredentialsRotated")
    assert decide(mine(provisioned=True), credentials_rotated=True)[0] is Verb.NOTHING
    assert decide(mine(up_to_date=False), credentials_rotated=True,
                  spec_changed=True) == (Verb.UPDATE, "Updated")


def test_a_job_that_never_existed_is_not_drift_after_a_failed_first_reconcile() -> None:
    from replication_operator.reconcile.replication import job_was_seen

    failed_first = status_for(error=SpecError("Token 'x' (tokenRef) not found"))
    assert "externalName" not in failed_first and not job_was_seen(failed_first)
    running = status_for(Observation(exists=True, phase=RUNNING, reason="Running"))
    later_outage = status_for(error=TransientBackendError("down"), previous=running)
    assert later_outage["externalName"] == "ns.rep" and job_was_seen(later_outage)
    # a job removed by hand before it first ran was still seen on the server
    waiting = status_for(Observation(exists=True, phase=PENDING, reason="Pending"))
    assert job_was_seen(waiting)


def test_a_failed_job_starts_again_once_its_token_changed() -> None:
    assert decide(mine(), failed_since_token_changed=True) == (Verb.UPDATE, "TokenChanged")
    assert decide(mine())[0] is Verb.NOTHING, "failed and nothing changed: left as it is"
    assert decide(mine(up_to_date=False), failed_since_token_changed=True,
                  spec_changed=True) == (Verb.UPDATE, "Updated")
    assert decide(mine(), failed_since_token_changed=True, credentials_rotated=True) == \
        (Verb.UPDATE, "CredentialsRotated")
