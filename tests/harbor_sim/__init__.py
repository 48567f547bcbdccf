"""Harbor v2.0 API simulator: the parts of Harbor's REST API the operator uses, answering
as Harbor does (shapes checked against the PyPI client `harborapi` by
tests/integration/test_harbor_sim_contract.py; behaviour read from goharbor/harbor's
swagger, handlers and controllers).

Run it by hand (from the repository root; never prints the password)::

    .venv/bin/python -m tests.harbor_sim --host 127.0.0.1 --port 8780 \\
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

API under /api/v2.0 (HTTP Basic; one admin user)
------------------------------------------------
Anonymous: GET systeminfo (protected fields only when logged in), health, ping. Wrong
credentials count as anonymous (Harbor's security middleware): 401 where a login is
needed. Admin: users/current; projects (GET, HEAD ?project_name=, POST), GET
projects/{name_or_id}, GET projects/{name}/repositories; registries (GET, POST,
ping, GET/PUT/DELETE {id}); replication/policies (GET, POST, GET/PUT/DELETE {id});
replication/executions (GET ?policy_id&status&trigger, POST {policy_id}, GET/PUT {id},
GET {id}/tasks ?status&resource_type, GET {id}/tasks/{task_id}/log as text/plain);
robots (GET, POST, GET/PUT/PATCH/DELETE {id}).
Robot accounts (Basic auth with `robot$...` and the current secret) may only GET
projects/{name} and projects/{name}/repositories, for projects they have
`repository:pull` on (or any public project); 403 elsewhere; a wrong, old, disabled or
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
GET|POST /_sim/settings {task_seconds?, check_registry_health?}
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
- Registries: creation and update check health (400 "the registry is unhealthy"); an
  unknown `type` is a 500 (Harbor's adapter lookup); DELETE while a policy uses it 412;
  `access_secret` always "*****"; no access_key means no credential (`{}`).
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
- Projects: GET projects/{name} for a name that does not exist is 403 even for the admin
  (permission is checked before existence; use HEAD /projects?project_name=); an
  unknown numeric id is 404. `library` exists and is public; new projects are private
  unless `metadata.public` is "true". POST Location is by id, or by name with
  `X-Resource-Name-In-Location: true` (harborapi sends it).

Assumptions (not confirmed from Harbor's code or swagger)
--------------------------------------------------------
- page_size > 100 and non-integer page/page_size: 422 UNPROCESSABLE_ENTITY "validation
  failure list: ..." (go-swagger parameter validation through Harbor's error mapping).
  A missing required body is 422 too; malformed JSON 400. page_size 0 means no paging.
- Default list order (no `sort`): newest first (creation time, then id) everywhere,
  tasks included.
- Registry health: the URL's host:port accepts a TCP connection within 2 s (Harbor pings
  the registry through its adapter); the simulator's own URL is healthy; URLs marked
  unreachable are unhealthy and show `status: unhealthy` at once (Harbor refreshes
  status every 5 minutes). `check_registry_health: false` accepts any URL.
- An unreachable remote fails the execution before any task (status_text names the
  error), as Harbor's fetch/prepare stages do; marked while tasks run, those tasks fail.
- The exact wording of error messages, task logs and status_text; job ids are random
  hex; `X-Request-Id` is a UUID when not sent.
- `systeminfo` always carries `harbor_version` ("v2.11.0-sim"); anonymous callers get
  only auth_mode, primary_auth_mode, self_registration and harbor_version.
- Robots: only repository pull is honoured for authentication; system-level robot
  permissions do not open admin endpoints (403). A robot listing GET /projects sees
  public projects only. Duplicate robot names are 409.
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
