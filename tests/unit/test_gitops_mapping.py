"""Export mapping: what a server holds → the spec that adopts it, checked through the
operator's own code. The spec is resolved by the handlers' `resolve` (a real
ServerRegistry fed by in-memory DatabaseServers and Secrets) and turned back into a
server document by the backends' desired-state functions: adoption is write-free
exactly when that gives back what the server holds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication_operator.backends.base import Endpoint, ReplicationRequest
from replication_operator.backends.couchdb import docs as couch
from replication_operator.backends.factory import make_backend
from replication_operator.backends.harbor import docs as harbor
from replication_operator.backends.policies import PolicyRequest
from replication_operator.backends.reductstore import settings as reduct
from replication_operator.config import OperatorConfig
from replication_operator.context import OperatorContext
from replication_operator.credentials import Credentials
from replication_operator.gitops import mapping
from replication_operator.handlers import policy as policy_handler
from replication_operator.handlers import replication as replication_handler
from replication_operator.servers import ServerRegistry, with_credentials

NS = "team"
T = TypeVar("T")
SECRETS = {
    "a-admin": {"username": "admin", "password": "pa:ss wörd/1"},
    "b-admin": {"username": "replicator", "password": "b-s3cret"},
    "bearer": {"token": "bearer-t0ken"},
    "reduct": {"token": "reduct-t0ken"},
    "harbor": {"username": "admin", "password": "Harbor12345-secret"},
}
SECRET_VALUES = {v for data in SECRETS.values() for k, v in data.items() if k != "username"}
SERVERS: dict[str, dict[str, Any]] = {
    "couch-a": {"type": "couchdb", "url": "http://couch-a.example:5984",
                "auth": {"type": "basic", "secretRef": {"name": "a-admin"}}},
    "couch-b": {"type": "couchdb", "url": "https://couch-b.example/couch/",
                "auth": {"type": "session", "secretRef": {"name": "b-admin"}}},
    "couch-open": {"type": "couchdb", "url": "http://open.example:5984"},
    "couch-bearer": {"type": "couchdb", "url": "http://bearer.example:5984",
                     "auth": {"type": "bearer", "secretRef": {"name": "bearer"}}},
    "reduct-a": {"type": "reductstore", "url": "http://reduct-a.example:8383",
                 "auth": {"type": "bearer", "secretRef": {"name": "reduct"}}},
    "reduct-b": {"type": "reductstore", "url": "http://reduct-b.example:8383/",
                 "auth": {"type": "bearer", "secretRef": {"name": "reduct"}}},
    "harbor-a": {"type": "harbor", "url": "https://harbor-a.example",
                 "auth": {"type": "basic", "secretRef": {"name": "harbor"}}},
    "harbor-b": {"type": "harbor", "url": "https://harbor-b.example/",
                 "auth": {"type": "basic", "secretRef": {"name": "harbor"}}},
}
TOKEN = Credentials(username="writer", password="t0ken-pass")  # a Token on couch-a


class _Operator:
    """The operator's context over the in-memory servers, in one event loop for the
    whole module (building connections for every Hypothesis example would be slow)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.registry: ServerRegistry | None = None
        self.reach: list[mapping.Reach] = []

    async def _start(self) -> ServerRegistry:
        async def read_secret(namespace: str, name: str) -> dict[str, str] | None:
            return SECRETS.get(name)

        async def read_server(namespace: str, name: str) -> dict[str, Any] | None:
            return {"spec": SERVERS[name]} if name in SERVERS else None

        registry = ServerRegistry(read_secret=read_secret, read_server=read_server,
                                  backend_factory=make_backend)
        self.reach = [mapping.Reach(n, (await registry.get(NS, n)).settings) for n in SERVERS]
        a = (await registry.get(NS, "couch-a")).settings
        self.reach.append(mapping.Reach("couch-a", with_credentials(a, TOKEN, "basic"),
                                        token="writer"))
        return registry

    def run(self, work: Callable[[OperatorContext, list[mapping.Reach]], Awaitable[T]]) -> T:
        if self.registry is None:
            self.registry = self.loop.run_until_complete(self._start())
        ctx = OperatorContext(config=OperatorConfig(), servers=self.registry)
        return self.loop.run_until_complete(work(ctx, list(self.reach)))

    def close(self) -> None:
        if self.registry is not None:
            self.loop.run_until_complete(self.registry.aclose())
        self.loop.close()


