"""The scheduler's view of the watch stream, and the bounds kopf is given for a wave of objects."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from eventpipeline.handlers import context, schedule


def _event(type_: str | None, uid: str, name: str) -> dict[str, Any]:
    body = {
        "metadata": {"namespace": "shop", "name": name, "uid": uid, "resourceVersion": "7"},
        "spec": {"brokerRef": {"kind": "ClusterBroker", "name": "kafka"}, "producers": [{"name": "app"}]},
    }
    return {"type": type_, "object": body}


def _deliver(raw: dict[str, Any]) -> None:
    asyncio.run(schedule.watch_pipelines(event=raw, body=kopf.Body(raw["object"])))


def test_the_watch_names_pipelines_for_the_scheduler_until_they_are_deleted() -> None:
    _deliver(_event(None, "u-watch-1", "orders"))  # the initial listing has no type
    _deliver(_event("MODIFIED", "u-watch-2", "payments"))
    assert schedule.NAMES.get("u-watch-1") == ("shop", "orders")
    assert schedule.NAMES.get("u-watch-2") == ("shop", "payments")

    _deliver(_event("DELETED", "u-watch-1", "orders"))
    assert schedule.NAMES.get("u-watch-1") is None
    assert schedule.NAMES.get("u-watch-2") == ("shop", "payments")
    schedule.NAMES.deleted("u-watch-2")


def test_kopf_works_on_a_bounded_number_of_objects_at_once() -> None:
    settings = kopf.OperatorSettings()
    context.configure(settings)
    assert settings.queueing.worker_limit == context.OBJECT_WORKERS
    assert context.OBJECT_WORKERS >= context.WORKERS  # never fewer objects than reconciliation threads
    assert settings.queueing.idle_timeout == context.OBJECT_IDLE_SECONDS
