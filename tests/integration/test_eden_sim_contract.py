"""The Eden simulator answers as BACKENDS.md §4 says a real Eden does: one test per fact
the simulator copies (each fails on a simulator without it). Two simulators, plain
HTTP, no operator code."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration
ORG, OFFICE = "org_organisation", "org_office"


class Eden:
    """One simulator over HTTP, as its admin (or as `auth`)."""

    def __init__(self, sim: Any, auth: tuple[str, str] | None = None) -> None:
        self.sim = sim
        self.http = httpx.Client(base_url=f"{sim.url}/", timeout=10,
                                 auth=auth or (sim.email, sim.password))

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def send(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, json=body, **kwargs)

    def create_repository(self, name: str, peer: Any, tasks: list[dict[str, Any]] | None = None,
                          password: str | None = None, **fields: Any) -> int:
        record = {"name": name, "apitype": "eden", "url": peer.url, "username": peer.email,
                  "password": password if password is not None else peer.password,
                  "synchronise_uuids": "false", **fields,
                  "$_sync_task": tasks if tasks is not None else [task(ORG, 1)]}
        answer = self.send("POST", "sync/repository.s3json",
                           {"$_sync_repository": [record]}).json()
        assert answer["status"] == "success" and answer["created"], answer
        return int(answer["created"][0])

    def repository(self, repository_id: int) -> dict[str, Any]:
        return next(r for r in self.get("sync/repository.json") if r["id"] == repository_id)

    def tasks(self, repository_id: int) -> list[dict[str, Any]]:
        return list(self.get(f"sync/repository/{repository_id}/task.json"))

    def jobs(self, repository_id: int) -> list[dict[str, Any]]:
        return list(self.get(f"sync/repository/{repository_id}/job.json"))

    def add_job(self, repository_id: int, **fields: Any) -> httpx.Response:
        uuid = self.repository(repository_id)["uuid"]
        scheduler = {"@tuid": "j", "task_name": "by hand", "function_name": "sync_synchronize",
                     "args": f"[{repository_id}]", "vars": '{"user_id": 1}',
                     "application_name": "eden/default", "period": "600", "repeats": "0",
                     "timeout": "600", "enabled": "true", "status": "QUEUED", **fields}
        return self.send("PUT", "sync/repository.s3json", {
            "$_sync_repository": [{"@uuid": uuid, "$_sync_job": [
                {"$k_scheduler_task_id": {"@resource": "scheduler_task", "@tuid": "j"}}]}],
            "$_scheduler_task": [scheduler]})

    def log(self, repository_id: int) -> list[dict[str, Any]]:
        return list(self.get("sync/log.json", **{"~.repository_id": repository_id}))

    def run(self, repository_id: int) -> None:
        """Run the repository now (the simulator's scheduler, without waiting for it)."""
        self.http.post(f"{self.sim.root}/_sim/run",
                       json={"repository_id": repository_id}).raise_for_status()

    def organisation(self, name: str, **fields: Any) -> None:
        answer = self.send("POST", "org/organisation.s3json",
                           {"$_org_organisation": [{"name": name, **fields}]}).json()
        assert answer["status"] == "success", answer

    def organisations(self) -> set[str]:
        return {r["name"] for r in self.get("org/organisation.json")}


def task(resource: str, mode: int, **fields: Any) -> dict[str, Any]:
    return {"resource_name": resource, "mode": str(mode),
            "strategy": {"@value": json.dumps(["create", "update"])},
            "update_policy": "NEWER", "conflict_policy": "NEWER", **fields}


def until(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def a(eden_a: Any) -> Iterator[Eden]:
    yield Eden(eden_a)
    eden_a.store.faults.clear()
    eden_a.store.set_settings(max_period=None, strict_policy=False, adapter_bug=False)


@pytest.fixture
def b(eden_b: Any) -> Iterator[Eden]:
    yield Eden(eden_b)
    eden_b.store.faults.clear()
    eden_b.store.set_settings(max_period=None, strict_policy=False, adapter_bug=False)


@pytest.fixture
def name(unique_name: Callable[[str], str]) -> str:
    return unique_name("repo")


# --- reading -----------------------------------------------------------------------------

def test_repository_list_has_exactly_id_name_uuid_last_connected(a: Eden, b: Eden,
                                                                  name: str) -> None:
    repository_id = a.create_repository(name, b.sim)
    row = a.repository(repository_id)
    assert set(row) == {"id", "name", "uuid", "last_connected"}
    assert row["name"] == name and row["uuid"].startswith("urn:uuid:")


def test_task_list_fields(a: Eden, b: Eden, name: str) -> None:
    repository_id = a.create_repository(name, b.sim, [task(ORG, 1)])
    (row,) = a.tasks(repository_id)
    assert set(row) == {"id", "resource_name", "mode", "strategy", "update_policy",
                        "conflict_policy", "components", "last_pull", "last_push"}
    assert (row["resource_name"], row["mode"], row["strategy"]) == \
        (ORG, 1, ["create", "update"])
    assert row["last_pull"] is None and row["last_push"] is None
    assert row["components"] is False, "listed false when not given (seen on Eden built here)"
    every = task(OFFICE, 4, strategy={"@value": json.dumps(
        ["create", "update", "delete", "merge"])}, update_policy="THIS",
        conflict_policy="MASTER", last_pull="2020-01-01T00:00:00")
    a.send("PUT", f"sync/repository/{repository_id}.s3json",
           {"$_sync_repository": [{"$_sync_task": [every]}]})
    office = next(t for t in a.tasks(repository_id) if t["resource_name"] == OFFICE)
    assert (office["mode"], office["strategy"], office["update_policy"],
            office["conflict_policy"]) == (4, ["create", "update", "delete", "merge"], "THIS",
                                           "MASTER")
    assert office["last_pull"] is None, "last_pull is read-only"


def test_s3json_read_returns_the_record_with_the_peer_password_in_clear(
        a: Eden, b: Eden, name: str) -> None:
    repository_id = a.create_repository(name, b.sim)
    record = a.get(f"sync/repository/{repository_id}.s3json",
                   mcomponents="task,log")["$_sync_repository"][0]
    assert record["password"] == b.sim.password and record["username"] == b.sim.email
    assert record["$_sync_task"][0]["resource_name"] == ORG and "$_sync_log" in record


def test_log_is_newest_first_filtered_and_batched_with_belongs(a: Eden, b: Eden,
                                                               name: str) -> None:
    first = a.create_repository(f"{name}-1", b.sim)
    second = a.create_repository(f"{name}-2", b.sim)
    a.run(first)
    a.run(second)
    rows = a.get("sync/log.json", **{"~.repository_id__belongs": f"{first},{second}"})
    assert {r["repository_id"] for r in rows} == {first, second}
    stamps = [(r["timestmp"], r["id"]) for r in rows]
    assert stamps == sorted(stamps, reverse=True), "newest first"
    assert {r["repository_id"] for r in a.log(first)} == {first}
    assert len(a.get("sync/log.json", limit=1)) == 1
    assert set(rows[0]) >= {"timestmp", "repository_id", "resource_name", "mode", "action",
                            "result", "remote", "message"}


def test_lists_show_datetimes_with_a_space(a: Eden, b: Eden, name: str) -> None:
    """Seen on Eden built here: `2026-12-01 21:39:24` in `.json` lists (S3XML and
    `.s3json` exports use `2026-12-01T21:39:20`)."""
    b.organisation(f"{name} dated")
    repository_id = a.create_repository(name, b.sim, [task(ORG, 1)])
    a.run(repository_id)
    stamps = [a.tasks(repository_id)[0]["last_pull"], a.log(repository_id)[0]["timestmp"],
              a.repository(repository_id)["last_connected"]]
    for stamp in stamps:
        assert len(stamp) == 19 and stamp[10] == " ", stamp
    record = a.get(f"sync/repository/{repository_id}.s3json", mcomponents="None")
    assert record["$_sync_repository"][0]["last_connected"]["@value"][10] == "T"


def test_the_about_page_shows_the_version_after_core_components(a: Eden) -> None:
    """Seen on Eden built here: `<tr><td>Sahana</td><td>eden-dev-73981fd80 (2022-05-20
    14:18:14)</td></tr>` after the row "Core Components | Version"."""
    html = a.http.get("default/about").text
    assert "<td><strong>Core Components</strong></td><td><strong>Version</strong></td>" \
        "</tr><tr><td>Sahana</td><td>4.0.0-sim</td></tr>" in html
    assert "Eden Version" not in html


# --- writing -------------------------------------------------------------------------------

def test_post_to_json_creates_nothing_and_answers_with_the_list(a: Eden, b: Eden,
                                                                name: str) -> None:
    before = a.get("sync/repository.json")
    response = a.send("POST", "sync/repository.json",
                      {"$_sync_repository": [{"name": name, "url": b.sim.url}]})
    assert response.status_code == 200 and response.json() == before
    assert a.get("sync/repository.json") == before


def test_creating_with_a_url_registers_at_the_peer_and_every_write_registers_again(
        a: Eden, b: Eden, name: str) -> None:
    repository_id = a.create_repository(name, b.sim)
    host = a.sim.url.split("//")[1].split("/")[0]
    assert host in {r["name"] for r in b.get("sync/repository.json")}, "passive repository"
    registrations = [r for r in a.log(repository_id) if r["action"] == "request registration"]
    assert len(registrations) == 1 and registrations[0]["result"] == "success"
    answer = a.send("PUT", f"sync/repository/{repository_id}.s3json",
                    {"$_sync_repository": [{"proxy": ""}]}).json()
    assert answer["updated"] == [repository_id]
    assert len([r for r in a.log(repository_id)
                if r["action"] == "request registration"]) == 2


def test_put_updates_tasks_matched_on_resource_and_addresses_by_uuid(
        a: Eden, b: Eden, name: str) -> None:
    repository_id = a.create_repository(name, b.sim, [task(ORG, 1)])
    answer = a.send("PUT", f"sync/repository/{repository_id}.s3json", {
        "$_sync_repository": [{"$_sync_task": [task(ORG, 3), task("org_office", 2)]}]}).json()
    assert answer == {"status": "success", "statuscode": "200", "records": 1,
                      "updated": [repository_id]}
    modes = {t["resource_name"]: t["mode"] for t in a.tasks(repository_id)}
    assert modes == {ORG: 3, "org_office": 2}
    uuid = a.repository(repository_id)["uuid"]
    answer = a.send("PUT", "sync/repository.s3json", {"$_sync_repository": [
        {"@uuid": uuid, "$_sync_task": [task(ORG, 4)]}]}).json()
    assert answer["updated"] == [repository_id]
    assert {t["resource_name"]: t["mode"] for t in a.tasks(repository_id)}[ORG] == 4


def test_component_writes_create_nothing_and_create_s3json_is_415(a: Eden, b: Eden,
                                                                   name: str) -> None:
    repository_id = a.create_repository(name, b.sim, [])
    for method in ("PUT", "POST"):
        response = a.send(method, f"sync/repository/{repository_id}/task.s3json",
                          {"$_sync_task": [task(ORG, 1)]})
        assert response.status_code == 200 and response.json()["status"] == "success"
    assert a.tasks(repository_id) == []
    response = a.send("POST", "sync/repository/create.s3json",
                      {"$_sync_repository": [{"name": f"{name}-x"}]})
    assert (response.status_code, response.json()) == (415, {
        "status": "failed", "statuscode": "415", "message": "Unsupported data format!"})


def test_a_job_is_a_linked_scheduler_task_and_updating_it_duplicates_the_link(
        a: Eden, b: Eden, name: str) -> None:
    repository_id = a.create_repository(name, b.sim)
    answer = a.add_job(repository_id, period="900", enabled="false").json()
    assert answer["status"] == "success" and answer["updated"] == [repository_id]
    (job,) = a.jobs(repository_id)
    assert (job["function_name"], job["args"], job["period"], job["repeats"], job["status"],
            job["enabled"]) == ("sync_synchronize", f"[{repository_id}]", 900, 0, "QUEUED",
                                False)
    assert json.loads(job["vars"]) == {"user_id": 1}
    uuid = a.repository(repository_id)["uuid"]
    a.send("PUT", "sync/repository.s3json", {
        "$_sync_repository": [{"@uuid": uuid, "$_sync_job": [
            {"$k_scheduler_task_id": {"@resource": "scheduler_task", "@tuid": "j"}}]}],
        "$_scheduler_task": [{"@tuid": "j", "@uuid": job["uuid"], "period": "60"}]})
    rows = a.jobs(repository_id)
    assert [r["id"] for r in rows] == [job["id"], job["id"]], "a duplicate link row"
    assert rows[0]["period"] == 60


def test_deletes_are_soft_and_unknown_ids_are_404(a: Eden, b: Eden, name: str) -> None:
    repository_id = a.create_repository(name, b.sim, [task(ORG, 1)])
    a.add_job(repository_id, enabled="false")
    (old,) = a.tasks(repository_id)
    response = a.send("DELETE", f"sync/repository/{repository_id}/task/{old['id']}.json")
    assert response.status_code == 200 and response.json()["status"] == "success"
    a.send("PUT", f"sync/repository/{repository_id}.s3json",
           {"$_sync_repository": [{"$_sync_task": [task(ORG, 1)]}]})
    (new,) = a.tasks(repository_id)
    assert new["id"] != old["id"], "a re-created task gets a new id"
    missing = a.send("DELETE", f"sync/repository/{repository_id}/task/{old['id']}.json")
    assert missing.status_code == 404 and missing.json() == {"status": "failed",
                                                             "statuscode": "404"}
    (job,) = a.jobs(repository_id)
    assert a.send("DELETE", f"sync/repository/{repository_id}/job/{job['id']}.json"
                  ).json()["status"] == "success"
    assert a.jobs(repository_id) == []
    assert a.log(repository_id), "registration rows"
    assert a.send("DELETE", f"sync/repository/{repository_id}.json").status_code == 200
    assert repository_id not in {r["id"] for r in a.get("sync/repository.json")}
    assert a.log(repository_id) == [], "its log rows are removed"
    assert a.send("DELETE", f"sync/repository/{repository_id}.json").status_code == 404


def test_a_name_matches_a_repository_even_a_deleted_one_and_is_not_unique(
        a: Eden, b: Eden, name: str) -> None:
    """Seen on Eden built here (S3Duplicate by name): a POST with the name of a
    repository updates it, whatever the case, and brings a deleted one back."""
    first = a.create_repository(name, b.sim)
    answer = a.send("POST", "sync/repository.s3json", {"$_sync_repository": [
        {"name": name.upper(), "proxy": "http://proxy.example"}]}).json()
    assert answer == {"status": "success", "statuscode": "200", "records": 1,
                      "updated": [first]}
    assert a.send("DELETE", f"sync/repository/{first}.json").json()["message"] == \
        "Repository configuration deleted"
    again = a.send("POST", "sync/repository.s3json",
                   {"$_sync_repository": [{"name": name}]}).json()
    assert again["updated"] == [first] and "created" not in again
    assert first in {r["id"] for r in a.get("sync/repository.json")}


@pytest.fixture
def pair() -> Iterator[tuple[Eden, Eden]]:
    """Two simulators of their own, with Eden's one-repository-per-peer rules (the
    session's shared ones have them off)."""
    from eden_sim import EdenSimulator
    with EdenSimulator(email="admin@one.example", password="one-pw") as one, \
            EdenSimulator(email="admin@two.example", password="two-pw") as two:
        assert one.store.settings.one_repository_per_peer
        yield Eden(one), Eden(two)


def test_a_repository_url_is_unique(pair: tuple[Eden, Eden]) -> None:
    """Seen on Eden built here: a second repository for the same peer URL is refused."""
    one, two = pair
    first = one.create_repository("first", two.sim)
    body = one.send("POST", "sync/repository.s3json", {"$_sync_repository": [
        {"name": "second", "url": two.sim.url}]}).json()
    assert (body["status"], body["message"]) == ("failed", "Validation error")
    assert "url: Value already in database or empty" in json.dumps(body["tree"])
    one.send("DELETE", f"sync/repository/{first}.json")  # Eden clears a deleted one's url
    assert one.send("POST", "sync/repository.s3json", {"$_sync_repository": [
        {"name": "second", "url": two.sim.url}]}).json()["status"] == "success"


def test_a_registration_names_the_peer_whose_uuid_the_repository_takes(
        pair: tuple[Eden, Eden]) -> None:
    """Seen on Eden built here: the registration answer has the peer's site uuid
    (`sender`), which becomes the repository's uuid; the peer's passive repository has
    this site's uuid and host; a later registration is an update."""
    one, two = pair
    repository_id = one.create_repository("to-two", two.sim)
    assert one.repository(repository_id)["uuid"] == two.sim.store.site_uuid
    host = one.sim.url.split("//")[1].split("/")[0]
    (passive,) = two.get("sync/repository.json")
    assert (passive["name"], passive["uuid"]) == (host, one.sim.store.site_uuid)
    incoming = two.log(passive["id"])
    assert [(r["resource_name"], r["mode"], r["action"], r["message"]) for r in incoming] \
        == [("none", "register/incoming", "none", "Registration successful")]
    one.send("PUT", f"sync/repository/{repository_id}.s3json",
             {"$_sync_repository": [{"proxy": ""}]})
    assert one.log(repository_id)[0]["message"] == "Registration update successful"


def test_the_peers_registration_renames_its_repository_and_a_second_one_is_a_500(
        pair: tuple[Eden, Eden]) -> None:
    """Seen on Eden built here, with a pull set up on two (its repository for one) and
    then a push on one: one's registration at two finds two's repository by uuid and
    renames it after one's host; one's new repository then takes two's uuid, which its
    passive repository for two already has: HTTP 500, nothing written on one. Taking
    over the passive repository (named after two's host) works."""
    one, two = pair
    pulling = two.create_repository("two-pulls-from-one", one.sim)
    one_host = one.sim.url.split("//")[1].split("/")[0]
    two_host = two.sim.url.split("//")[1].split("/")[0]
    (passive,) = one.get("sync/repository.json")
    assert passive["name"] == two_host
    response = one.send("POST", "sync/repository.s3json", {"$_sync_repository": [
        {"name": "one-pushes-to-two", "url": two.sim.url, "username": two.sim.email,
         "password": two.sim.password, "$_sync_task": [task(ORG, 2)]}]})
    assert response.status_code == 500 and "Internal error" in response.text
    assert one.get("sync/repository.json") == [passive], "rolled back"
    assert two.repository(pulling)["name"] == one_host, "renamed by the registration"
    answer = one.send("PUT", f"sync/repository/{passive['id']}.s3json", {
        "$_sync_repository": [{"name": "one-pushes-to-two", "url": two.sim.url,
                               "username": two.sim.email, "password": two.sim.password,
                               "$_sync_task": [task(ORG, 2)]}]}).json()
    assert answer["updated"] == [passive["id"]]
    assert one.repository(passive["id"])["uuid"] == two.sim.store.site_uuid


# --- errors ----------------------------------------------------------------------------------

def test_malformed_json_is_400_failed(a: Eden) -> None:
    response = a.http.post("sync/repository.s3json", content=b"",
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"status": "failed", "statuscode": "400",
                               "message": "Expecting value: line 1 column 1 (char 0)"}


def test_an_empty_object_or_a_list_is_400_invalid_source(a: Eden) -> None:
    """Seen on Eden built here (a write check must name the table: `{"$_sync_repository":
    []}` answers success with `records: 0`)."""
    for body in ({}, []):
        response = a.send("POST", "sync/repository.s3json", body)
        assert (response.status_code, response.json()) == (400, {
            "status": "failed", "statuscode": "400", "message": "Invalid source"}), body
    assert a.send("POST", "sync/repository.s3json", {"$_sync_repository": []}).json() == \
        {"status": "success", "statuscode": "200", "records": 0}


def test_validation_errors_are_http_200_with_status_failed_and_a_tree(
        a: Eden, b: Eden, name: str) -> None:
    response = a.send("POST", "sync/repository.s3json", {"$_sync_repository": [
        {"name": name, "apitype": "nonsense", "url": b.sim.url, "password": "pw-echo"}]})
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["statuscode"], body["message"]) == \
        ("failed", "400", "Validation error")
    assert "apitype: Value not allowed" in json.dumps(body["tree"])
    for apitype in ("eden", "ccrm", "wrike", "mcb", "adashi", "ftp", "filesync"):
        answer = a.send("POST", "sync/repository.s3json", {"$_sync_repository": [
            {"name": f"{name}-{apitype}", "apitype": apitype}]}).json()
        assert answer["status"] == "success" and answer["created"], apitype
    assert name not in {r["name"] for r in a.get("sync/repository.json")}
    body = a.send("POST", "sync/repository.s3json",
                  {"$_sync_repository": [{"apitype": "eden"}]}).json()
    assert body["status"] == "failed" and "name: value(s) required" in json.dumps(body["tree"])


def test_bodies_without_a_table_key_and_unknown_fields_are_a_successful_no_op(
        a: Eden, b: Eden, name: str) -> None:
    before = a.get("sync/repository.json")
    body = a.send("POST", "sync/repository.s3json", {"sync_repository": [{"name": name}]}
                  ).json()
    assert body == {"status": "success", "statuscode": "200", "records": 0}
    assert a.get("sync/repository.json") == before
    repository_id = a.create_repository(name, b.sim, no_such_field="x")
    assert a.repository(repository_id)["name"] == name


def test_login_rules(a: Eden, b: Eden, name: str) -> None:
    wrong = Eden(a.sim, auth=(a.sim.email, "wrong"))
    anonymous = httpx.Client(base_url=f"{a.sim.url}/", timeout=10)
    for client in (wrong.http, anonymous):
        response = client.post("sync/repository.s3json",
                               json={"$_sync_repository": [{"name": name}]})
        assert response.status_code == 401 and "Authentication Required" in response.text
        assert response.headers["www-authenticate"] == 'Basic realm="eden"'
    repository_id = a.create_repository(name, b.sim)
    response = wrong.send("DELETE", f"sync/repository/{repository_id}.json")
    assert response.status_code == 404 and "Operation not permitted" in response.text
    assert wrong.get("sync/repository.json"), "a wrong password reads as anonymous"
    a.http.post(f"{a.sim.root}/_sim/users", json={"email": "clerk@example.com", "password": "clerk"}
                ).raise_for_status()
    a.sim.store.set_settings(strict_policy=True)
    response = Eden(a.sim, auth=("clerk@example.com", "clerk")).send(
        "POST", "sync/repository.s3json", {"$_sync_repository": [{"name": f"{name}-c"}]})
    assert response.status_code == 403 and "Insufficient Privileges" in response.text


# --- sync behaviour ------------------------------------------------------------------------

def test_pull_moves_records_and_last_pull_is_the_newest_record_plus_one_second(
        a: Eden, b: Eden, name: str) -> None:
    b.organisation(f"{name} pulled")
    newest = max(datetime.fromisoformat(r["modified_on"]).replace(tzinfo=UTC)
                 for r in b.get("org/organisation.json"))
    repository_id = a.create_repository(name, b.sim, [task(ORG, 1)])
    a.run(repository_id)
    assert f"{name} pulled" in a.organisations()
    (row,) = a.tasks(repository_id)
    assert datetime.fromisoformat(row["last_pull"]).replace(tzinfo=UTC) == \
        newest + timedelta(seconds=1)
    (log,) = [r for r in a.log(repository_id) if r["resource_name"] == ORG]
    assert (log["mode"], log["action"], log["result"]) == ("pull/outgoing", "import", "success")


def test_push_sends_records_and_never_sets_last_push(a: Eden, b: Eden, name: str) -> None:
    a.organisation(f"{name} pushed")
    repository_id = a.create_repository(name, b.sim, [task(ORG, 2)])
    a.run(repository_id)
    assert f"{name} pushed" in b.organisations()
    assert a.tasks(repository_id)[0]["last_push"] is None
    (log,) = [r for r in a.log(repository_id) if r["resource_name"] == ORG]
    assert (log["mode"], log["action"], log["result"]) == ("push/outgoing", "send", "success")


def test_mode_both_moves_records_both_ways(a: Eden, b: Eden, name: str) -> None:
    a.organisation(f"{name} from a")
    b.organisation(f"{name} from b")
    repository_id = a.create_repository(name, b.sim, [task(ORG, 3)])
    a.run(repository_id)
    assert {f"{name} from a", f"{name} from b"} <= a.organisations() & b.organisations()


def test_an_unknown_resource_is_accepted_then_skipped_and_the_peer_answers_400(
        a: Eden, b: Eden, name: str) -> None:
    repository_id = a.create_repository(name, b.sim, [task("org_nosuchtable", 1)])
    assert a.tasks(repository_id)[0]["resource_name"] == "org_nosuchtable"
    a.run(repository_id)
    assert [r for r in a.log(repository_id) if r["resource_name"]] == []
    assert a.tasks(repository_id)[0]["last_pull"] is None
    response = b.http.get("sync/sync.xml", params={"resource": "org_nosuchtable"})
    assert response.status_code == 400


def test_sync_xml_msince_is_naive_utc_and_one_with_a_zone_is_ignored(
        a: Eden, b: Eden, name: str) -> None:
    """Seen on Eden built here: `msince=2030-01-01T00:00:00` exports nothing, the same
    with a `Z` exports everything; msince is inclusive."""
    b.organisation(f"{name} dated")
    params = {"resource": ORG}
    future = b.http.get("sync/sync.xml", params={**params, "msince": "2030-01-01T00:00:00"})
    assert 'results="0"' in future.text
    zoned = b.http.get("sync/sync.xml", params={**params, "msince": "2030-01-01T00:00:00Z"})
    assert f"{name} dated" in zoned.text


def test_a_pull_needs_no_login_a_push_does(a: Eden, b: Eden, name: str) -> None:
    """Seen on Eden built here (default policy): sync.xml GET as anonymous (or with a
    wrong password) gets the data; a POST is 401; an unknown table is a bare 400, a
    resource name without "_" a plain-text 400 "Invalid request"."""
    b.organisation(f"{name} open")
    anonymous = httpx.Client(base_url=f"{b.sim.url}/", timeout=10)
    pulled = anonymous.get("sync/sync.xml", params={"resource": ORG})
    assert pulled.status_code == 200 and f"{name} open" in pulled.text
    pushed = anonymous.post("sync/sync.xml", params={"resource": ORG}, content=b"<s3xml/>")
    assert pushed.status_code == 401 and pushed.text == "Authentication Required"
    unknown = b.http.get("sync/sync.xml", params={"resource": "org_nosuchtable"})
    assert (unknown.status_code, unknown.json()) == (400, {"status": "failed",
                                                           "statuscode": "400"})
    odd = b.http.get("sync/sync.xml", params={"resource": "nosuch"})
    assert (odd.status_code, odd.text) == (400, "Invalid request")
    b.sim.store.set_settings(strict_policy=True)  # an assumption: see the simulator
    assert anonymous.get("sync/sync.xml", params={"resource": ORG}).status_code == 401


def test_a_failed_task_skips_the_later_tasks_that_do_not_pull(a: Eden, b: Eden,
                                                               name: str) -> None:
    """Seen on Eden built here (S3Sync.synchronize keeps the last error until a pull
    resets it): after a failed push, a pulling task runs and so does a push after it;
    with a mode-4 task in between, the push after it is skipped (no row)."""
    a.organisation(f"{name} org")
    a.sim.store.data_import("pr_person", [{"name": f"{name} person"}])
    repository_id = a.create_repository(name, b.sim, [task(ORG, 2), task(OFFICE, 1),
                                                      task("pr_person", 2)])
    b.sim.store.faults.add_fault(500, count=1, path_prefix="/eden/sync/sync.xml",
                                 method="POST")
    a.run(repository_id)
    rows = [(r["resource_name"], r["action"], r["result"]) for r in a.log(repository_id)
            if r["resource_name"]]
    assert sorted(rows) == [(OFFICE, "import", "success"), (ORG, "send", "fatal"),
                            ("pr_person", "send", "success")]
    a.send("PUT", f"sync/repository/{repository_id}.s3json",
           {"$_sync_repository": [{"$_sync_task": [task(OFFICE, 4)]}]})
    b.sim.store.requests.clear()
    b.sim.store.faults.add_fault(500, count=1, path_prefix="/eden/sync/sync.xml",
                                 method="POST")
    a.run(repository_id)
    pushes = b.sim.store.requests.list("POST", "/eden/sync/sync.xml")
    assert [r.query.split("&")[0] for r in pushes] == [f"resource={ORG}"], \
        "pr_person is skipped after the failed org_organisation (office is mode 4)"


def test_a_wrong_peer_password_shows_in_the_log_as_eden_words_it(a: Eden, b: Eden,
                                                                 name: str) -> None:
    pull = a.create_repository(f"{name}-pull", b.sim, [task(ORG, 1)], password="wrong")
    push = a.create_repository(f"{name}-push", b.sim, [task(ORG, 2)], password="wrong")
    a.organisation(f"{name} stays")
    a.run(pull)  # seen on Eden built here: the default policy serves the pull anonymously
    (pulled,) = [r for r in a.log(pull) if r["resource_name"]]
    assert (pulled["action"], pulled["result"]) == ("import", "success")
    b.sim.store.set_settings(strict_policy=True)  # a peer that refuses anonymous reads
    a.run(pull)
    pulled = next(r for r in a.log(pull) if r["resource_name"])
    assert (pulled["result"], pulled["message"]) == ("error", "b'Authentication Required'")
    b.sim.store.set_settings(strict_policy=False)
    a.run(push)
    (pushed,) = [r for r in a.log(push) if r["resource_name"]]
    assert (pushed["result"], pushed["message"]) == ("fatal", "Authentication Required")


def test_last_connected_is_set_even_when_the_sync_fails(a: Eden, b: Eden, name: str) -> None:
    a.organisation(f"{name} to push")
    repository_id = a.create_repository(name, b.sim, [task(ORG, 2)], password="wrong")
    assert a.repository(repository_id)["last_connected"] is None
    a.run(repository_id)
    assert a.repository(repository_id)["last_connected"] is not None
    assert any(r["result"] == "fatal" and r["resource_name"] == ORG
               for r in a.log(repository_id))


def test_creating_a_repository_with_a_url_on_an_unfixed_adapter_is_a_500(
        a: Eden, b: Eden, name: str) -> None:
    a.sim.store.set_settings(adapter_bug=True)
    response = a.send("POST", "sync/repository.s3json", {"$_sync_repository": [
        {"name": name, "url": b.sim.url, "username": b.sim.email,
         "password": b.sim.password}]})
    assert response.status_code == 500 and "encodestring" in response.text


# --- the simulator's scheduler (assumptions, see tests/eden_sim/__init__.py) ------------------

def test_jobs_run_while_served_once_or_forever(a: Eden, b: Eden, name: str) -> None:
    a.sim.store.set_settings(max_period=1)
    b.organisation(f"{name} scheduled")
    once = a.create_repository(f"{name}-once", b.sim, [task(ORG, 1)])
    forever = a.create_repository(f"{name}-forever", b.sim, [task(ORG, 1)])
    a.add_job(once, repeats="1")
    a.add_job(forever, repeats="0")
    until(lambda: a.jobs(once)[0]["status"] == "COMPLETED", what="the one-shot job done")
    until(lambda: a.jobs(forever)[0]["times_run"] >= 3, what="three runs of the other")
    job = a.jobs(once)[0]
    assert job["times_run"] == 1 and "last_run_time" not in job
    assert f"{name} scheduled" in a.organisations()


def test_job_json_lists_web2pys_readable_fields_and_a_run_shows_in_next_run_time(
        a: Eden, b: Eden, name: str) -> None:
    """Seen on Eden built here: no `last_run_time` (web2py's field is not readable);
    after a run `next_run_time` is the run's start + period, also for a finished job;
    times with a space; a plain uuid."""
    repository_id = a.create_repository(name, b.sim, [task(ORG, 1)])
    before = datetime.now(UTC).replace(microsecond=0)
    a.add_job(repository_id, repeats="1", period="600")
    (job,) = a.jobs(repository_id)
    assert list(job) == ["id", "application_name", "task_name", "group_name", "status",
                         "broadcast", "function_name", "uuid", "args", "vars", "enabled",
                         "start_time", "next_run_time", "stop_time", "repeats",
                         "retry_failed", "period", "prevent_drift", "cronline", "timeout",
                         "sync_output", "times_run", "times_failed", "assigned_worker_name"]
    assert not job["uuid"].startswith("urn:") and " " in job["start_time"]
    a.sim.store.set_settings(max_period=1)
    until(lambda: a.jobs(repository_id)[0]["status"] == "COMPLETED", what="the run")
    (job,) = a.jobs(repository_id)
    started = datetime.fromisoformat(job["next_run_time"]).replace(tzinfo=UTC) - \
        timedelta(seconds=600)
    run_rows = [r for r in a.log(repository_id) if r["resource_name"] == ORG]
    assert before <= started <= datetime.fromisoformat(
        run_rows[0]["timestmp"]).replace(tzinfo=UTC)