OPERATOR = _Operator()


@pytest.fixture(scope="module", autouse=True)
def _close_operator() -> Iterator[None]:
    yield
    OPERATOR.close()


def with_operator(work: Callable[[OperatorContext, list[mapping.Reach]], Awaitable[T]]) -> T:
    """Run `work` with the operator's context and the reaches an export would see (each
    server, plus a Token on couch-a)."""
    return OPERATOR.run(work)


def settings_of(reach: list[mapping.Reach], server: str, token: str | None = None) -> Any:
    return next(r.settings for r in reach if r.server == server and r.token == token)


async def request_for(ctx: OperatorContext, spec: dict[str, Any]) -> ReplicationRequest:
    """What the operator makes of the spec (the handler's resolve, tokens aside)."""
    spec = json.loads(json.dumps(spec))  # what survives a trip through the API server
    refs = {side: spec[side].pop("tokenRef", None) for side in ("source", "target")}
    request = (await replication_handler.resolve(ctx, NS, "exported", spec, {})).request
    for side, ref in refs.items():  # token_credentials reads the cluster: done here
        if ref:
            assert ref == {"name": "writer"}
            endpoint: Endpoint = getattr(request, side)
            request = _replace(request, side, Endpoint(
                with_credentials(endpoint.server, TOKEN, "basic"), endpoint.database))
    return request


def _replace(request: ReplicationRequest, side: str, endpoint: Endpoint) -> ReplicationRequest:
    import dataclasses
    return dataclasses.replace(request, **{side: endpoint})


def no_secret_in(*texts: Any) -> None:
    blob = json.dumps(texts, default=str)
    for value in SECRET_VALUES | {TOKEN.password}:
        assert value not in blob


# --- CouchDB ------------------------------------------------------------------------

DB_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_$()+-/", min_size=1,
                   max_size=12).filter(lambda s: s[0].isalpha())
COUCH_SERVERS = st.sampled_from([("couch-a", None), ("couch-a", "writer"), ("couch-b", None),
                                 ("couch-open", None), ("couch-bearer", None)])
OPTION_VALUES = st.one_of(st.integers(0, 100_000), st.booleans(), st.text(max_size=6))
FILTERS = st.one_of(
    st.just({}),
    st.builds(lambda ids: {"doc_ids": ids}, st.lists(st.text(max_size=8), min_size=1,
                                                     max_size=4)),
    st.builds(lambda value: {"selector": {"type": value}}, st.text(max_size=6)),
    st.builds(lambda name, params: {"filter": f"ddoc/{name}", **(
        {"query_params": params} if params else {})},
              st.text(alphabet="abcxyz_", min_size=1, max_size=6),
              st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=4),
                              max_size=2)))


@st.composite
def hand_made_docs(draw: st.DrawFn) -> tuple[dict[str, Any], ...]:
    """Endpoints as (server, token, database); the rest of a `_replicator` doc."""
    sides = tuple((*draw(COUCH_SERVERS), draw(DB_NAMES)) for _ in ("source", "target"))
    doc: dict[str, Any] = {}
    for key in ("continuous", "create_target"):
        choice = draw(st.sampled_from([True, False, None]))
        if choice is not None:
            doc[key] = choice
    doc.update(draw(FILTERS))
    doc.update(draw(st.dictionaries(st.sampled_from(sorted(couch.ALLOWED_OPTIONS)),
                                    OPTION_VALUES, max_size=3)))
    if draw(st.booleans()):
        doc.update({"owner": "admin", "_replication_state": "triggered", "_rev": "3-x"})
    return (doc, *sides)


@given(hand_made_docs(), st.booleans())
def test_a_hand_made_couchdb_job_is_adopted_without_a_write(
        drawn: tuple[Any, ...], mango: bool) -> None:
    """Any job the spec can express: export → resolve → desired doc is what the
    server holds (no difference, so no PUT), and exporting that doc gives the same
    spec again (a fixed point)."""
    doc, source, target = drawn
    mango = mango or "selector" in doc  # without Mango a selector is rewritten (a note)

    async def check(ctx: OperatorContext, reach: list[mapping.Reach]) -> None:
        stored = dict(doc)
        for side, (server, token, db) in zip(("source", "target"), (source, target),
                                             strict=True):
            stored[side] = couch.endpoint_doc(Endpoint(settings_of(reach, server, token), db))
        exported = mapping.couch_job("hand-made-1", stored, job_server="couch-b",
                                     reach=reach, mango=mango)
        assert exported.notes == [], exported.notes
        request = await request_for(ctx, exported.spec)
        couch.validate(request)
        desired = couch.desired_doc(request, mango=mango)
        assert couch.differences(stored, desired) == []
        again = mapping.couch_job("hand-made-1", desired, job_server="couch-b", reach=reach,
                                  mango=mango)
        assert again.spec == exported.spec
        assert request.adopted and request.external_name == "hand-made-1"
        no_secret_in(exported.spec, exported.notes)
    with_operator(check)


