"""The thin kopf handlers: backoff schedules and the cheap due check of the timer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from eventpipeline.handlers import context
from eventpipeline.handlers.pipeline import _looks_due
from eventpipeline.planning.clock import iso, utcnow
from eventpipeline.reconciler.pipeline import parse_pipeline


def _body(status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "orders", "uid": "u-1", "annotations": annotations or {}},
        "spec": {"brokerRef": {"kind": "ClusterBroker", "name": "kafka"}, "producers": [{"name": "app"}]},
        "status": status or {},
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


def test_the_timer_looks_for_due_rotations_and_revocations_without_io() -> None:
    past, future = iso(utcnow() - timedelta(minutes=1)), iso(utcnow() + timedelta(hours=1))
    assert _looks_due(parse_pipeline(_body({"principals": [_principal(nextRotationAt=past)]})))
    assert _looks_due(parse_pipeline(_body({"principals": [_principal(previousRevokeAt=past)]})))
    assert not _looks_due(parse_pipeline(_body({"principals": [_principal(nextRotationAt=future)]})))


def test_a_new_rotate_annotation_is_due_at_once() -> None:
    annotations = {"eventpipeline.dev/rotate": "now"}
    assert _looks_due(parse_pipeline(_body({"rotateRequest": "earlier"}, annotations)))
    assert not _looks_due(parse_pipeline(_body({"rotateRequest": "now"}, annotations)))
