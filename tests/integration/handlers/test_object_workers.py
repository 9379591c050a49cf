"""kopf works on a bounded number of pipelines at once (`EVENTPIPELINE_OBJECT_WORKERS`). A
controller restarted with fewer workers than pipelines must still take every pipeline up: with a
kopf index, each object waits until all are indexed, which cannot happen while the others wait for
a worker (the controller then reconciled nothing at all)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.support import Kube, eventually

pytestmark = pytest.mark.integration

PIPELINES = 5
OBJECT_WORKERS = 2


def spec(rotate_every: str) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "credentials": {"rotateEvery": rotate_every},
    }


def test_a_restarted_controller_with_fewer_object_workers_than_pipelines_reconciles_them_all(
    kube: Kube, operator: Any, namespace: str
) -> None:
    names = [f"bounded-{index}" for index in range(PIPELINES)]
    for name in names:
        kube.create_pipeline(namespace, name, spec("24h"))
    for name in names:
        kube.wait_condition(namespace, name, "Ready", "True")

    operator.kill()
    operator.env["EVENTPIPELINE_OBJECT_WORKERS"] = str(OBJECT_WORKERS)
    try:
        operator.start()
        for name in names:  # a change each: only a reconciliation brings observedGeneration up to it
            kube.patch_pipeline(namespace, name, {"spec": {"credentials": {"rotateEvery": "25h"}}})

        def all_reconciled() -> bool:
            pending = []
            for name in names:
                body = kube.get_pipeline(namespace, name) or {}
                if body.get("status", {}).get("observedGeneration") != body["metadata"]["generation"]:
                    pending.append(name)
            assert not pending, f"not reconciled since the change: {pending}"
            return True

        eventually(
            all_reconciled, timeout=180, what=f"{PIPELINES} pipelines reconciled by {OBJECT_WORKERS} object workers"
        )
        for name in names:
            kube.wait_condition(namespace, name, "Ready", "True")
    finally:
        operator.kill()
        operator.env.pop("EVENTPIPELINE_OBJECT_WORKERS", None)
        operator.start()
