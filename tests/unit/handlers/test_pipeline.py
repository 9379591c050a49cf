"""The thin kopf handlers: backoff schedules and the due hint the scheduler reads from each object."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import kopf
import pytest

from eventpipeline.adapters.drift import drift_max_age, drift_reads
from eventpipeline.handlers import context, pipeline
from eventpipeline.planning.clock import iso, utcnow
from eventpipeline.planning.schedule import Handled, due_hint
from eventpipeline.reconciler.pipeline import PipelineObject, parse_pipeline


def _body(status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An object the controller has reconciled once (its status has an observedGeneration)."""
    return {
        "metadata": {"namespace": "shop", "name": "orders", "uid": "u-1", "annotations": annotations or {}},
        "spec": {"brokerRef": {"kind": "ClusterBroker", "name": "kafka"}, "producers": [{"name": "app"}]},
        "status": {"observedGeneration": 1, **(status or {})},
    }


def _principal(**times: str) -> dict[str, Any]:
    return {"name": "app", "role": "producer", "secretName": "s", "username": "u", "generation": 1, **times}


def test_transient_failures_back_off_from_one_second_to_a_minute() -> None:
    delays = [context.transient_backoff(retry) for retry in range(10)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == 60.0 and delays == sorted(delays)


def test_cleanup_backs_off_but_never_stops() -> None:
    delays = [context.delete_backoff(retry) for retry in range(100)]
    assert delays[0] == context.DELETE_BACKOFF_SECONDS
    assert delays[-1] == context.DELETE_MAX_BACKOFF_SECONDS


def _looks_due(pipeline: PipelineObject) -> bool:
    now = utcnow()
    at = due_hint(pipeline.spec, pipeline.status, pipeline.rotate_request, now)
    return at is not None and at <= now


def test_the_hint_says_when_a_rotation_or_revocation_is_due_without_io() -> None:
    past, future = iso(utcnow() - timedelta(minutes=1)), iso(utcnow() + timedelta(hours=1))
    assert _looks_due(parse_pipeline(_body({"principals": [_principal(nextRotationAt=past)]})))
    assert _looks_due(parse_pipeline(_body({"principals": [_principal(previousRevokeAt=past)]})))
    assert not _looks_due(parse_pipeline(_body({"principals": [_principal(nextRotationAt=future)]})))


def test_a_new_rotate_annotation_is_due_at_once() -> None:
    annotations = {"eventpipeline.dev/rotate": "now"}
    assert _looks_due(parse_pipeline(_body({"rotateRequest": "earlier"}, annotations)))
    assert not _looks_due(parse_pipeline(_body({"rotateRequest": "now"}, annotations)))


def test_an_object_never_reconciled_hints_nothing_its_creation_handler_runs_it() -> None:
    # Without this the scheduler ran every new pipeline at once, next to kopf's creation handler.
    body = _body(annotations={"eventpipeline.dev/rotate": "now"})
    body["spec"]["airflow"] = {"instanceRef": {"name": "local"}, "trigger": {"dagId": "d"}}
    assert _looks_due(parse_pipeline(body))
    del body["status"]["observedGeneration"]
    pipeline = parse_pipeline(body)
    assert due_hint(pipeline.spec, pipeline.status, pipeline.rotate_request, utcnow()) is None


def test_a_listener_report_is_due_again_when_it_would_turn_silent() -> None:
    body = _body({"listener": {"updatedAt": iso(utcnow()), "replica": "l-0"}})
    body["spec"]["airflow"] = {"instanceRef": {"name": "local"}, "trigger": {"dagId": "d"}}
    body["status"]["conditions"] = [
        {"type": "ListenerReady", "status": "True", "reason": "Listening", "message": "", "lastTransitionTime": "x"}
    ]
    pipeline = parse_pipeline(body)
    now = utcnow()
    at = due_hint(pipeline.spec, pipeline.status, None, now)
    assert at is not None and timedelta(minutes=1) < at - now <= timedelta(minutes=2)


def test_a_drift_check_reconciles_from_the_watchs_copy_without_managed_fields() -> None:
    body = _body()
    body["metadata"] |= {"uid": "u-copy", "resourceVersion": "5", "managedFields": [{"manager": "kubectl"}]}
    pipeline.remember(kopf.Body(body))
    with drift_reads(300.0):
        current = pipeline._current(body["metadata"])
    assert current is not None and "managedFields" not in current["metadata"]
    assert current["spec"] == body["spec"] and current["metadata"]["resourceVersion"] == "5"
    body["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    pipeline.remember(kopf.Body(body))  # being deleted: not kept
    with drift_reads(300.0):
        assert pipeline.COPIES.lookup("u-copy") is None


def test_the_drift_copy_keeps_only_what_a_run_reads_and_parses_to_the_same_pipeline() -> None:
    past = iso(utcnow() - timedelta(minutes=1))
    body = _body(
        {"principals": [_principal(nextRotationAt=past)], "rotateRequest": "earlier"},
        {
            "eventpipeline.dev/rotate": "now",
            "eventpipeline.dev/last-handled": '{"spec": {"producers": [{"name": "app"}]}}',
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        },
    )
    body["apiVersion"], body["kind"] = "eventpipeline.dev/v1alpha1", "EventPipeline"
    body["metadata"] |= {
        "generation": 3,
        "resourceVersion": "7",
        "labels": {"team": "shop"},
        "finalizers": ["eventpipeline.dev/finalizer"],
        "managedFields": [{"manager": "kubectl"}],
        "creationTimestamp": past,
    }
    copy = pipeline.drift_copy(body)
    from_copy, from_body = parse_pipeline(copy), parse_pipeline(body)
    assert from_copy.rotate_request == from_body.rotate_request == "now"
    assert from_copy == replace(from_body, annotations={"eventpipeline.dev/rotate": "now"})
    assert copy["metadata"] == {
        "namespace": "shop",
        "name": "orders",
        "uid": "u-1",
        "generation": 3,
        "resourceVersion": "7",
        "annotations": {"eventpipeline.dev/rotate": "now"},
    }
    del body["metadata"]["annotations"]
    assert "annotations" not in pipeline.drift_copy(body)["metadata"]


def test_kopfs_earlier_state_of_a_handled_object_is_skipped_without_reading_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def services() -> Any:
        raise AssertionError("the object was read")

    monkeypatch.setattr(context, "services", services)
    body = _body()
    body["metadata"] |= {"uid": "u-repeat", "generation": 1}
    context.record_handled("u-repeat", Handled((1, None)))
    try:
        assert pipeline.reconcile(kopf.Body(body), skip_repeat=True) is None
        body["metadata"]["generation"] = 2  # a newer state is read, then reconciled
        with pytest.raises(AssertionError, match="was read"):
            pipeline.reconcile(kopf.Body(body), skip_repeat=True)
        body["metadata"] |= {"generation": 1, "annotations": {"eventpipeline.dev/rotate": "now"}}
        with pytest.raises(AssertionError, match="was read"):
            pipeline.reconcile(kopf.Body(body), skip_repeat=True)
    finally:
        context.forget("u-repeat")


@pytest.mark.parametrize(
    ("reason", "retry", "max_age"),
    [
        ("resume", 0, context.RESYNC_SECONDS),  # from the brokers' listings, like a drift check
        ("resume", 1, None),  # a retry reads fresh
        ("create", 0, None),
        ("update", 0, None),
    ],
)
def test_a_resumed_pipeline_is_checked_from_the_listings_and_everything_else_reads_fresh(
    monkeypatch: pytest.MonkeyPatch, reason: str, retry: int, max_age: float | None
) -> None:
    seen: list[float | None] = []

    def reconcile(body: kopf.Body, *, skip_repeat: bool = False) -> str | None:
        seen.append(drift_max_age())
        return None

    monkeypatch.setattr(pipeline, "reconcile", reconcile)
    pipeline.reconcile_on_change(body=kopf.Body(_body()), reason=reason, retry=retry)
    assert seen == [max_age]