SPEC_FILTERS = st.one_of(
    st.just({}), st.builds(lambda ids: {"docIds": ids},
                           st.lists(st.text(max_size=5), min_size=1, max_size=3)),
    st.builds(lambda v: {"selector": {"n": {"$gt": v}}}, st.integers()),
    st.just({"designFilter": "app/by_type", "queryParams": {"type": "order"}}))


@given(COUCH_SERVERS, DB_NAMES, COUCH_SERVERS, DB_NAMES, st.booleans(), st.booleans(),
       SPEC_FILTERS, st.dictionaries(st.sampled_from(["worker_processes", "since_seq",
                                                       "use_checkpoints"]), OPTION_VALUES))
def test_spec_to_doc_to_spec_to_doc_is_a_fixed_point(
        source: tuple[str, str | None], source_db: str, target: tuple[str, str | None],
        target_db: str, continuous: bool, create: bool, flt: dict[str, Any],
        options: dict[str, Any]) -> None:
    def side(server: tuple[str, str | None], db: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"server": server[0], "database": db}
        if server[1]:
            spec["tokenRef"] = {"name": server[1]}
        return spec

    spec = {"source": side(source, source_db),
            "target": {**side(target, target_db), "create": create},
            "continuous": continuous, "filter": flt, "options": options}

    async def check(ctx: OperatorContext, reach: list[mapping.Reach]) -> None:
        for mango in (True, False):
            first = couch.desired_doc(await request_for(ctx, spec), mango=mango)
            exported = mapping.couch_job("job", first, job_server="couch-b", reach=reach,
                                         mango=mango)
            second = couch.desired_doc(await request_for(ctx, exported.spec), mango=mango)
            assert second == first
    with_operator(check)


def test_credentials_written_another_way_are_recognised_and_never_printed() -> None:
    async def check(ctx: OperatorContext, reach: list[mapping.Reach]) -> None:
        a = settings_of(reach, "couch-a")
        user, password = a.credentials.username, a.credentials.password
        from urllib.parse import quote
        userinfo = f"http://{user}:{quote(password, safe='')}@couch-a.example:5984/orders"
        auth_basic = {"url": "http://couch-a.example:5984/orders",
                      "auth": {"basic": {"username": user, "password": password}}}
        stranger = {"url": "http://couch-a.example:5984/orders",
                    "headers": {"Authorization": Credentials(
                        username="x", password="not-known-1").basic_header()}}
        for value, says in ((userinfo, "written in another form"),
                            (auth_basic, "written in another form"),
                            (stranger, "belong to no DatabaseServer or Token"),
                            ("http://couch-a.example:5984/orders", "without credentials")):
            exported = mapping.couch_job("j", {"source": value, "target": "http://open.example"
                                               ":5984/orders", "continuous": True},
                                         job_server="couch-open", reach=reach, mango=True)
            assert exported.spec["source"] == {"server": "couch-a", "database": "orders"}
            assert any(says in note for note in exported.notes), exported.notes
            no_secret_in(exported.spec, exported.notes, exported.title)
            no_secret_in_value = "not-known-1"
            assert no_secret_in_value not in json.dumps(exported.notes)
            request = await request_for(ctx, exported.spec)
            assert "source" in couch.differences({"source": value},
                                                 couch.desired_doc(request, mango=True))
    with_operator(check)


