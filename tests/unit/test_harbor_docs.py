"""Harbor documents: spec → bodies, Harbor's normalised answers → differences."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication_operator.backends.harbor import docs
from replication_operator.backends.policies import PolicyFilter, PolicyRequest, Remote
from replication_operator.credentials import Credentials
from replication_operator.errors import MissingReferenceError, SpecError
from replication_operator.http import ServerSettings
from replication_operator.reconcile.policy import declared_registry

REMOTE = Remote(ServerSettings(key="team/harbor-dr", type="harbor",
                               url="https://dr.example.net/", auth_type="basic",
                               credentials=Credentials(username="admin", password="s3cret-Pw")))


def request(**overrides: Any) -> PolicyRequest:
    values: dict[str, Any] = {
        "key": "team/images", "name": "team.images", "external_id": "", "adopted": False,
        "remote": REMOTE, "push": True, "patterns": ("library/*",)}
    values.update(overrides)
    return PolicyRequest(**values)


def as_harbor_returns(body: dict[str, Any], *, policy_id: int = 7) -> dict[str, Any]:
    """What Harbor answers to GET for a policy stored from `body` (its normalisation)."""
    stored = copy.deepcopy(body)
    local = {"id": 0, "name": "Local", "type": "harbor", "url": "http://core:8080",
             "insecure": True, "status": "healthy", "credential": None}
    remote_id = (stored.get("dest_registry") or stored.get("src_registry"))["id"]
    remote = {"id": remote_id, "name": "dbops.team.harbor-dr", "type": "harbor",
              "url": "https://dr.example.net", "insecure": False, "status": "healthy",
              "credential": {"type": "basic", "access_key": "admin",
                             "access_secret": "*****"}}
    pushing = "dest_registry" in stored
    stored["src_registry"], stored["dest_registry"] = (local, remote) if pushing \
        else (remote, local)
    if stored["trigger"]["type"] != "scheduled":
        stored["trigger"]["trigger_settings"] = {"cron": ""}
    stored["filters"] = list(reversed(stored["filters"]))
    for item in stored["filters"]:
        if item.get("decoration") == "matches":
            del item["decoration"]  # Harbor's default, omitted
    stored.update(id=policy_id, creation_time="2026-11-23T10:00:00.000Z",
                  update_time="2026-11-23T10:00:00.000Z", creator="admin")
    if stored["speed"] == -1:
        stored["speed"] = 0
    return stored


def test_push_policy_body() -> None:
    body = docs.policy_body(request(filters=(PolicyFilter("tag", "v*"),
                                             PolicyFilter("label", "prod, signed"),
                                             PolicyFilter("resource", "image"))),
                            name="team.images", registry_id=3)
    assert body["dest_registry"] == {"id": 3} and "src_registry" not in body
    assert body["filters"] == [
        {"type": "name", "value": "library/*"},
        {"type": "tag", "value": "v*", "decoration": "matches"},
        {"type": "label", "value": ["prod", "signed"], "decoration": "matches"},
        {"type": "resource", "value": "image"}]
    assert body["replicate_deletion"] is False and body["deletion"] is False
    assert body["description"] == "managed by replication-operator for team/images"
    assert body["trigger"] == {"type": "manual", "trigger_settings": {"cron": ""}}


def test_pull_policy_and_schedule() -> None:
    body = docs.policy_body(request(push=False, trigger="scheduled", schedule="*/5 * * * *",
                                    patterns=("b/*", "a/**", "b/*"), replicate_deletion=True),
                            name="n", registry_id=4)
    assert body["src_registry"] == {"id": 4} and "dest_registry" not in body
    assert body["trigger"] == {"type": "scheduled",
                               "trigger_settings": {"cron": "0 */5 * * * *"}}
    assert body["filters"][0] == {"type": "name", "value": "{a/**,b/*}"}
    assert body["replicate_deletion"] is True and body["deletion"] is True


@pytest.mark.parametrize(("overrides", "field"), [
    ({"trigger": "continuous"}, "spec.trigger.type"),
    ({"trigger": "scheduled", "schedule": "61 * * * *"}, "spec.trigger.schedule"),
    # what Harbor refuses (BACKENDS.md §2a and its policy model): seconds other than 0,
    # and `*` as the minutes field
    ({"trigger": "scheduled", "schedule": "30 0 3 * * *"}, "seconds field must be 0"),
    ({"trigger": "scheduled", "schedule": "* * * * *"}, "minutes field"),
    ({"trigger": "scheduled", "schedule": "0 * 3 * * *"}, "minutes field"),
])
def test_refusals_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        docs.policy_body(request(**overrides), name="n", registry_id=1)


specs = st.fixed_dictionaries({
    "push": st.booleans(),
    "patterns": st.lists(st.sampled_from(["library/*", "team/**", "a/b", "x/{y,z}"]),
                         min_size=1, max_size=3).map(tuple),
    "dest_namespace": st.sampled_from(["", "mirror", "dr/images"]),
    "dest_namespace_replace_count": st.integers(-1, 3),
    "trigger": st.sampled_from(["manual", "scheduled", "eventBased"]),
    "filters": st.lists(st.sampled_from([
        PolicyFilter("tag", "v*"), PolicyFilter("tag", "latest", "excludes"),
        PolicyFilter("label", "a,b"), PolicyFilter("resource", "artifact")]),
        max_size=3, unique_by=lambda f: f.type).map(tuple),
    "replicate_deletion": st.booleans(), "override": st.booleans(),
    "enabled": st.booleans(), "speed": st.sampled_from([-1, 100, 2048]),
    "copy_by_chunk": st.booleans(),
})

CHANGES = {
    "target.namespace": {"dest_namespace": "elsewhere"},
    "target.namespaceReplaceCount": {"dest_namespace_replace_count": 9},
    "trigger": {"trigger": {"type": "event_based", "trigger_settings": {"cron": ""}}},
    "source.databases": {"filters": [{"type": "name", "value": "other/*"}]},
    "replicateDeletion": {"replicate_deletion": "flip", "deletion": "flip"},
    "override": {"override": "flip"},
    "enabled": {"enabled": "flip"},
    "speed": {"speed": 999},
    "copyByChunk": {"copy_by_chunk": "flip"},
    "description": {"description": "edited by hand"},
    "target.server": {"dest_registry": {"id": 42}},
}


@given(specs)
def test_an_untouched_policy_shows_no_difference(spec: dict[str, Any]) -> None:
    req = request(schedule="0 */6 * * *" if spec["trigger"] == "scheduled" else "", **spec)
    body = docs.policy_body(req, name="team.images", registry_id=5)
    assert docs.policy_differences(body, as_harbor_returns(body)) == []


@given(specs, st.sampled_from(sorted(CHANGES)))
def test_one_change_on_the_server_is_named(spec: dict[str, Any], field: str) -> None:
    req = request(schedule="0 */6 * * *" if spec["trigger"] == "scheduled" else "",
                  **{**spec, "push": True, "trigger": "manual"})
    body = docs.policy_body(req, name="team.images", registry_id=5)
    observed = as_harbor_returns(body)
    change = CHANGES[field]
    for key, value in change.items():
        if value == "flip":
            observed[key] = not observed[key]
        elif key == "filters":
            observed["filters"] = [f for f in observed["filters"] if f["type"] != "name"] + value
        else:
            observed[key] = value
    assert docs.policy_differences(body, observed) == [field]


def test_executions_and_zero_times() -> None:
    execution = docs.execution_from({
        "id": 12, "policy_id": 7, "status": "InProgress", "trigger": "manual",
        "start_time": "2026-11-23T10:00:00Z", "end_time": "0001-01-01T00:00:00Z",
        "total": 3, "succeed": 1, "failed": 0, "in_progress": 2, "stopped": 0})
    assert execution.running and execution.end_time is None and execution.succeeded == 1
    assert execution.as_status() == {
        "id": 12, "status": "InProgress", "trigger": "manual", "total": 3, "succeeded": 1,
        "failed": 0, "inProgress": 2, "stopped": 0, "startTime": "2026-11-23T10:00:00Z"}


def test_error_line_prefers_errors() -> None:
    log = "2026-11-23 copying library/a:1\n2026-11-23 ERROR: pull failed: 404\nclosing\n"
    assert docs.error_line(log) == "2026-11-23 ERROR: pull failed: 404"
    assert docs.error_line("just one line") == "just one line"
    assert docs.error_line("") == ""


def test_registry_body_and_differences() -> None:
    body = docs.registry_body(REMOTE)
    assert body["name"] == "dbops.team.harbor-dr" and body["url"] == "https://dr.example.net"
    assert body["credential"] == {"type": "basic", "access_key": "admin",
                                  "access_secret": "s3cret-Pw"}
    assert docs.owner_of(body["description"]) == "team/harbor-dr"
    masked = {**body, "id": 3, "status": "healthy",
              "credential": {**body["credential"], "access_secret": "*****"}}
    assert docs.registry_differences(body, masked) == []
    assert docs.registry_differences(body, {**masked, "url": "https://other"}) == ["url"]
    other_user = {**masked, "credential": {**masked["credential"], "access_key": "bob"}}
    assert docs.registry_differences(body, other_user) == ["credential"]
    update = docs.registry_update(body)
    assert update["credential_type"] == "basic" and update["access_secret"] == "s3cret-Pw"


def test_registry_credential_by_auth_type() -> None:
    anonymous = Remote(ServerSettings(key="t/h", type="harbor", url="http://h"))
    assert "credential" not in docs.registry_body(anonymous)
    with pytest.raises(SpecError, match=r"spec\.auth\.type 'iam'"):
        docs.registry_credential(Remote(ServerSettings(key="t/h", type="harbor",
                                                       url="http://h", auth_type="iam")))


def test_registry_names_fit_harbors_64_characters() -> None:
    long_key = "a" * 63 + "/" + "b" * 200
    name = docs.registry_name(Remote(ServerSettings(key=long_key, type="harbor",
                                                    url="http://h")))
    assert len(name) <= 64 and name.startswith("dbops." + "a" * 20)
    again = docs.registry_name(Remote(ServerSettings(key=long_key, type="harbor",
                                                     url="http://h")))
    other = docs.registry_name(Remote(ServerSettings(key=long_key + "c", type="harbor",
                                                     url="http://h")))
    assert name == again and name != other


def test_declared_registry_identity_credentials_and_errors() -> None:
    block = {"type": "docker-registry", "url": "https://mirror.example.net/",
             "secretRef": {"name": "mirror"}}
    remote = declared_registry("team", "spec.target.registry", block,
                               {"username": "bot", "password": "pw-1"})
    body = docs.registry_body(remote)
    assert body["type"] == "docker-registry" and body["url"] == "https://mirror.example.net"
    assert body["credential"] == {"type": "basic", "access_key": "bot", "access_secret": "pw-1"}
    assert body["name"].startswith("dbops.team.docker-registry-")
    rotated = declared_registry("team", "spec.target.registry", block,
                                {"username": "bot", "password": "pw-2"})
    assert docs.registry_name(rotated) == body["name"], "the Secret's content is no identity"
    moved = declared_registry("team", "spec.target.registry",
                              {**block, "url": "https://other.example.net"},
                              {"username": "bot", "password": "pw-1"})
    assert docs.registry_name(moved) != body["name"]
    anonymous = declared_registry("team", "spec.source.registry",
                                  {"type": "docker-hub", "url": "https://hub.docker.com"}, None)
    assert "credential" not in docs.registry_body(anonymous)
    oauth = declared_registry("team", "spec.target.registry",
                              {**block, "credentialType": "oauth"}, {"password": "tok"})
    assert docs.registry_body(oauth)["credential"] == {
        "type": "oauth", "access_key": "", "access_secret": "tok"}
    with pytest.raises(MissingReferenceError, match=r"spec\.target\.registry\.secretRef"):
        declared_registry("team", "spec.target.registry", block, None)
    with pytest.raises(MissingReferenceError, match="'password'"):
        declared_registry("team", "spec.target.registry", block, {"username": "bot"})
    assert "pw-1" not in remote.credential_hint() and "mirror" in remote.credential_hint()


def test_owner_marker_round_trip() -> None:
    assert docs.owner_of(docs.owner_marker("ns/p")) == "ns/p"
    assert docs.owner_of("made by hand") is None
    assert docs.owner_of(None) is None
