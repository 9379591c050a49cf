"""The controller's per-pipeline metrics: reconcile errors by reason, credential timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from eventpipeline.adapters import metrics

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_failed_parts_are_counted_by_condition_and_reason_once_per_reconciliation() -> None:
    pipelines = metrics.PipelineMetrics()
    before = value("eventpipeline_reconcile_errors_total", condition="TopicReady", reason="UnitTestConflict") or 0
    failures = [("TopicReady", "UnitTestConflict"), ("TopicReady", "UnitTestConflict"), ("Ready", "UnitTestConflict")]
    pipelines.reconciled("shop/orders", failures, [])
    pipelines.reconciled("shop/orders", [("ListenerReady", "UnitTestListenerError")], [])
    assert (
        value("eventpipeline_reconcile_errors_total", condition="TopicReady", reason="UnitTestConflict") == before + 1
    )
    assert value("eventpipeline_reconcile_errors_total", condition="Ready", reason="UnitTestConflict") is None
    assert (
        value("eventpipeline_reconcile_errors_total", condition="ListenerReady", reason="UnitTestListenerError") is None
    )


def test_credential_timestamps_follow_the_reported_principals_and_go_with_the_pipeline() -> None:
    pipelines = metrics.PipelineMetrics()
    day = timedelta(days=1)
    pipelines.reconciled("shop/unit", [], [("app", NOW, NOW + day), ("listener", NOW - day, NOW)])
    rotated = "eventpipeline_credential_rotated_timestamp_seconds"
    due = "eventpipeline_credential_next_rotation_timestamp_seconds"
    assert value(rotated, pipeline="shop/unit", principal="app") == NOW.timestamp()
    assert value(due, pipeline="shop/unit", principal="app") == (NOW + day).timestamp()
    assert value(due, pipeline="shop/unit", principal="listener") == NOW.timestamp()

    pipelines.reconciled("shop/unit", [], [("listener", NOW, NOW + day)])  # producer `app` removed
    assert value(due, pipeline="shop/unit", principal="app") is None
    assert value(due, pipeline="shop/unit", principal="listener") == (NOW + day).timestamp()

    pipelines.forget("shop/unit")
    assert value(rotated, pipeline="shop/unit", principal="listener") is None
    assert value(due, pipeline="shop/unit", principal="listener") is None
