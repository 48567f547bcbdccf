"""Harbor v2.0 API simulator: the parts of Harbor's REST API the operator uses, answering
as Harbor does (shapes checked against the PyPI client `harborapi` by
tests/integration/test_harbor_sim_contract.py; behaviour read from goharbor/harbor's
swagger, handlers and controllers).

Run it by hand (from the repository root; never prints the password)::

    PYTHONPATH=tests .venv/bin/python -m harbor_sim --host 127.0.0.1 --port 8780 \\
        --user admin --password Harbor12345 [--task-seconds 2] \\
        [--seed-artifact library/nginx:1.25 ...] [--no-registry-health-check]
    # -> harbor-sim listening on http://127.0.0.1:8780 (user admin)
    curl -u admin:Harbor12345 http://127.0.0.1:8780/api/v2.0/replication/policies

In tests (tests/ is on sys.path; the session fixtures `harbor_a` / `harbor_b` in
tests/conftest.py are two of these)::

    from harbor_sim import HarborSimulator
    with HarborSimulator(username="admin", password="pw") as sim:   # free port
        sim.url            # http://127.0.0.1:PORT  (the API is at sim.api_url)
        sim.store.push_artifact("library", "nginx", "1.25")
        sim.stop(); sim.start()   # "server down", then back on the same port, same state

Modules: `store` (state and rules), `views` (Harbor's JSON), `app` (routes, auth,
paging, errors, faults, request log), `query` (q / sort / page / Link), `cron`,
`matching` (doublestar filters), `faults`, `errors`, `server`, `__main__`.

Seen on a real Harbor v2.12.4 (BACKENDS.md §2a, and a build of goharbor/harbor v2.12.4
run on this machine), each with a test in tests/integration/test_harbor_sim_contract.py
that fails without it
-----------------------------------------------------------------------------------
- Sessions and CSRF: an answer to a request without `sid` (or with one Harbor never
  gave out) sets `sid=<32 hex>; Path=/; HttpOnly`. A request that carries any `sid` is a
  browser session (only the cookie's presence counts): every answer then sets
  `_gorilla_csrf` and `X-Harbor-CSRF-Token`, and a write (POST/PUT/PATCH/DELETE) without
  that header is 403 FORBIDDEN "CSRF token not found in request"; a token that does not
  belong to the `_gorilla_csrf` cookie sent is 403 "CSRF token invalid"; the 403 does not
  set `sid`. Without a session (/api/, /service/, /v2/) there is no check. API clients
  must not keep cookies (harborapi discards them for this reason).
- Wrong credentials are not always refused: systeminfo and public projects answer 200
  (anonymous); `/service/token` answers 200 with a token for the anonymous user, which
  `/v2/` refuses (401); `GET users/current` is 401: it proves credentials (a robot gets
  412 "get current user not available for security context: robot").
- Registries: `harbor` type: the adapter reads `{url}/api/version` first (a 404 is
  fine: not a Harbor), so an unreachable URL is 500 "internal server error"; then every
  type pings `{url}/v2/` (with the credential, through the token service on a Bearer
  challenge): failure is 400 "the registry is unhealthy" (wrong credentials, or a plain
  registry that does not answer); without credentials a 401/403 from `/v2/` counts as
  healthy. Checked with real HTTP requests to the registry. Duplicate name 409; delete
  while a policy uses it 412; ping `{id}` plus overrides (unknown id 404, `{}` 400 "type
  or url cannot be empty"); access_key in clear, secret `*****`; PUT takes the flat
  RegistryUpdate fields (a nested `credential` is ignored). Listed in no order (the
  database's: an updated registry moves last). Types: the adapters of 2.12 (no
  helm-hub / artifact-hub; volcengine-cr); others are 500.
- Policies: false fields absent from GET, `filters: null` when there are none; `speed:
  -1` reads back 0; a null side reads back as the "Local" registry id 0 (type harbor,
  the Harbor's URL); both sides real or both null 400; duplicate name 409; newest first;
  deleting a policy deletes its executions; running a disabled policy 412 "the policy N
  is disabled".
- Cron (controller/replication/model.Policy.Validate): 6 fields, seconds first, parsed
  without descriptors, so 5 fields, 7 fields and `@daily` are 400 "invalid cron string
  for scheduled trigger: <cron>"; a seconds field other than `0` is 400 "the 1st field
  (indicating Seconds of time) of the cron setting must be 0"; `*` as minutes is 400
  "* is not allowed for the Minutes field of the cron setting of replication policy".
- Executions: ids are shared with Harbor's other jobs (a fresh Harbor's first
  replication execution was 3; later ones skip ids too: the simulator leaves a gap
  every fourth id). An execution with tasks is closed only by Harbor's periodic status
  refresh (every 30 s at a fixed phase: `status_refresh_seconds`, shorter in the tests),
  0-30 s after its last task ended (measured 3.5-26.5 s on 2.12.4; BACKENDS.md says
  20-30 s), and may never be closed (`/_sim/stuck`): meanwhile InProgress with succeed
  == total, in_progress == 0 and a zero end_time, and its policy cannot be deleted
  (412); stopping it changes nothing. One without tasks closes at once ("no resources
  need to be replicated"; a pull from a source that is down: Failed with the reason).
  A push to a destination that is down makes its tasks, which fail: Failed with an
  empty status_text. Stop answers 200 `null`. Executions and tasks are listed by start
  time, newest first. `page_size` > 100 is 422 "page_size in query should be less than
  or equal to 100"; default 10; `page_size=0` is 200.
- Projects: GET of an unknown project is 404 "project <name> not found" for the admin,
  403 for a robot, 401 anonymous. Listed by name.
- Robots: the secret only in the create answer; `GET /robots` without `q` lists system
  robots only; a project robot is `robot$<project>+<name>` (a project that does not
  exist: 404); a robot with repository pull only gets 403 on `GET /projects/<private
  project>` (that needs project:read; the repository list needs repository:list); a
  robot's `GET /projects` lists public projects and every project it has a permission
  on. Listed by name; a robot carries `creator_ref` and `creator_type`. `q` is unescaped
  twice (lib/q/builder.go): a `+` sent as `%2B` becomes a space; send `%252B`.

API under /api/v2.0 (HTTP Basic; one admin user)
------------------------------------------------
Outside it: GET /api/version, GET /service/token (registry tokens), GET /v2/ (the
registry's base endpoint: 200 for a user, a robot or a token issued to one; else 401
with a Bearer challenge).
Anonymous: GET systeminfo (protected fields only when logged in), health, ping. Wrong
credentials count as anonymous (Harbor's security middleware): 401 where a login is
needed. Admin: users/current; projects (GET, HEAD ?project_name=, POST), GET
projects/{name_or_id}, GET projects/{name}/repositories; registries (GET, POST,
ping, GET/PUT/DELETE {id}); replication/policies (GET, POST, GET/PUT/DELETE {id});
replication/executions (GET ?policy_id&status&trigger, POST {policy_id}, GET/PUT {id},
GET {id}/tasks ?status&resource_type, GET {id}/tasks/{task_id}/log as text/plain);
robots (GET, POST, GET/PUT/PATCH/DELETE {id}).
Robot accounts (Basic auth with `robot$...` and the current secret) may only GET
projects/{name} (with `project:read`) and projects/{name}/repositories (with
`repository:list`), or any public project; 403 elsewhere; a wrong, old, disabled or
expired robot is anonymous (401 on a private project).
Errors: `{"errors": [{"code", "message"}]}` with Harbor's codes. Every answer carries
`X-Request-Id` (echoed, or generated). Times: `2026-11-23T10:00:00.000Z`.
Lists: `q` (k=v, k=~v, k=[a~b], k={a b}, k=(a b); comma-separated; keys match fields
case- and underscore-insensitively; unknown keys ignored), `sort` (`-id,name`),
`page`, `page_size` (default 10, max 100), `X-Total-Count`, `Link`
(`</api/v2.0/...?page=2&page_size=10>; rel="next"`, joined by " , ").

Executions: the source artifacts of a push policy (local → remote) are the local
artifacts matching its filters (name: doublestar glob on "project/repo"; tag: glob on
the tag, `excludes` negates; label and resource filters match everything); one task per
repository. A pull policy (remote → local) gets one task when its name filter is a
literal repository (tag: the literal tag filter or "latest"), none otherwise. Tasks are
Pending for the first 10 % of `task_seconds`, then InProgress, then Succeed, or Failed
when `repository` or `repository:tag` matches a failure pattern (glob or substring) or
the remote registry's URL is marked unreachable. No matching artifact: Succeed at once
("no resources need to be replicated"). Scheduled policies fire on their 6-field cron
(UTC, every matching second, while served); event_based push policies fire when an
artifact is pushed (one task, that artifact) or, with replicate deletion, deleted.

Control API (admin Basic auth; never faulted, never logged)
-----------------------------------------------------------
GET    /_sim/requests ?method&path_prefix   the request log: method, path, query, status,
                                            time, user; DELETE /_sim/requests clears it
POST   /_sim/faults {status: 500|502|503|504|429, count=1, retry_after?, path_prefix?,
                     method?}               answer the next `count` matching requests so
POST   /_sim/faults {latency: seconds, count?, path_prefix?, method?}
                                            delay `count` requests (None: until cleared)
DELETE /_sim/faults                         clear faults and latency
POST   /_sim/artifacts {project, repository, tag}   push (project created if needed;
                                            fires event_based policies) → {executions}
DELETE /_sim/artifacts {project, repository, tag}   delete (deletion events)
POST   /_sim/unreachable {url}; DELETE /_sim/unreachable [{url}]
POST   /_sim/fail {pattern}; DELETE /_sim/fail
GET|POST /_sim/settings {task_seconds?, check_registry_health?, status_refresh_seconds?}
POST   /_sim/stuck {execution_id?}          that execution (or the next one started)
                                            is never closed; DELETE /_sim/stuck: all
                                            stuck executions close
GET    /_sim/state                          everything as JSON, secrets masked
In process: `sim.store.push_artifact / delete_artifact / mark_unreachable /
clear_unreachable / add_failure_pattern / clear_failure_patterns / set_task_seconds /
set_registry_health_check / snapshot`, `sim.store.faults.add_fault / add_latency /
clear`, `sim.store.requests.list / count / clear`.

Harbor behaviour mimicked (read from Harbor's code; easy to get wrong in a client)
-------------------------------------------------------------------------------
- Zero values are omitted from JSON (go-swagger `omitempty`): `enabled: false`,
  `override: false`, `replicate_deletion: false`, `description: ""`, empty `filters` are
  absent, not false/empty. Always present: policy `speed`, `copy_by_chunk`,
  `dest_namespace_replace_count`, registry `id` (0 for Local), execution counters and
  `status_text`, robot `editable`/`disable`. A running execution's or a pending task's
  `end_time`/`start_time` is `0001-01-01T00:00:00.000Z`.
- Policies: `replicate_deletion` is taken from the deprecated `deletion` field (send
  both); both fields are returned equal. PUT is a full replace (omitted = zero: a PUT
  without `enabled` disables). `speed` < 0 becomes 0 (default 0);
  `dest_namespace_replace_count` defaults to -1. The local side is returned as registry
  0 "Local" (type harbor, the simulator's URL, credential type "secret", masked). A
  trigger or trigger_settings not sent is not returned; a cron is returned as sent (no
  normalisation). A filter's `decoration` is returned only if sent; on name/resource
  filters it is refused (400 "only tag and label filter support decoration"). A missing
  registry id is 404 (registry manager), not 400. Unknown fields (e.g.
  `single_active_replication`) are ignored.
- Executions: the list takes no `q`; filter by `policy_id`, `status`, `trigger` (one
  policy at a time) or list all, newest first. Status: InProgress while a task is
  pending/running, then Failed if any failed, else Stopped if any stopped, else Succeed.
  A disabled policy: 412 "the policy N is disabled"; unknown policy 404; deleting a
  policy with a running execution 412; stopping a finished execution 200.
  `src_resource` is `library/nginx [2 item(s) in total]` (current Harbor format).
- Registries: an unknown `type` is a 500 (Harbor's adapter lookup); no access_key means
  no credential (`{}`). Health checks: see above.
- Robots: names `robot$<name>` (system) / `robot$<project>+<name>` (project); `name`
  must match `^[a-z0-9]+(?:[._-][a-z0-9]+)*$`; `duration` -1 or > 0 (0 is 400);
  `expires_at` creation + days (Unix seconds) or -1; a project robot on a project that
  does not exist is 403 (permission check first), a system robot's permission on a
  missing project 404; access pairs are checked against Harbor's rbac table. The secret
  is generated (a given one is ignored) and returned only by POST. PATCH `{secret: ""}`
  returns a new random secret; PATCH with a secret (8-128 chars, upper, lower, digit;
  else 400) answers `{}` (Harbor does not echo it). PUT cannot change name/level
  (400). GET /robots without a `Level` key in `q` lists system robots only (Harbor
  adds ProjectID=0); project robots need `q=Level=project,ProjectID=N`; `q=Level=system`
  lists all robots (no filter added). Keys `Level`/`ProjectID` are case-sensitive there.
  `q=name=...` matches the stored name: without `robot$`, with `<project>+` for project
  robots.
- Projects: `library` exists and is public; new projects are private
  unless `metadata.public` is "true". POST Location is by id, or by name with
  `X-Resource-Name-In-Location: true` (harborapi sends it).

Assumptions (not confirmed from Harbor's code or swagger)
--------------------------------------------------------
- Non-integer page/page_size: 422 UNPROCESSABLE_ENTITY "validation failure list: ..."
  (go-swagger parameter validation through Harbor's error mapping). A missing required
  body is 422 too; malformed JSON 400. What page_size 0 returns (here: everything).
- The default order of repository lists (newest first).
- Registry health: requests time out after 2 s; URLs marked unreachable behave as if
  nothing answered and show `status: unhealthy` at once (Harbor refreshes status every
  5 minutes). `check_registry_health: false` accepts any URL. Types other than harbor
  and docker-registry are checked like docker-registry (their real adapters talk to
  their clouds, which cannot be reached here).
- Tasks of a push to a destination that is down fail with a "connection refused" log
  line (on 2.12.4 also seen: a 401 from the destination; the simulator does not check
  credentials at task time).
- The exact wording of error messages, task logs and status_text; job ids are random
  hex; `X-Request-Id` is a UUID when not sent.
- `systeminfo` always carries `harbor_version` ("v2.12.4-sim"); anonymous callers get
  only auth_mode, primary_auth_mode, self_registration and harbor_version.
- Robots: only project:read, repository:list and repository:pull are evaluated (for
  the two project reads above; registry pulls are not simulated); system-level robot
  permissions do not open admin endpoints (403). A robot listing GET /projects sees
  public projects only. Duplicate robot names are 409.
- Which jobs take the execution ids in between (a gap every fourth id); the CSRF
  token's format (the simulator keeps cookie → token; gorilla/csrf derives it).
- Cron: robfig/cron semantics (seconds first; `?`; names; day-of-month OR day-of-week
  when neither is `*`); evaluated in UTC; at most 300 missed seconds are caught up
  while served, none while stopped.
- Event-based policies fire only for push policies (local source); label/resource filters
  never exclude anything; artifacts have no labels or digests beyond a random one.
"""

from .errors import HarborError
from .server import HarborSimulator
from .store import Store

__all__ = ["HarborError", "HarborSimulator", "Store"]
