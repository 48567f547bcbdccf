"""Checks over the whole end-to-end run (this module runs last): no secret leaked,
the metrics moved, and the Argo CD health check reads every status the run produced."""

from __future__ import annotations

from collections import Counter
from typing import Any

from e2e_support import SEEN_OBJECTS, OperatorProcess, metric_sum

from argocd_lua import health


def test_no_secret_value_in_operator_logs_events_or_status(
        cluster: Any, operator: OperatorProcess, secret_values: set[str]) -> None:
    assert len(secret_values) >= 4, "the run registered too few secrets to look for"
    events = cluster.kubectl("get", "events", "-A", "-o", "json").stdout
    resources = cluster.kubectl("get", "dbops", "-A", "-o", "json").stdout
    haystacks = {"operator log": operator.log_text(), "events": events,
                 "custom resources": resources,
                 "statuses seen during the run": repr(SEEN_OBJECTS)}
    for where, text in haystacks.items():
        for value in secret_values:
            assert value not in text, f"a secret value appears in the {where}"


def test_metrics_moved(operator: OperatorProcess) -> None:
    text = operator.metrics()
    assert metric_sum(text, "replication_operator_reconciles_total", result="ok") > 10
    assert metric_sum(text, "replication_operator_reconciles_total", result="error") > 0
    assert metric_sum(text, "replication_operator_backend_requests_total", code="200") > 10
    assert metric_sum(text, "replication_operator_backend_request_seconds_count") > 10
    assert metric_sum(text, "replication_operator_replication_progress",
                      field="docsWritten") > 0
    assert "replication_operator_resources{" in text
    assert metric_sum(text, "replication_operator_token_expiry_timestamp_seconds") > 0


def test_argocd_health_over_the_statuses_of_the_run() -> None:
    seen = Counter(health(obj) for obj in SEEN_OBJECTS if obj.get("status"))
    assert {"Healthy", "Progressing", "Degraded"} <= set(seen), seen
