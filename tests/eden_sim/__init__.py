"""Sahana Eden simulator: the sync module of an Eden (web2py app at `/eden`), two of
which really exchange records through Eden's peer protocol when a scheduler job runs.
No Eden can be installed from the registries here, so this is the contract the Eden
backend is built against. Its facts come from `../shared/BACKENDS.md` §4 (seen request
by request on real Eden instances: web2py 2.21.2, Eden master of 2024, Python 3.11).
On three points it does NOT follow §4 but what two real Edens built here answered
(listed under "Seen on Eden built here"): repository names are not unique (§4: unique)
while URLs are; after a failed task only later non-pulling tasks are skipped (§4: every
later task); under the default policy a pull with a wrong peer password is served
anonymously (§4: `b'Authentication Required'`, which the `strict_policy` setting
gives). These wait for BACKENDS.md to be settled by its maintainers. Each fact below is
checked by a test in tests/integration/test_eden_sim_contract.py that fails on a
simulator without it.

Run it by hand (from the repository root; never prints the password)::

    EDEN_SIM_PASSWORD=secret PYTHONPATH=tests .venv/bin/python -m eden_sim --port 8790 \\
        --user admin@example.com [--max-period 5] [--seed-organisation Acme]
    # -> eden-sim listening on http://127.0.0.1:8790/eden (user admin@example.com)
    curl -u admin@example.com:secret http://127.0.0.1:8790/eden/sync/repository.json

In tests (tests/ is on sys.path; the session fixtures `eden_a` / `eden_b` in
tests/conftest.py are two of these)::

    from eden_sim import EdenSimulator
    with EdenSimulator(password="pw") as sim:   # free port
        sim.url        # http://127.0.0.1:PORT/eden, a DatabaseServer's spec.url
        sim.store.data_import("org_organisation", [{"name": "Acme"}])
        sim.store.set_settings(max_period=1)   # every job runs at least every second

Modules: `store` (state and rules), `s3json` (import bodies), `s3xml` (the peer
format), `sync` (registration and runs over the network), `app` (URLs, auth, answers,
faults, request log, /_sim), `faults`, `times`, `server`, `__main__`.

Facts from BACKENDS.md §4 (each with its contract test)
-------------------------------------------------------
- Base URL `http://host:port/eden`, HTTP Basic with the user's e-mail (§4 intro).
- Tables: `sync_repository` (name, url, apitype eden|ccrm|wrike|mcb|adashi|ftp|
  filesync, username, password, proxy, synchronise_uuids, keep_source, uuid,
  last_connected updated even when a sync failed), `sync_task` (resource_name, mode 1
  pull / 2 push / 3 both / 4 none, strategy from create|update|delete|merge,
  update_policy / conflict_policy THIS|OTHER|NEWER|MASTER, components, last_pull,
  last_push; matched on (repository, resource_name)), `sync_job` linking a repository
  to a web2py scheduler_task (function_name sync_synchronize, args "[<repository id>]",
  vars '{"user_id": N}', period, repeats 0 forever / 1 once, timeout, enabled, status
  QUEUED, start_time, next_run_time; a job syncs all tasks of its repository),
  `sync_log` (id, timestmp, repository_id, resource_name, mode such as pull/outgoing,
  action, result success|warning|error|fatal, remote, message) (§4 "Tables").
- Reading, always `.json` lists with `limit=N` and filters `?~.field=value`,
  `~.field__belongs=a,b`: `GET sync/repository.json` → exactly `id, name, uuid,
  last_connected`; `GET sync/repository/<id>/task.json` (id, resource_name, mode,
  strategy, update_policy, conflict_policy, components, last_pull, last_push);
  `GET sync/repository/<id>/job.json`; `GET sync/log.json` newest first, one call with
  `__belongs` serving many repositories; `GET sync/repository/<id>.s3json
  ?mcomponents=task,log` returns the record and its components with the peer password
  in clear text (§4 "Reading").
- Writing only through `.s3json`: `POST sync/repository.s3json` with nested
  `$_sync_task` → `{"status": "success", "statuscode": "200", "records": 1, "created":
  [id]}`; creating a repository with a URL registers this site at the peer at once (the
  peer gets a passive repository named after this host) and every later write of the
  repository registers again and adds a log row; `PUT sync/repository/<id>.s3json` →
  `"updated": [id]`; a record may be addressed by `{"@uuid": ...}`; a PUT or POST on
  `sync/repository/<id>/task.s3json` answers success and creates nothing;
  `create.s3json` answers 415; a POST to `.json` creates nothing and answers with the
  list; a job is written with `PUT sync/repository.s3json`, `$_sync_job` →
  `$k_scheduler_task_id` → a top-level `$_scheduler_task` with `@tuid`, and each such
  write adds a link row (updating a job duplicates it) (§4 "Writing").
- Deleting: `DELETE sync/repository/<id>/task/<task id>.json`, `.../job/<job id>.json`,
  `sync/repository/<id>.json` (tasks go with it, its log rows are removed) →
  `{"status": "success", ...}`; deletes are soft (a re-created task gets a new id);
  an unknown id → 404 `{"status": "failed", "statuscode": "404"}` (§4 "Writing").
- Errors: malformed JSON → HTTP 400 `{"status": "failed", "statuscode": "400",
  "message": ...}`; validation errors → HTTP 200 `"status": "failed", "statuscode":
  "400", "message": "Validation error", "tree"` with `@error` texts such as
  `apitype: Value not allowed` or `name: value(s) required`; a body without a `$_` key
  and unknown fields are ignored and answered as success (`"records": 0`); a wrong
  password or no auth on a write → 401 `Authentication Required` with
  `WWW-Authenticate: Basic realm="eden"`; DELETE with bad credentials → 404 `Operation
  not permitted`; a normal user under a strict policy → 403 `Insufficient Privileges`;
  under the permissive default policy a wrong password on a read is anonymous and the
  read succeeds (§4 "Errors").
- An unknown `resource_name` is accepted at write, then skipped at sync time with no log
  row and `last_pull` staying null; the peer answers 400 to
  `sync/sync.xml?resource=<unknown>` (§4 "Errors").
- `last_pull` is the newest pulled record's modification time + 1 s; `last_push` is never
  set (every push re-sends everything); within one run a failed task makes every later
  task of the repository skipped; a wrong peer password shows in `sync_log` as `result:
  error`, message `b'Authentication Required'` (pull) or `result: fatal`,
  `Authentication Required` (push) (§4 "Observed behaviour").
- Eden's sync adapter before its Python 3.9 fix answers 500 when a repository with a URL
  is created: `/_sim/settings {"adapter_bug": true}` does that (§4 "Observed").
- Peer protocol: register `POST {url}/sync/repository/register.json`; pull `GET
  {url}/sync/sync.xml?resource=<table>&repository=<uuid>[&msince=ISO]`; push `POST` the
  same URL with an S3XML body; records match by `uuid`; data through `POST
  org/organisation.s3json {"$_org_organisation": [{"name": ...}]}` and `GET
  org/organisation.json` (§4 "Peer protocol").

Seen on Eden built here (web2py 2.21.2, Eden master e1cbdd6b5 of 2024-09-13, Python
3.11, sqlite, template skeleton + sync, default security policy; VERSION file says
`eden-dev-73981fd80 (2022-05-20 14:18:14)`; requests and answers in the lead's
/work/realeden/FACTS.md). Each has a contract test.
------------------------------------------------------------------------------------------
- Bodies: `{}` or a JSON array → 400 `{"status": "failed", "statuscode": "400",
  "message": "Invalid source"}`; `{"$_sync_repository": []}` → success, `records: 0`
  (a write check); malformed JSON → 400 with Python's words (`Expecting value: line 1
  column 1 (char 0)`); `create.s3json` → 415 `Unsupported data format!`.
- `.json` lists show datetimes as `2026-12-01 21:39:24` (a space; S3XML and `.s3json`
  use a T); a task's `components` is listed `false` when not given.
- `job.json` lists web2py's readable scheduler_task fields (id, application_name,
  task_name, group_name, status, broadcast, function_name, uuid (no urn:), args, vars,
  enabled, start_time, next_run_time, stop_time, repeats, retry_failed, period,
  prevent_drift, cronline, timeout, sync_output, times_run, times_failed,
  assigned_worker_name), one row per link row, and NOT `last_run_time`. web2py sets
  `next_run_time` = the run's start + period when a worker takes the job, also for one
  that then completes: after a run, `next_run_time - period` is when it started.
  `DELETE .../job/<scheduler_task id>.json` removes the scheduler task and its links
  (`Record deleted`); a repository's DELETE answers `Repository configuration deleted`.
- `sync.xml`: `msince` is naive UTC and inclusive; one with a zone (`...Z`) is ignored
  and everything is exported. A pull (GET) needs no login under the default policy (a
  wrong password reads as anonymous and gets the data); a push (POST) does (401). An
  unknown table → bare 400 `{"status": "failed", "statuscode": "400"}`; a name without
  "_" → 400 text `Invalid request`.
- Runs: a wrong peer password → the pull succeeds anonymously, the push logs `fatal`
  `Authentication Required` (remote), every registration `fatal` `Authentication
  Required`. After a failed task, S3Sync.synchronize keeps the error until a pull resets
  it: the following tasks that do not pull (mode 2, 4) are skipped (no row), a pulling
  task runs and clears it; a task whose pull fails does not push. Messages: `Data
  imported successfully (N records)`, `No data to import (already up-to-date)` (import,
  pull/outgoing), `data sent successfully (N records)`, warning `No data to send` (send,
  push/outgoing), `Registration successful` / `Registration update successful`
  (request registration, push/outgoing), the peer's `Data received from peer`.
  `last_pull` = newest pulled record + 1 s, `last_push` stays null, an unknown resource
  has no row and no last_pull (all as §4 says).
- `default/about`: after the row "Core Components | Version", a row "<short system
  name> | <Eden's VERSION file>" ("Sahana | eden-dev-…"); this simulator shows
  `Sahana | 4.0.0-sim`.
- Under the default policy any logged-in user may write sync settings (403 needs a
  stricter policy: the `strict_policy` setting, not seen here).
- One repository per peer (`one_repository_per_peer`, on unless a test suite turns it
  off): `url` is unique (`url: Value already in database or empty`); `name` is not
  (BACKENDS.md §4 says it is): an import matches a repository by name, any case,
  deleted ones too (undeleted), and answers `updated`. A registration answers
  `{"status": "success", ..., "message": "Registration successful" | "Registration
  update successful", "sender": <this site's uuid>}` and logs `none` /
  `register/incoming` / `none` here; the registering repository takes the sender's
  uuid; a registration whose uuid is a repository's here (deleted or not) updates that
  one: renames it after the registering host, undeletes it. When the taken uuid is
  already another repository's (deleted ones count), Eden fails a unique constraint:
  HTTP 500, the write rolled back (what the peer did stays). `sync/repository.json`
  filters on fields it does not list (`?~.url=`).

Assumptions (not seen on a real Eden; a real one may differ)
-------------------------------------------------------------
- Runs: the scheduler worker is built in (a background tick, `tick_seconds`, 0.25 s):
  a QUEUED, enabled sync job whose next_run_time has come runs at the next tick; a run
  sets status RUNNING, then `times_run += 1`, `next_run_time = start + period`, QUEUED
  again or COMPLETED once `times_run` reaches a non-zero `repeats` (web2py also passes
  through ASSIGNED, and a real worker takes a few seconds). `max_period` (setting /
  `--max-period`) makes every job due at least that often without changing the listed
  `next_run_time`, so tests need not wait 300 s. Tasks run in id order; mode 4 and
  unknown resources are skipped. A job of a deleted repository does nothing (a real
  Eden keeps its scheduler task: only the links are deleted).
- A job written with `$k_scheduler_task_id: {"@uuid": ...}` (or a `$_scheduler_task`
  whose `@uuid` exists) updates that scheduler task and adds a link (§4: "adds a
  duplicate link row").
- The `.s3json` export shape (`@uuid`, `apitype` as `{"@value", "$"}`, components as
  `$_sync_task` / `$_sync_job` / `$_sync_log`, `mcomponents=None` for none) is a
  reduction: a real export also has `backend`, `@mci`, `@created_on`, ..., leaves out
  null fields and shows booleans as `{"@value": false, "$": "No"}`.
- Import rules (a reduction of Eden's importer): records match by uuid; `create` makes
  new ones; `update` replaces fields as the policy allows (THIS never, OTHER always,
  NEWER if the incoming record is newer, MASTER as OTHER); a record also changed
  locally since the task's last pull is a conflict and follows `conflict_policy`;
  deletions need `delete`. The push receiver accepts any authenticated user and any
  repository uuid (a real one answers 403 `Registration required` to an unregistered
  one, by its code) and answers `{"status": "success", ..., "message": "Data received
  from peer"}`.
- S3XML is a subset (`<s3xml>` with `<resource name uuid created_on modified_on
  deleted>` and `<data field>`; a real one also has `mci`, `url`, `<reference>`s).
  Under `strict_policy` a pull needs a login (401), which gives §4's `b'Authentication
  Required'` pull message. A passive repository has no URL.
- Validation details: tasks need resource_name; a deleted repository's URL is cleared;
  its tasks, links and scheduler tasks are deleted with it. Messages other than those
  quoted above are the simulator's own wording.
- Data tables: `org_organisation`, `org_office`, `pr_person`, `project_project` (more
  with `--table` or `/_sim/tables`); records need a `name`; `<prefix>/<name>.json`
  lists them with id, uuid, fields, created_on, modified_on (a real Eden lists the
  table's list_fields, without uuid); `DELETE <prefix>/<name>/<id>.json` deletes softly.
- Times are the wall clock in whole seconds, so a record changed in the same second as
  a pull that set `last_pull` is not pulled again (as on Eden: `msince` is inclusive).

Control API (an admin's Basic auth; never faulted, never logged)
-----------------------------------------------------------------
GET    /_sim/requests ?method&path_prefix   the request log (method, path, query,
                                            status, time, user; never bodies);
                                            DELETE clears it
POST   /_sim/faults {status: 500|502|503|504|429, count=1, retry_after?, path_prefix?,
                     method?}               answer the next `count` matching requests so
POST   /_sim/faults {latency: seconds, count?, path_prefix?, method?}
DELETE /_sim/faults                         clear faults and latency
GET|POST /_sim/settings {max_period?, strict_policy?, adapter_bug?,
                         one_repository_per_peer?}
POST   /_sim/users {email, password, admin?}  add or change a user (a password change
                                            makes peers' stored logins wrong)
POST   /_sim/tables {table}                 a new data table
POST   /_sim/run {repository_id?}           run the due jobs now, or one repository
GET    /_sim/state                          everything as JSON, passwords masked
In process: `sim.store` (the same operations, e.g. `data_import`, `set_settings`,
`add_user`, `faults.add_fault`, `requests.list`).
"""

from .server import EdenSimulator
from .store import EdenError, Store

__all__ = ["EdenError", "EdenSimulator", "Store"]
