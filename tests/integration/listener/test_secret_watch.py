"""A Secret whose value is not UTF-8 in the listener's namespace must not kill its Secret watch:
a rotation after it is still picked up without a restart (issue 12: it used to stop rotations
for every pipeline until the listener restarted)."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client

from eventpipeline.adapters.kube import PRINCIPAL_LABEL
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL
from eventpipeline.planning import naming
from tests.integration.listener.brokers import kafka_produce
from tests.integration.listener.conftest import Harness, rotate_and_wait, wait_ready
from tests.integration.listener.test_messages_become_runs import (
    assert_exactly,
    run_prefix,
    spec,
    values,
    wait_runs,
)
from tests.integration.support import unique

pytestmark = pytest.mark.integration


def test_a_secret_that_is_not_utf8_does_not_stop_rotations_being_picked_up(harness: Harness) -> None:
    h = harness
    kube, namespace, dag_id, airflow = h.kube, h.namespace, h.dag_id, h.airflow
    pipeline = spec("local-kafka", dag_id)
    pipeline["credentials"] = {"rotateEvery": "24h", "gracePeriod": "5s"}
    kube.create_pipeline(namespace, "utf", pipeline)
    topic = wait_ready(kube, namespace, "utf")["status"]["topic"]
    producer = kube.secret(namespace, naming.secret_name("utf", "app"))
    assert producer is not None
    prefix = run_prefix(namespace, "utf")
    listener = h.listener_factory(f"{namespace}/utf")
    kafka_produce(producer, topic, values("before", 5))
    wait_runs(airflow, dag_id, prefix, 5)

    # A Secret the listener watches (its label) holding bytes that are not UTF-8.
    odd = client.V1Secret(
        metadata=client.V1ObjectMeta(name=unique("odd"), labels={PRINCIPAL_LABEL: LISTENER_PRINCIPAL}),
        data={"keystore": base64.b64encode(b"\xff\xfe\x00binary").decode()},
    )
    kube.core.create_namespaced_secret(naming.DEFAULT_LISTENER_NAMESPACE, odd)
    try:
        rotate_and_wait(kube, namespace, "utf")
        producer = kube.secret(namespace, naming.secret_name("utf", "app"))  # rotated too
        assert producer is not None
        kafka_produce(producer, topic, values("after", 5))
        wait_runs(airflow, dag_id, prefix, 10)
        assert_exactly(airflow, dag_id, prefix, values("before", 5) + values("after", 5))
        assert listener.alive(), "the listener was restarted"
        assert "listener Secret changed; reconnecting" in listener.log_path.read_text()
    finally:
        kube.core.delete_namespaced_secret(odd.metadata.name, naming.DEFAULT_LISTENER_NAMESPACE)
