"""Pure Eden mapping: spec → sync repository / task / job bodies, Eden's answers checked,
drift named by field (never by value)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from replication_operator.backends.eden import docs
from replication_operator.backends.eden.backend import about_version
from replication_operator.credentials import Credentials
from replication_operator.errors import PermanentBackendError, SpecError
from replication_operator.http import ServerSettings

PEER = ServerSettings(key="team/eden-hq", type="eden", url="https://hq.example.org/eden/",
                      auth_type="basic",
                      credentials=Credentials(username="sync@hq.example.org",
                                              password="s3cret-pw"))


def test_defaults_and_direction() -> None:
    pull = docs.sync_settings({}, push=False)
    assert (pull.mode, pull.strategy, pull.update_policy, pull.conflict_policy,
            pull.interval) == (1, ("create", "update"), "NEWER", "NEWER", 300)
    assert docs.sync_settings({}, push=True).mode == 2
    assert docs.sync_settings({"mode": "both"}, push=True).mode == 3


@pytest.mark.parametrize(("options", "field"), [
    ({"mode": "push"}, "spec.options.mode"),
    ({"mode": "sideways"}, "spec.options.mode"),
    ({"strategy": ["create", "teleport"]}, "spec.options.strategy"),
    ({"strategy": []}, "spec.options.strategy"),
    ({"updatePolicy": "YOUNGER"}, "spec.options.updatePolicy"),
    ({"conflictPolicy": "newer"}, "spec.options.conflictPolicy"),
    ({"intervalSeconds": 5}, "spec.options.intervalSeconds"),
    ({"intervalSeconds": "300"}, "spec.options.intervalSeconds"),
    ({"worker_processes": 4}, "spec.options.worker_processes"),
])
def test_bad_options_are_refused_naming_the_field(options: dict[str, Any], field: str
                                                  ) -> None:
    with pytest.raises(SpecError) as caught:
        docs.sync_settings(options, push=False)
    assert field in str(caught.value)


def test_strategy_is_kept_in_eden_order_with_policy_additions() -> None:
    settings = docs.sync_settings({"strategy": ["update", "create"]}, push=False,
                                  extra_strategy=["delete"], without=["update"])
    assert settings.strategy == ("create", "delete")


def test_repository_name_is_deterministic_and_fits_eden() -> None:
    assert docs.repository_name("team", "eden-hq") == "dbops.team.eden-hq"
    long = docs.repository_name("a" * 40, "b" * 60)
    assert len(long) == docs.NAME_LIMIT and long.startswith("dbops.aaaa")
    assert long == docs.repository_name("a" * 40, "b" * 60)
    assert long != docs.repository_name("a" * 40, "b" * 59 + "c")


def test_bodies_for_a_new_repository_and_its_task() -> None:
    settings = docs.sync_settings({"updatePolicy": "OTHER"}, push=False)
    body = docs.create_repository_body(
        docs.repository_fields("dbops.team.eden-hq", PEER, "source"),
        [docs.task_body("org_organisation", settings)])
    (record,) = body["$_sync_repository"]
    assert record["url"] == "https://hq.example.org/eden" and record["apitype"] == "eden"
    assert (record["username"], record["password"]) == ("sync@hq.example.org", "s3cret-pw")
    assert record["synchronise_uuids"] == "false"
    (task,) = record["$_sync_task"]
    assert task == {"resource_name": "org_organisation", "mode": "1",
                    "strategy": {"@value": '["create", "update"]'},
                    "update_policy": "OTHER", "conflict_policy": "NEWER"}
    assert docs.update_repository_body(None, []) == {"$_sync_repository": [{}]}


def test_peer_must_log_in_with_basic_auth() -> None:
    bearer = ServerSettings(key="team/x", type="eden", url="http://x/eden", auth_type="bearer",
                            credentials=Credentials(token="t"))
    with pytest.raises(SpecError, match=r"spec\.source\.server"):
        docs.peer_credentials(bearer, "source")


def test_marker_round_trip_and_limit() -> None:
    made = docs.marker(docs.POLICY, "team/nightly", ["org_organisation", "org_office"], "f")
    assert made.text == "dbops.policy:team/nightly:org_organisation,org_office"
    assert docs.parse_marker(made.text) == made
    assert docs.parse_marker("nightly backup") is None
    assert docs.parse_marker("dbops.repl:team/x.y:org_organisation") == \
        docs.Marker("repl", "team/x.y", ("org_organisation",))
    with pytest.raises(SpecError, match=r"spec\.source\.databases"):
        docs.marker(docs.POLICY, "t/p", [f"org_t{i:03d}" for i in range(60)],
                    "spec.source.databases")
    assert docs.key_from_external_name("team.orgs.v2") == "team/orgs.v2"


def test_job_body_links_a_scheduler_task_to_the_repository_by_uuid() -> None:
    job = docs.JobSpec(docs.marker(docs.REPLICATION, "team/orgs", ["org_organisation"], "f"),
                       period=300, repeats=0, enabled=True, timeout=600, user_id=1)
    body = docs.job_body("urn:uuid:r", 7, job, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert body["$_sync_repository"] == [{"@uuid": "urn:uuid:r", "$_sync_job": [
        {"$k_scheduler_task_id": {"@resource": "scheduler_task", "@tuid": "j"}}]}]
    (task,) = body["$_scheduler_task"]
    assert task["@tuid"] == "j" and task["function_name"] == "sync_synchronize"
    assert (task["args"], json.loads(task["vars"]), task["period"], task["repeats"],
            task["enabled"], task["status"]) == ("[7]", {"user_id": 1}, "300", "0", "true",
                                                 "QUEUED")
    assert task["start_time"] == task["next_run_time"] == "2025-01-02T03:04:05"
    assert task["task_name"] == "dbops.repl:team/orgs:org_organisation"


def test_check_write_reads_the_body_not_the_status_code() -> None:
    assert docs.check_write({"status": "success", "statuscode": "200", "records": 1,
                             "created": [4]}, expect="created", what="x") == [4]
    with pytest.raises(PermanentBackendError) as caught:
        docs.check_write({"status": "success", "statuscode": "200", "records": 0},
                         expect="created", what="creating repository r")
    assert caught.value.code == "NotWritten" and "ignored" in caught.value.message
    refused = {"status": "failed", "statuscode": "400", "message": "Validation error",
               "tree": {"$_sync_repository": [{"name": "r", "password": "s3cret-pw",
                                               "@error": "apitype: Value not allowed",
                                               "$_sync_task": [{"@error": "mode: x"}]}]}}
    with pytest.raises(PermanentBackendError) as caught:
        docs.check_write(refused, expect="created", what="creating repository r")
    assert caught.value.code == "ValidationError"
    assert "apitype: Value not allowed" in caught.value.message
    assert "mode: x" in caught.value.message
    assert "s3cret-pw" not in caught.value.message, "the tree echoes the password"


def test_task_differences_name_fields() -> None:
    settings = docs.sync_settings({}, push=False)
    same = {"resource_name": "org_organisation", "mode": 1, "strategy": ["update", "create"],
            "update_policy": "NEWER", "conflict_policy": "NEWER"}
    assert docs.task_differences(same, "org_organisation", settings) == []
    edited = {**same, "mode": 3, "strategy": '["create"]', "conflict_policy": "THIS"}
    assert docs.task_differences(edited, "org_organisation", settings) == [
        "task.mode", "task.strategy", "task.conflict_policy"]
    assert docs.task_differences(None, "org_organisation", settings) == [
        "task org_organisation (missing)"]


def test_job_differences_name_fields_and_duplicates() -> None:
    job = docs.JobSpec(docs.marker(docs.REPLICATION, "t/o", ["org_organisation"], "f"),
                       period=300, repeats=0, enabled=True, timeout=600, user_id=1)
    row = {"id": 3, "task_name": job.marker.text, "function_name": "sync_synchronize",
           "args": "[7]", "vars": '{"user_id": 1}', "period": 300, "repeats": 0,
           "timeout": 600, "enabled": True, "status": "QUEUED"}
    assert docs.job_differences([row], 7, job) == []
    assert docs.job_differences([{**row, "enabled": "false", "period": "60"}], 7, job) == [
        "job.period", "job.enabled"]
    assert docs.job_differences([row, row], 7, job) == ["job (duplicate link rows)"]
    assert docs.job_differences([], 7, job) == ["job (missing)"]


def test_repository_differences_compare_the_password_without_showing_it() -> None:
    want = docs.repository_fields("dbops.t.p", PEER, "source")
    record = {"name": "dbops.t.p", "url": "https://hq.example.org/eden",
              "apitype": {"@value": "eden", "$": "Sahana Eden"},
              "username": "sync@hq.example.org", "password": "s3cret-pw"}
    assert docs.repository_differences(record, want) == []
    changed = docs.repository_differences({**record, "password": "other"}, want)
    assert changed == ["repository.password"]


def test_the_version_is_read_from_edens_about_page() -> None:
    """default/about as Eden built from master of 2024 shows it (its label is the
    deployment's short system name)."""
    html = ('<tr class="odd"><td><strong>Core Components</strong></td><td><strong>Version'
            '</strong></td></tr><tr><td>Sahana</td><td>eden-dev-73981fd80 (2022-05-20 '
            '14:18:14)</td></tr><tr class="odd"><td>Web Server</td><td>Rocket 1.2.6</td>')
    assert about_version(html) == "eden-dev-73981fd80 (2022-05-20 14:18:14)"
    assert about_version("<html>About</html>") == "unknown"
