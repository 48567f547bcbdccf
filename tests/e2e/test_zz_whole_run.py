"""Checks over the whole end-to-end run (this module runs last): no secret leaked,
the metrics moved, and the Argo CD health check reads every status the run produced."""

from __future__ import annotations

from collections import Counter
from typing import Any

from e2e_support import (
    SEEN_OBJECTS,
    Couch,
    Kube,
    OperatorProcess,
    metric_sum,
    replication,
    wait_for,
)

from argocd_lua import health


def test_no_secret_value_in_operator_logs_events_or_status(
        cluster: Any, operator: OperatorProcess, secret_values: set[str]) -> None:
    # each session of dev/test-suite runs this over its own tests: at least the servers'
    # credentials (the pouchdb-servers of one session share theirs)
    assert secret_values, "the run registered no secret to look for"
    events = cluster.kubectl("get", "events", "-A", "-o", "json").stdout
    resources = cluster.kubectl("get", "dbops", "-A", "-o", "json").stdout
    haystacks = {"operator log": operator.log_text(), "events": events,
                 "custom resources": resources,
                 "statuses seen during the run": repr(SEEN_OBJECTS)}
    for where, text in haystacks.items():
        for value in secret_values:
            assert value not in text, f"a secret value appears in the {where}"


def test_metrics_moved(couch_env: tuple[Kube, Couch, Couch], operator: OperatorProcess,
                       unique_name: Any) -> None:
    """Scrape /metrics around a one-shot replication: the figures move with it."""
    kube, a, _ = couch_env
    before = operator.metrics()
    db = unique_name("metrics")
    a.create_db(db)
    for i in range(3):
        a.put(db, f"d{i}", v=i)
    kube.apply(replication("metered", source={"server": "couch-a", "database": db},
                           target={"server": "couch-b", "database": db, "create": True},
                           continuous=False))
    wait_for(lambda: (kube.get("replication", "metered") or {}).get("status", {})
             .get("phase") == "Completed", what="one-shot completed")

    def progressed() -> bool:
        return metric_sum(operator.metrics(), "replication_operator_replication_progress",
                          namespace=kube.ns, name="metered", field="docsWritten") == 3
    wait_for(progressed, what="progress metric docsWritten=3")
    after = operator.metrics()
    for family, labels in (("replication_operator_reconciles_total", {"result": "ok"}),
                           ("replication_operator_backend_requests_total", {"code": "200"}),
                           ("replication_operator_backend_request_seconds_count", {}),
                           ("replication_operator_reconcile_seconds_count", {})):
        assert metric_sum(after, family, **labels) > metric_sum(before, family, **labels), \
            family
    assert metric_sum(after, "replication_operator_resources", kind="Replication") >= 1
    assert metric_sum(after, "replication_operator_reconciles_total", result="error") > 0


def test_argocd_health_over_the_statuses_of_the_run() -> None:
    seen = Counter(health(obj) for obj in SEEN_OBJECTS if obj.get("status"))
    assert {"Healthy", "Progressing", "Degraded"} <= set(seen), seen
