"""`replication-operator plan -f FILE_OR_DIR`: what applying these manifests would do on
each server, without writing anything anywhere.

Exit code as `terraform plan -detailed-exitcode`: 0 nothing would change, 2 something
would (a resource created, changed or pruned, or an action on a server), 1 on an error
or a problem the operator would report (a missing Secret, a server that does not
answer, a filter the backend cannot honour, a job that belongs to another resource).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException

from replication_operator.gitops.cluster import Cluster, current_namespace
from replication_operator.gitops.manifests import ManifestError, load
from replication_operator.gitops.planner import ORDER, Planner, Row

EXIT_SAME, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def exit_code(rows: Sequence[Row]) -> int:
    if any(row.problems for row in rows):
        return EXIT_ERROR
    return EXIT_CHANGES if any(row.changes for row in rows) else EXIT_SAME


def summary(rows: Sequence[Row]) -> dict[str, int]:
    actions = Counter(row.action for row in rows)
    resources = Counter(row.resource for row in rows)
    return {"create": actions["create"], "update": actions["update"],
            "delete": actions["delete"], "adopt": actions["adopt"],
            "rotate": actions["rotate"], "run": actions["run"],
            "nothing": actions["nothing"], "problems": sum(len(r.problems) for r in rows),
            "new": resources["new"], "changed": resources["changed"],
            "pruned": resources["pruned"], "unchanged": resources["unchanged"]}


def detail(row: Row) -> str:
    """What happens, in a line: present tense, field names only."""
    what = row.target
    if row.action == "error":
        return row.problems[0] if row.problems else "error"
    if row.action == "create":
        return f"{what}" + (" (was removed from the server)"
                            if row.reason == "DriftCorrected" else "")
    if row.action == "update":
        fields = ", ".join(row.fields) or "settings"
        why = {"DriftCorrected": "put back, changed on the server",
               "Adopted": "adopted, rewriting what differs",
               "CredentialsRotated": "switched to the rotated credential"}.get(row.reason, "")
        return f"{what}: {fields}" + (f" ({why})" if why else "")
    if row.action == "delete":
        return what + {"Suspended": " (suspended)", "Deleted": " (--prune)"}.get(row.reason, "")
    if row.action == "adopt":
        return f"{what} as it is (it matches the spec: nothing written)"
    if row.action == "rotate":
        return f"{what} ({row.reason})"
    if row.action == "run":
        return f"{what}: an execution"
    if row.resource == "pruned":
        return row.message
    return row.message or (f"{what} in sync" if what else "")


def render_table(rows: Sequence[Row], notes: Sequence[str], out: TextIO) -> None:
    if not rows:
        print("No resource of the operator's kinds in these files.", file=out)
    table = [("ACTION", "KIND", "NAME", "SERVER", "RESOURCE", "DETAIL")]
    extra: dict[int, list[str]] = {}
    for index, row in enumerate(rows, start=1):
        table.append((row.action, row.kind, f"{row.namespace}/{row.name}", row.server or "-",
                      row.resource, detail(row)))
        lines = [f"spec changes: {', '.join(row.spec_fields)}"] if row.spec_fields else []
        lines += [f"note: {n}" for n in row.notes]
        lines += [f"problem: {p}" for p in row.problems[1 if row.action == "error" else 0:]]
        extra[index] = lines
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    for index, line in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:5])) + "  "
              + line[5], file=out)
        for text in extra.get(index, []):
            print(f"{'':{widths[0]}}  ↳ {text}", file=out)
    counts = summary(rows)
    print(f"\nPlan: {counts['create']} to create, {counts['update']} to update, "
          f"{counts['delete']} to delete, {counts['adopt']} to adopt as they are, "
          f"{counts['rotate']} to rotate, {counts['run']} to run; {counts['problems']} "
          f"problem(s). Resources: {counts['new']} new, {counts['changed']} changed, "
          f"{counts['pruned']} pruned, {counts['unchanged']} unchanged.", file=out)
    for note in notes:
        print(f"Note: {note}", file=out)


async def run_plan(paths: Sequence[str], namespace: str | None, *, prune: bool, output: str,
                   out: TextIO, err: TextIO) -> int:
    try:
        cluster = Cluster()
        manifests, ignored = load(paths, namespace or current_namespace())
    except (ManifestError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_ERROR
    except ConfigException as exc:
        print(f"error: no cluster to read ({exc})", file=err)
        return EXIT_ERROR
    planner = Planner(cluster, manifests)
    try:
        planned = sorted((m for m in manifests if m.kind in ORDER),
                         key=lambda m: (m.namespace, ORDER.index(m.kind), m.name))
        rows = [await planner.row(m) for m in planned]
        pruned = await planner.pruned(manifests)
    except ApiException as exc:
        print(f"error: cannot read the cluster: HTTP {exc.status} {exc.reason} (are the CRDs "
              f"installed and may you read them? `replication-operator check` tells)",
              file=err)
        return EXIT_ERROR
    finally:
        await planner.aclose()
    notes = [*planner.notes, *ignored]
    if prune:
        rows += pruned
    elif pruned:
        notes.append(f"{len(pruned)} resource(s) of these kinds in the cluster are not in "
                     f"the files ({', '.join(f'{r.kind} {r.name}' for r in pruned[:5])}"
                     f"{', ...' if len(pruned) > 5 else ''}); --prune plans their deletion")
    code = exit_code(rows)
    if output == "json":
        document: dict[str, Any] = {"rows": [r.as_json() for r in rows], "notes": notes,
                                    "summary": summary(rows), "exitCode": code}
        print(json.dumps(document, indent=2), file=out)
    else:
        render_table(rows, notes, out)
    return code
