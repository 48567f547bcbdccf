"""ReductStore replications and Tokens end to end: real API server, two ReductStore
instances, the operator as its own process."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import httpx
from e2e_support import (
    Couch,
    Kube,
    OperatorProcess,
    Reduct,
    database_server,
    metric_sum,
    replication,
    secret,
    wait_for,
)

KIND = "replication"


def token(name: str, server: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "replication.dbops.dev/v1alpha1", "kind": "Token",
            "metadata": {"name": name}, "spec": {"server": server, **spec}}


def secret_value(kube: Kube, name: str, key: str = "token") -> str:
    obj = kube.cluster.kubectl("get", "secret", name, "-n", kube.ns, "-o",
                               f"jsonpath={{.data.{key}}}").stdout
    return base64.b64decode(obj).decode()


class Writer:
    """Writes a record every `period` seconds in a thread until stopped; remembers each
    timestamp, so a test can check that every record arrived."""

    def __init__(self, reduct: Reduct, bucket: str, entry: str, period: float = 0.05) -> None:
        self.reduct, self.bucket, self.entry, self.period = reduct, bucket, entry, period
        self.written: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):  # the writing pace, not synchronisation
            self.written.append(self.reduct.write(self.bucket, self.entry, b"%d" % len(
                self.written)))

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_rotation_is_make_before_break_and_loses_no_record(
        reduct_env: tuple[Kube, Reduct, Reduct], unique_name: Any,
        secret_values: set[str], operator: OperatorProcess) -> None:
    """The sequence of issue 11 (records written after a rotation never arrived), with a
    writer running through the rotation: every record arrives, the old token works until
    the Replication uses the new one and is revoked then."""
    kube, a, b = reduct_env
    src, dst = unique_name("src"), unique_name("dst")
    a.bucket(src)
    b.bucket(dst)
    # the source instance reads the destination bucket's info before it writes, so a
    # destination token needs read and write (ReductStore 1.21.4)
    kube.apply(token("b-writer", "reduct-b", permissions={"read": [dst], "write": [dst]},
                     expiresInDays=30))
    kube.wait_condition("token", "b-writer")
    first_value = secret_value(kube, "b-writer")
    secret_values.add(first_value)
    assert kube.get("token", "b-writer")["status"]["expiresAt"]  # type: ignore[index]
    expiry = metric_sum(operator.metrics(), "replication_operator_token_expiry_timestamp_seconds",
                        namespace=kube.ns, name="b-writer")
    assert expiry > time.time() + 29 * 86400
    first_slot, second_slot = f"{kube.ns}.b-writer", f"{kube.ns}.b-writer-b"
    assert first_slot in b.tokens()

    kube.apply(replication("sensors", source={"server": "reduct-a", "database": src},
                           target={"server": "reduct-b", "database": dst,
                                   "tokenRef": {"name": "b-writer"}},
                           filter={"entries": ["sensor-*"]}))
    kube.wait_condition(KIND, "sensors")
    status = kube.get(KIND, "sensors")["status"]  # type: ignore[index]
    assert status["server"] == "reduct-a"
    assert status["externalName"] == f"{kube.ns}__sensors", "no dot: diagnostics work"
    before = [a.write(src, "sensor-1", b"before %d" % i) for i in range(5)]
    skipped = a.write(src, "other", b"not replicated")
    wait_for(lambda: all(b.read(dst, "sensor-1", ts) for ts in before), what="5 records")

    with Writer(a, src, "sensor-1") as writer:
        kube.annotate("token", "b-writer", "replication.dbops.dev/rotate-requested=1")
        wait_for(lambda: secret_value(kube, "b-writer") != first_value, what="a new value")
        second_value = secret_value(kube, "b-writer")
        secret_values.add(second_value)
        assert {first_slot, second_slot} <= b.tokens(), "make before break: both exist"
        rotated = kube.wait_event("sensors", "CredentialsRotated", timeout=90)
        assert f"{kube.ns}__sensors-b" in rotated["message"], "replaced, not updated in place"
        kube.wait_event("sensors", "Replaced", timeout=90)
        revoked = kube.wait_event("b-writer", "Revoked", timeout=90)
        assert "every dependent uses the new credential" in revoked["message"]
        wait_for(lambda: first_slot not in b.tokens(), what="the old token revoked")
        old = Reduct(b.part, first_value)
        assert old.http.get(f"/api/v1/b/{dst}").status_code == 401
        new = Reduct(b.part, second_value)
        assert new.http.get(f"/api/v1/b/{dst}").status_code == 200
        after = [a.write(src, "sensor-1", b"after %d" % i) for i in range(3)]
    written = before + writer.written + after

    def missing() -> list[int]:
        return [ts for ts in written if b.read(dst, "sensor-1", ts) is None]

    try:
        wait_for(lambda: not missing(), timeout=90, interval=1,
                 what=f"all {len(written)} records on the destination")
    except AssertionError:
        lost = missing()
        raise AssertionError(f"{len(lost)} of {len(written)} records never arrived: "
                             f"written at {[written.index(ts) for ts in lost]} "
                             f"(ts {lost[:3]}...)") from None
    print(f"\nrotation under writes: {len(written)} records written, 0 missing")
    assert b.read(dst, "other", skipped) is None
    status = kube.get(KIND, "sensors")["status"]  # type: ignore[index]
    assert status["phase"] == "Running" and not status.get("lastError")
    token_status = kube.get("token", "b-writer")["status"]  # type: ignore[index]
    assert token_status["externalName"] == second_slot and token_status["lastRotationTime"]
    assert not token_status.get("previousCredential")

    assert status["externalName"] == f"{kube.ns}__sensors-b"
    assert f"{kube.ns}__sensors" not in a.replications(), "the replaced one is gone"

    kube.delete(KIND, "sensors")
    kube.delete("token", "b-writer")
    wait_for(lambda: not {f"{kube.ns}__sensors", f"{kube.ns}__sensors-b"} &
             set(a.replications()), what="replication removed")
    wait_for(lambda: not {first_slot, second_slot} & b.tokens(), what="tokens removed")
    wait_for(lambda: kube.cluster.kubectl("get", "secret", "b-writer", "-n", kube.ns,
                                          check=False).returncode != 0, what="Secret removed")


def test_a_refused_token_shows_although_reductstore_says_active(
        reduct_env: tuple[Kube, Reduct, Reduct], unique_name: Any,
        secret_values: set[str]) -> None:
    """A destination that starts refusing the token (revoked by someone else): ReductStore
    drops the records and keeps saying active; the status says Failed, naming why."""
    kube, a, b = reduct_env
    src, dst = unique_name("src"), unique_name("dst")
    a.bucket(src)
    b.bucket(dst)
    outsider = unique_name("outsider")
    made = b.http.post(f"/api/v1/tokens/{outsider}", json={
        "full_access": False, "read": [dst], "write": [dst]})
    made.raise_for_status()
    value = made.json()["value"]
    secret_values.add(value)
    kube.apply(secret("b-outsider", token=value),
               database_server("reduct-b-outsider", b.part.url, "reductstore", "b-outsider",
                               "bearer"))
    kube.apply(replication("refused", source={"server": "reduct-a", "database": src},
                           target={"server": "reduct-b-outsider", "database": dst}))
    kube.wait_condition(KIND, "refused")
    ts = a.write(src, "e", b"x")
    wait_for(lambda: b.read(dst, "e", ts) == b"x", what="first record")
    b.http.delete(f"/api/v1/tokens/{outsider}").raise_for_status()

    def refused() -> dict[str, Any] | None:
        a.write(src, "e", b"y")  # something to send, refused with 401
        cond = kube.condition(KIND, "refused", "Ready") or {}
        return cond if cond.get("reason") == "DestinationRefusedToken" else None

    cond = wait_for(refused, timeout=120, interval=2, what="the refused token in status")
    assert "HTTP 401" in cond["message"] and value not in cond["message"]
    assert kube.condition(KIND, "refused", "Stalled")["status"] == "True"  # type: ignore[index]
    assert a.replications()[f"{kube.ns}__refused"]["is_active"], "ReductStore says active"


def test_suspend_pauses_and_drift_is_put_back(
        reduct_env: tuple[Kube, Reduct, Reduct], unique_name: Any) -> None:
    kube, a, b = reduct_env
    src, dst = unique_name("src"), unique_name("dst")
    a.bucket(src)
    b.bucket(dst)
    base = {"source": {"server": "reduct-a", "database": src},
            "target": {"server": "reduct-b", "database": dst}}
    kube.apply(replication("pausable", **base))
    kube.wait_condition(KIND, "pausable")
    name = f"{kube.ns}__pausable"
    kube.apply(replication("pausable", **base, suspend=True))
    wait_for(lambda: a.replications().get(name, {}).get("mode") == "paused",
             what="paused on the server")
    wait_for(lambda: (kube.get(KIND, "pausable") or {}).get("status", {}).get("phase") ==
             "Suspended", what="phase Suspended")
    kube.apply(replication("pausable", **base, suspend=False))
    wait_for(lambda: a.replications().get(name, {}).get("mode") == "enabled", what="enabled again")
    wait_for(lambda: (kube.get(KIND, "pausable") or {}).get("status", {}).get("phase") ==
             "Running", what="operator settled on Running")

    a.http.delete(f"/api/v1/replications/{name}").raise_for_status()
    kube.wait_event("pausable", "DriftCorrected")
    wait_for(lambda: name in a.replications(), what="replication restored")
    ts = a.write(src, "e", b"x")
    wait_for(lambda: b.read(dst, "e", ts) == b"x", what="restored replication delivers")


def test_missing_bucket_is_stalled_with_the_servers_reason(
        reduct_env: tuple[Kube, Reduct, Reduct], unique_name: Any) -> None:
    kube, _, b = reduct_env
    dst = unique_name("dst")
    b.bucket(dst)
    kube.apply(replication("nobucket", source={"server": "reduct-a", "database": "missing"},
                           target={"server": "reduct-b", "database": dst}))
    cond = kube.wait_condition(KIND, "nobucket", "Stalled", "True")
    assert "missing" in cond["message"]


def test_couchdb_token_is_a_user_whose_credentials_replicate(
        cluster: Any, operator: OperatorProcess, namespace: str, couch_a: Any, couch_b: Any,
        unique_name: Any, secret_values: set[str]) -> None:

    kube = Kube(cluster, namespace)
    kube.apply(secret("a-admin", username=couch_a.username, password=couch_a.password),
               secret("b-admin", username=couch_b.username, password=couch_b.password),
               database_server("couch-a", couch_a.url, secret="a-admin"),
               database_server("couch-b", couch_b.url, secret="b-admin"))
    a, b = Couch(couch_a), Couch(couch_b)
    db = unique_name("tokdb")
    a.create_db(db)
    a.put(db, "doc-1", v=1)
    kube.apply(token("reader", "couch-a", permissions={"read": [db]}))
    kube.wait_condition("token", "reader")
    password = secret_value(kube, "reader", "password")
    secret_values.add(password)
    user = f"{kube.ns}.reader"
    assert secret_value(kube, "reader", "username") == user
    assert httpx.get(f"{a.url}/{db}/doc-1", auth=(user, password)).status_code == 200

    kube.apply(replication("as-reader", source={"server": "couch-a", "database": db,
                                                "tokenRef": {"name": "reader"}},
                           target={"server": "couch-b", "database": db, "create": True},
                           continuous=False))
    wait_for(lambda: "doc-1" in b.ids(db), what="replicated with the token's credentials")
    job = b.replicator_docs()[f"{kube.ns}.as-reader"]
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    assert job["source"]["headers"]["Authorization"] == expected

    kube.delete(KIND, "as-reader")
    kube.delete("token", "reader")
    wait_for(lambda: a.http.get(f"/_users/org.couchdb.user:{user}").status_code == 404,
             what="user removed")


def test_a_job_its_token_was_refused_runs_once_the_token_grants_the_database(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any,
        secret_values: set[str]) -> None:
    """A one-shot job made while its Token does not grant the source database fails on
    the server, which does not try again (PouchDB Server: state `error`, "You are not
    authorized to access this db"). Granting the database on the Token starts the job
    again, without touching the Replication. Seen in the kill loop, where a Token's
    permissions and a new Replication that needs them are applied together."""
    kube, a, b = couch_env
    db, other = unique_name("grantdb"), unique_name("otherdb")
    for name in (db, other):
        a.create_db(name)
    a.put(db, "doc-1", v=1)
    # members-only from the start: a database without members is open to every user
    assert a.http.put(f"/{db}/_security", json={"members": {"names": ["someone-else"]}}
                      ).status_code in (200, 201)
    kube.apply(token("reader", "couch-a", permissions={"read": [other]}))
    kube.wait_condition("token", "reader")
    secret_values.add(secret_value(kube, "reader", "password"))
    kube.apply(replication("refused", source={"server": "couch-a", "database": db,
                                              "tokenRef": {"name": "reader"}},
                           target={"server": "couch-b", "database": db, "create": True},
                           continuous=False))

    def phase() -> str:
        return str(((kube.get(KIND, "refused") or {}).get("status") or {}).get("phase"))

    wait_for(lambda: phase() in ("Failed", "Error"), what="the job refused on the server")
    assert "doc-1" not in (b.ids(db) if db in b.http.get("/_all_dbs").json() else set())
    kube.apply(token("reader", "couch-a", permissions={"read": [db]}))
    kube.wait_event("refused", "TokenChanged", timeout=90)
    wait_for(lambda: "doc-1" in b.ids(db), what="replicated once the Token grants the db")
    wait_for(lambda: phase() == "Completed", what="Completed")


def test_couchdb_rotation_under_writes_loses_no_document(
        cluster: Any, operator: OperatorProcess, namespace: str, couch_a: Any, couch_b: Any,
        unique_name: Any, secret_values: set[str]) -> None:
    """A continuous CouchDB replication reading with a Token's user, documents written
    all through a rotation: the new user replicates, the old one is revoked only after
    the job uses the new one, and every document arrives."""
    kube = Kube(cluster, namespace)
    kube.apply(secret("a-admin", username=couch_a.username, password=couch_a.password),
               secret("b-admin", username=couch_b.username, password=couch_b.password),
               database_server("couch-a", couch_a.url, secret="a-admin"),
               database_server("couch-b", couch_b.url, secret="b-admin"))
    a, b = Couch(couch_a), Couch(couch_b)
    db = unique_name("rotdb")
    a.create_db(db)
    kube.apply(token("reader", "couch-a", permissions={"read": [db]},
                     rotation={"graceSeconds": 120}))
    kube.wait_condition("token", "reader")
    first = secret_value(kube, "reader", "password")
    secret_values.add(first)
    kube.apply(replication("follow", source={"server": "couch-a", "database": db,
                                             "tokenRef": {"name": "reader"}},
                           target={"server": "couch-b", "database": db, "create": True}))
    kube.wait_condition(KIND, "follow")
    written: list[str] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.wait(0.05):  # the writing pace, not synchronisation
            doc = f"doc-{len(written)}"
            a.put(db, doc, n=len(written))
            written.append(doc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_for(lambda: len(written) >= 10 and set(written[:5]) <= b.ids(db),
                 what="documents flowing")
        kube.annotate("token", "reader", "replication.dbops.dev/rotate-requested=1")
        wait_for(lambda: secret_value(kube, "reader", "password") != first,
                 what="a new user in the Secret")
        secret_values.add(secret_value(kube, "reader", "password"))
        assert secret_value(kube, "reader", "username") == f"{kube.ns}.reader-b"
        kube.wait_event("follow", "CredentialsRotated", timeout=90)
        kube.wait_event("reader", "Revoked", timeout=90)
    finally:
        stop.set()
        writer.join(timeout=10)
    wait_for(lambda: set(written) <= b.ids(db), timeout=120, interval=1,
             what=f"all {len(written)} documents on the target")
    print(f"\nCouchDB rotation under writes: {len(written)} documents, 0 missing")
    old_user = a.http.get(f"/_users/org.couchdb.user:{kube.ns}.reader")
    assert old_user.status_code == 404, "the old user is revoked"


def test_an_orphaned_token_keeps_only_the_credential_in_use(
        couch_env: tuple[Kube, Couch, Couch], unique_name: Any,
        secret_values: set[str]) -> None:
    """Deleted with `deletionPolicy: Orphan` after a rotation: the user in use (the
    second slot) stays, and the Event names it (it named the first slot, long gone)."""
    kube, a, _ = couch_env
    db = unique_name("orphdb")
    a.create_db(db)
    kube.apply(token("keeper", "couch-a", permissions={"read": [db]},
                     deletionPolicy="Orphan"))
    kube.wait_condition("token", "keeper")
    first = secret_value(kube, "keeper", "password")
    secret_values.add(first)
    kube.annotate("token", "keeper", "replication.dbops.dev/rotate-requested=1")
    wait_for(lambda: secret_value(kube, "keeper", "password") != first,
             what="a new user in the Secret")
    secret_values.add(secret_value(kube, "keeper", "password"))
    in_use, previous = f"{kube.ns}.keeper-b", f"{kube.ns}.keeper"

    def user(name: str) -> int:
        return int(a.http.get(f"/_users/org.couchdb.user:{name}").status_code)

    wait_for(lambda: user(previous) == 404, what="the previous user revoked (no one uses it)")
    kube.delete("token", "keeper")
    event = kube.wait_event("keeper", "Orphaned")
    assert f"credential {in_use} " in str(event.get("message")), event
    assert user(in_use) == 200, "the user in use is left, as Orphan says"
    assert user(previous) == 404
    a.http.delete(f"/_users/org.couchdb.user:{in_use}",
                  params={"rev": a.http.get(f"/_users/org.couchdb.user:{in_use}").json()["_rev"]})
