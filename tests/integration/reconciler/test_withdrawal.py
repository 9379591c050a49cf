"""Withdrawal and deletion under faults, on the real stack: access taken away when a namespace
loses a broker, and deletion that waits for an unreachable broker instead of giving up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError
from kubernetes.client.exceptions import ApiException

from eventpipeline.planning import naming
from tests.integration.conftest import OPEN_DAG
from tests.integration.reconciler.test_kafka_pipeline import TIMEOUT, admin, topic_partitions
from tests.integration.support import GROUP, VERSION, Kube, eventually, kafka_send, unique

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]


def spec(broker: str) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": broker},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
    }


def local_kafka_copy(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    """A ClusterBroker `name` like local-kafka, open to `namespace` only (not created yet)."""
    body = kube.custom.get_cluster_custom_object(GROUP, VERSION, "clusterbrokers", "local-kafka")
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterBroker",
        "metadata": {"name": name},
        "spec": {**body["spec"], "allowedNamespaces": [namespace]},
    }


@pytest.fixture
def own_broker(kube: Kube, namespace: str) -> Iterator[str]:
    """A ClusterBroker like local-kafka, open to the test's namespace only; the test may edit it."""
    name = unique("kafka")
    kube.custom.create_cluster_custom_object(GROUP, VERSION, "clusterbrokers", local_kafka_copy(kube, name, namespace))
    yield name
    kube.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterbrokers", name)


def patch_broker(kube: Kube, name: str, spec: dict[str, Any]) -> None:
    kube.custom.patch_cluster_custom_object(GROUP, VERSION, "clusterbrokers", name, {"spec": spec})


def scram_users(stack: Any) -> set[str]:
    client = admin(stack.exports)  # held until the answer is in: a collected client cancels its calls
    described = client.describe_user_scram_credentials(request_timeout=TIMEOUT)
    return set(described.result(timeout=TIMEOUT))


def test_a_namespace_removed_from_the_allowlist_loses_its_credentials_at_once(
    stack: Any, kube: Kube, operator: Any, namespace: str, own_broker: str
) -> None:
    kube.create_pipeline(namespace, "withdrawn", spec(own_broker))
    kube.wait_condition(namespace, "withdrawn", "Ready", "True", timeout=120)
    producer = kube.secret(namespace, "withdrawn.app.credentials")
    assert producer is not None and kafka_send(producer, f"{namespace}.withdrawn") is None
    users = {kube.username(namespace, "withdrawn", p) for p in ("app", "listener")}

    patch_broker(kube, own_broker, {"allowedNamespaces": ["somebody-else"]})
    kube.wait_condition(namespace, "withdrawn", "Ready", "False", reason="NamespaceNotAllowed", timeout=60)
    eventually(lambda: not users & scram_users(stack), timeout=60, what="the SCRAM users to be deleted")
    refused = kafka_send(producer, f"{namespace}.withdrawn")
    assert refused is not None and refused.code() in (
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError._MSG_TIMED_OUT,
    ), refused
    assert kube.secret(namespace, "withdrawn.app.credentials") is None
    assert any(reason == "AccessWithdrawn" for _, reason, _ in kube.events(namespace, "withdrawn"))

    # Allowed again: new generations, the revoked users stay revoked.
    patch_broker(kube, own_broker, {"allowedNamespaces": [namespace]})
    kube.wait_condition(namespace, "withdrawn", "Ready", "True", timeout=120)
    again = kube.secret(namespace, "withdrawn.app.credentials")
    assert again is not None and again["username"] not in users
    assert kafka_send(again, f"{namespace}.withdrawn") is None
    assert not users & scram_users(stack)


def test_deleting_a_pipeline_while_its_broker_is_unreachable_waits_and_then_finishes(
    stack: Any, kube: Kube, operator: Any, namespace: str, own_broker: str
) -> None:
    kube.create_pipeline(namespace, "stuck", spec(own_broker))
    kube.wait_condition(namespace, "stuck", "Ready", "True", timeout=120)
    users = {kube.username(namespace, "stuck", p) for p in ("app", "listener")}
    body = kube.custom.get_cluster_custom_object(GROUP, VERSION, "clusterbrokers", own_broker)
    reachable = body["spec"]["kafka"]["bootstrapServers"]
    # The broker becomes unreachable (nothing listens there); the template changes too.
    patch_broker(
        kube, own_broker, {"kafka": {"bootstrapServers": "127.0.0.1:9"}, "topicTemplate": "x_{namespace}.{name}"}
    )
    kube.delete_pipeline(namespace, "stuck")
    condition = kube.wait_condition(namespace, "stuck", "Ready", "False", reason="CleanupPending", timeout=180)
    assert f"Topic {namespace}.stuck" in condition["message"]
    assert users <= scram_users(stack)  # nothing could be removed yet, and nothing was given up

    patch_broker(kube, own_broker, {"kafka": {"bootstrapServers": reachable}})
    eventually(lambda: kube.get_pipeline(namespace, "stuck") is None, timeout=180, what="the deletion to finish")
    assert not users & scram_users(stack)
    # The recorded topic was deleted, not one recomputed from the changed template.
    assert topic_partitions(admin(stack.exports), f"{namespace}.stuck") is None


def test_a_broker_deleted_for_good_leaves_one_pending_condition_not_an_event_per_retry(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    """Its credentials cannot be revoked any more: the pipeline says so in a condition, the
    listener's hand-off and the Airflow connection are taken back at once, and the retries (every
    resync, a few seconds here) add no Event until something changes."""
    name = unique("gone")
    broker = local_kafka_copy(kube, name, namespace)
    kube.custom.create_cluster_custom_object(GROUP, VERSION, "clusterbrokers", broker)
    handoff = (naming.DEFAULT_LISTENER_NAMESPACE, naming.listener_secret_name(namespace, "orphan"))
    try:
        kube.create_pipeline(namespace, "orphan", spec(name))
        kube.wait_condition(namespace, "orphan", "Ready", "True", timeout=120)
        assert kube.secret(*handoff) is not None
        kube.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterbrokers", name)
        condition = kube.wait_condition(
            namespace, "orphan", "TopicReady", "False", reason="AccessWithdrawalPending", timeout=120
        )
        assert name in condition["message"]
        assert kube.secret(*handoff) is None

        def pending_events() -> int:
            return sum(1 for _, reason, _ in kube.events(namespace, "orphan") if reason == "AccessWithdrawalPending")

        before = pending_events()
        time.sleep(20)  # five resyncs of the test operator
        assert pending_events() == before
        assert kube.condition(namespace, "orphan", "TopicReady")["reason"] == "AccessWithdrawalPending"
    finally:
        # The broker comes back so that the pipeline's deletion can remove what it still holds.
        with contextlib.suppress(ApiException):
            kube.custom.create_cluster_custom_object(GROUP, VERSION, "clusterbrokers", broker)
        kube.delete_pipeline(namespace, "orphan")
        eventually(lambda: kube.get_pipeline(namespace, "orphan") is None, timeout=180, what="the deletion")
        kube.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterbrokers", name)