def test_an_endpoint_on_no_declared_server_asks_for_one() -> None:
    async def check(ctx: OperatorContext, reach: list[mapping.Reach]) -> None:
        exported = mapping.couch_job(
            "j", {"source": "https://user:pw-zz@far.example:6984/base/db%2Fx",
                  "target": "orders"}, job_server="couch-b", reach=reach, mango=True)
        (missing,) = exported.undeclared
        assert missing.url == "https://far.example:6984/base"
        assert exported.spec["source"] == {"server": missing.name, "database": "db/x"}
        assert exported.spec["target"] == {"server": "couch-b", "database": "orders"}
        assert any("local database" in n for n in exported.notes)
        assert "pw-zz" not in json.dumps([exported.spec, exported.notes, missing.url])
    with_operator(check)


def test_fields_the_spec_cannot_say_are_named() -> None:
    async def check(ctx: OperatorContext, reach: list[mapping.Reach]) -> None:
        url = "http://open.example:5984/"
        exported = mapping.couch_job(
            "j", {"source": url + "a", "target": url + "b", "note": "kept", "selector": {},
                  "filter": "_view", "dbops_owner": "team/gone"},
            job_server="couch-open", reach=reach, mango=False)
        text = " ".join(exported.notes)
        assert "note" in text and "_view" in text and "team/gone" in text
    with_operator(check)


# --- ReductStore ----------------------------------------------------------------------

WHEN = st.one_of(st.none(), st.builds(lambda label, v: {f"&{label}": {"$eq": v}},
                                      st.text(alphabet="abc", min_size=1, max_size=3),
                                      st.integers()))


@given(st.sampled_from(["reduct-a", "reduct-b"]), DB_NAMES, DB_NAMES,
       st.lists(st.text(alphabet="ab-*", min_size=1, max_size=4), max_size=3), WHEN,
       st.sampled_from(["enabled", "paused"]), st.sampled_from(["", "pre/"]),
       st.sampled_from(["none", "gzip"]))
def test_a_reductstore_replication_is_adopted_without_a_write(
        target: str, src: str, dst: str, entries: list[str], when: dict[str, Any] | None,
        mode: str, prefix: str, compression: str) -> None:
    async def check(ctx: OperatorContext, reach: list[mapping.Reach]) -> None:
        stored = {"src_bucket": src, "dst_bucket": dst,
                  "dst_host": settings_of(reach, target).base_url, "dst_token": None,
                  "entries": entries, "when": when, "mode": mode, "dst_prefix": prefix,
                  "compression": compression}
        exported = mapping.reduct_replication("hand.made", stored, {"mode": mode},
                                              job_server="reduct-a", reach=reach)
        assert exported.spec["target"]["server"] == target
        request = await request_for(ctx, exported.spec)
        reduct.validate(request)
        assert reduct.differences(stored, reduct.desired_settings(request, "t")) == []
        assert not request.target.server.credentials.empty
        no_secret_in(exported.spec, exported.notes)
    with_operator(check)


# --- Harbor ---------------------------------------------------------------------------

CRONS = st.sampled_from(["0 0 * * * *", "0 30 2 * * *", "0 */15 * * * 1-5", "0 0 0 1 * *"])


