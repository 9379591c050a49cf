"""A restarted controller takes up every pipeline again (kopf's resume) from the brokers' listings,
like a drift check, not with reads of each pipeline's topic, users and ACLs: at 10,000 pipelines
those were about 50,000 rate-limited admin calls after every restart. What changed while it was
away is still repaired."""

from __future__ import annotations

from typing import Any

import pytest

from eventpipeline.api.common import GROUP, VERSION
from tests.integration.reconciler.test_drift_batching import LISTINGS, PER_PIPELINE_READS
from tests.integration.support import Kube, eventually, operator_calls, operator_runs

pytestmark = pytest.mark.integration

PIPELINES = 4


def resumed(metrics_port: int) -> float:
    """Runs of kopf's resume so far (the operator's eventpipeline_change_runs_total)."""
    return operator_runs(metrics_port, "eventpipeline_change_runs_total", "resume")


def live_kafka_pipelines(kube: Kube) -> int:
    """Pipelines on a Kafka broker not being deleted: the ones a restart resumes (those of earlier
    tests included)."""
    listing: dict[str, Any] = kube.custom.list_cluster_custom_object(GROUP, VERSION, "eventpipelines")
    return sum(
        1
        for item in listing["items"]
        if not item["metadata"].get("deletionTimestamp")
        and (item.get("spec", {}).get("brokerRef") or {}).get("name") == "local-kafka"
    )


def test_a_restarted_controller_resumes_from_listings_and_repairs_what_changed_meanwhile(
    kube: Kube, operator: Any, namespace: str
) -> None:
    spec = {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
    }
    names = [f"resumed-{index}" for index in range(PIPELINES)]
    for name in names:
        kube.create_pipeline(namespace, name, spec)
    for name in names:
        kube.wait_condition(namespace, name, "Ready", "True")

    operator.kill()
    try:
        # While the controller is away, a tenant deletes a pipeline's credential Secret.
        secret = f"{names[0]}.app.credentials"
        kube.core.delete_namespaced_secret(secret, namespace)
        kafka_pipelines = live_kafka_pipelines(kube)
    finally:
        operator.start()

    eventually(lambda: resumed(operator.metrics_port) >= PIPELINES, timeout=180, what="the pipelines resumed")
    eventually(lambda: kube.secret(namespace, secret), timeout=180, what="the deleted Secret back after the restart")
    eventually(
        lambda: any(reason == "CredentialRepaired" for _, reason, _ in kube.events(namespace, names[0])),
        timeout=30,
        what="a CredentialRepaired event",
    )
    for name in names:
        kube.wait_condition(namespace, name, "Ready", "True")

    runs = resumed(operator.metrics_port)
    counted = operator_calls(operator.metrics_port)  # a new process: counted since the restart
    kafka = {key: value for key, value in counted.items() if key.startswith("kafka.")}
    # The broker listed (topics, users, ACLs) …
    assert all(counted.get(f"kafka.{operation}", 0.0) >= 1 for operation in LISTINGS), kafka
    # … instead of each resumed pipeline reading its topic, users and ACLs (at least 3 reads each,
    # `kafka_pipelines` of them here):
    # what remains are the repaired pipeline's reads after its own write, retries after a timeout,
    # and pipelines of earlier tests still being deleted.
    reads = sum(counted.get(f"kafka.{operation}", 0.0) for operation in PER_PIPELINE_READS)
    assert reads <= runs, (runs, kafka_pipelines, kafka)