@st.composite
def harbor_policies(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A policy as Harbor answers a GET (false fields absent), and its remote registry."""
    declared = draw(st.booleans())
    registry = {"id": 7, "name": "by-hand", "type": "docker-registry" if declared else "harbor",
                "url": "https://registry.example:5000" if declared else
                "https://harbor-b.example", "insecure": draw(st.booleans()) and declared}
    push = draw(st.booleans())
    local = {"id": 0, "name": "Local", "type": "harbor", "url": "https://harbor-a.example"}
    patterns = draw(st.lists(st.sampled_from(["library/**", "team/*", "x/y"]), min_size=1,
                             max_size=3, unique=True))
    policy: dict[str, Any] = {
        "id": draw(st.integers(1, 999)), "name": draw(st.text(min_size=1, max_size=10)),
        "src_registry": local if push else {"id": 7},
        "dest_registry": {"id": 7} if push else local,
        "filters": [{"type": "name", "value": harbor.name_pattern(tuple(patterns))}],
        "trigger": {"type": "manual", "trigger_settings": {"cron": ""}},
        "speed": draw(st.sampled_from([0, -1, 512]))}
    if draw(st.booleans()):
        policy["description"] = draw(st.text(max_size=12))
    if draw(st.booleans()):
        policy["dest_namespace"] = "mirror"
    count = draw(st.sampled_from([None, -1, 0, 2]))
    if count is not None:
        policy["dest_namespace_replace_count"] = count
    trigger = draw(st.sampled_from(["manual", "scheduled", "event_based"]))
    if trigger == "scheduled":
        policy["trigger"] = {"type": "scheduled", "trigger_settings": {"cron": draw(CRONS)}}
    elif trigger == "event_based":
        policy["trigger"] = {"type": "event_based", "trigger_settings": {}}
    for kind, value in (("tag", "v*"), ("label", ["gold", "prod"]), ("resource", "image")):
        if draw(st.booleans()):
            entry: dict[str, Any] = {"type": kind, "value": value}
            if kind != "resource":
                decoration = draw(st.sampled_from([None, "matches", "excludes"]))
                if decoration:
                    entry["decoration"] = decoration
            policy["filters"].append(entry)
    for key in ("replicate_deletion", "override", "enabled", "copy_by_chunk"):
        if draw(st.booleans()):
            policy[key] = True
            if key == "replicate_deletion":
                policy["deletion"] = True
    return policy, registry


@given(harbor_policies())
def test_a_hand_made_harbor_policy_is_adopted_without_a_write(
        drawn: tuple[dict[str, Any], dict[str, Any]]) -> None:
    policy, registry = drawn

    async def check(ctx: OperatorContext, reach: list[mapping.Reach]) -> None:
        exported = mapping.harbor_policy(policy, holder="harbor-a", registries={7: registry},
                                         reach=reach)
        spec = json.loads(json.dumps(exported.spec))
        _, request = await policy_handler.resolve(ctx, NS, "exported", spec, {})
        assert isinstance(request, PolicyRequest) and request.adopted
        assert harbor.registry_serves(request.remote, registry), "its registry is kept"
        desired = harbor.desired_policy(request, registry_id=7, stored=policy)
        assert harbor.policy_differences(desired, policy) == []
        again = mapping.harbor_policy({**desired, "id": policy["id"]}, holder="harbor-a",
                                      registries={7: registry}, reach=reach)
        assert again.spec == exported.spec
        no_secret_in(exported.spec, exported.notes)
    with_operator(check)


def test_harbor_fields_without_a_spec_field_are_named() -> None:
    async def check(ctx: OperatorContext, reach: list[mapping.Reach]) -> None:
        exported = mapping.harbor_policy(
            {"id": 3, "name": "all", "dest_registry": {"id": 7}, "filters": [],
             "single_active_replication": True,
             "description": "managed by replication-operator for old/gone"},
            holder="harbor-a", registries={7: {"id": 7, "type": "harbor",
                                               "url": "https://harbor-b.example"}},
            reach=reach)
        assert exported.spec["source"]["databases"] == ["**"]
        text = " ".join(exported.notes)
        assert "name filter" in text and "single_active_replication" in text
        assert "old/gone" in text
        assert exported.spec["target"] == {"server": "harbor-b"}
        assert exported.spec["override"] is False and exported.spec["enabled"] is False
    with_operator(check)


# --- names and tokens -------------------------------------------------------------------


@given(st.text(max_size=80), st.sets(st.text(max_size=10), max_size=5))
def test_resource_names_are_valid_and_free(external: str, taken: set[str]) -> None:
    import re
    name = mapping.resource_name(external, taken)
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,62}", name) and not name.endswith("-")
    assert name not in taken


def test_tokens_become_token_specs_without_values() -> None:
    robot = mapping.harbor_robot({"name": "robot$ci", "level": "system", "duration": 30,
                                  "secret": "never-shown", "permissions": [
                                      {"kind": "project", "namespace": "a", "access": [
                                          {"resource": "repository", "action": "pull"}]},
                                      {"kind": "project", "namespace": "b", "access": [
                                          {"resource": "repository", "action": "push"}]}]},
                                 server="harbor-a")
    assert robot.spec == {"server": "harbor-a", "permissions": {"read": ["a"], "write": ["b"]},
                          "expiresInDays": 30}
    assert "never-shown" not in json.dumps([robot.spec, robot.notes, robot.title])
    token = mapping.reduct_token({"name": "reader", "value": "", "permissions": {
        "full_access": False, "read": ["src"], "write": []}}, server="reduct-a")
    assert token.spec["permissions"] == {"read": ["src"]}
    user = mapping.couch_user({"name": "app", "password_sha": "x"}, server="couch-a")
    assert user.spec == {"server": "couch-a", "permissions": {}}
    assert any("_security" in n for n in user.notes)
