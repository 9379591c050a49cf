"""EventPipelines on the real Kafka broker: topic, exact ACLs, SCRAM credentials in Secrets,
the Airflow connection, drift repair, partition growth and clean deletion."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from eventpipeline_devenv.runtime import Layout
from tests.integration.conftest import OPEN_DAG
from tests.integration.support import GROUP, VERSION, Kube, eventually, kafka_send, unique

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]
TIMEOUT = 15


def admin(exports: Mapping[str, str]) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": exports["KAFKA_BOOTSTRAP_SERVERS"],
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": exports["KAFKA_ADMIN_USER"],
            "sasl.password": exports["KAFKA_ADMIN_PASSWORD"],
        }
    )


def acls_on_topic(client: AdminClient, topic: str) -> set[tuple[str, str, str]]:
    acl_filter = AclBindingFilter(
        ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, None, None, AclOperation.ANY, AclPermissionType.ANY
    )
    bindings = client.describe_acls(acl_filter, request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    return {(b.principal, b.operation.name, b.permission_type.name) for b in bindings}


def topic_partitions(client: AdminClient, topic: str) -> int | None:
    metadata = client.list_topics(topic=topic, timeout=TIMEOUT).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return None
    return len(metadata.partitions)


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 2, "deletionPolicy": "Delete", "config": {"retention.ms": "3600000"}},
        "producers": [{"name": "checkout"}],
        "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
        **extra,
    }


def airflow_connection(exports: Mapping[str, str], connection_id: str) -> httpx.Response:
    token = httpx.post(
        f"{exports['AIRFLOW_API_URL']}/auth/token",
        json={"username": exports["AIRFLOW_USERNAME"], "password": exports["AIRFLOW_PASSWORD"]},
        timeout=TIMEOUT,
    ).json()["access_token"]
    return httpx.get(
        f"{exports['AIRFLOW_API_URL']}/api/v2/connections/{connection_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def test_pipeline_becomes_ready_with_topic_exact_acls_secret_and_connection(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    exports = stack.exports
    kafka = admin(exports)
    kube.create_pipeline(namespace, "orders", spec())
    kube.wait_condition(namespace, "orders", "Ready", "True", timeout=120)
    topic = f"{namespace}.orders"
    status = kube.get_pipeline(namespace, "orders")["status"]  # type: ignore[index]
    assert status["topic"] == topic and status["brokerType"] == "Kafka"

    # The broker's own view: topic, config, and exactly the ACLs least privilege allows.
    assert topic_partitions(kafka, topic) == 2
    producer_user = kube.username(namespace, "orders", "checkout")
    listener_user = kube.username(namespace, "orders", "listener")
    assert acls_on_topic(kafka, topic) == {
        (f"User:{producer_user}", "WRITE", "ALLOW"),
        (f"User:{producer_user}", "DESCRIBE", "ALLOW"),
        (f"User:{listener_user}", "READ", "ALLOW"),
        (f"User:{listener_user}", "DESCRIBE", "ALLOW"),
    }
    assert acls_on_topic(kafka, f"{topic}.dlq") == {
        (f"User:{listener_user}", "WRITE", "ALLOW"),
        (f"User:{listener_user}", "DESCRIBE", "ALLOW"),
    }

    # The producer's Secret works on its topic, and only there.
    secret = kube.secret(namespace, "orders.checkout.credentials")
    assert secret is not None and secret["username"] == producer_user
    assert f'username="{producer_user}"' in secret["sasl.jaas.config"]
    assert kafka_send(secret, topic) is None
    refused = kafka_send(secret, f"{topic}.dlq")
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # The password never shows in status or events.
    text = str(kube.get_pipeline(namespace, "orders")) + str(kube.events(namespace, "orders"))
    assert secret["password"] not in text

    # The Airflow connection carries the listener's settings.
    connection_id = kube.get_pipeline(namespace, "orders")["status"]["airflowConnection"]  # type: ignore[index]
    assert connection_id == f"{namespace}.orders"
    connection = airflow_connection(exports, connection_id)
    assert connection.status_code == 200, connection.text
    body = connection.json()
    assert body["conn_type"] == "kafka"
    assert f'"sasl.username": "{listener_user}"' in body["extra"]
    # local-kafka is SASL_SSL with caSecretRef: the connection verifies the brokers with the CA.
    extra = json.loads(body["extra"])
    assert extra["bootstrap.servers"] == exports["KAFKA_TLS_BOOTSTRAP_SERVERS"]
    assert extra["security.protocol"] == "SASL_SSL"
    assert extra["ssl.ca.pem"] == Path(exports["KAFKA_CA_FILE"]).read_text()

    # Each ownership claim was created holding what the operator records, never updated since
    # (generation 1), and the creation is one Event that lists its steps.
    uid = kube.get_pipeline(namespace, "orders")["metadata"]["uid"]  # type: ignore[index]
    selector = f"eventpipeline.dev/pipeline-uid={uid}"
    claims = kube.custom.list_cluster_custom_object(GROUP, VERSION, "ownershipclaims", label_selector=selector)
    assert sorted((c["spec"]["kind"], c["metadata"]["generation"]) for c in claims["items"]) == [
        ("AirflowConnection", 1),
        ("DeadLetterTopic", 1),
        ("Principal", 1),
        ("Principal", 1),
        ("Topic", 1),
    ]
    provisioned = eventually(
        lambda: [message for _, reason, message in kube.events(namespace, "orders") if reason == "Provisioned"],
        timeout=60,
        what="the Provisioned Event",
    )
    assert f"created topic {topic}" in provisioned[0] and f"{producer_user})" in provisioned[0]
    assert "TopicCreated" not in {reason for _, reason, _ in kube.events(namespace, "orders")}


def test_producer_is_refused_on_another_pipelines_topic(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    kube.create_pipeline(namespace, "first", spec())
    kube.create_pipeline(namespace, "second", spec())
    kube.wait_condition(namespace, "first", "Ready", "True")
    kube.wait_condition(namespace, "second", "Ready", "True")
    first = kube.secret(namespace, "first.checkout.credentials")
    assert first is not None
    error = kafka_send(first, f"{namespace}.second")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_acl_deleted_by_hand_is_repaired_and_reported(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    kafka = admin(stack.exports)
    kube.create_pipeline(namespace, "drift", spec())
    kube.wait_condition(namespace, "drift", "Ready", "True")
    topic = f"{namespace}.drift"
    user = f"User:{kube.username(namespace, 'drift', 'checkout')}"
    binding = AclBindingFilter(
        ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, user, "*", AclOperation.WRITE, AclPermissionType.ALLOW
    )
    for future in kafka.delete_acls([binding]).values():
        future.result(timeout=TIMEOUT)
    assert (user, "WRITE", "ALLOW") not in acls_on_topic(kafka, topic)
    eventually(lambda: (user, "WRITE", "ALLOW") in acls_on_topic(kafka, topic), timeout=60, what="the ACL to return")
    eventually(
        lambda: any(reason == "AccessRepaired" for _, reason, _ in kube.events(namespace, "drift")),
        timeout=30,
        what="an AccessRepaired event",
    )


def test_partitions_grow_on_the_broker(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    kafka = admin(stack.exports)
    kube.create_pipeline(namespace, "grow", spec())
    kube.wait_condition(namespace, "grow", "Ready", "True")
    kube.patch_pipeline(namespace, "grow", {"spec": {"topic": {"partitions": 5}}})
    eventually(lambda: topic_partitions(kafka, f"{namespace}.grow") == 5, timeout=60, what="5 partitions")


def test_deleting_the_pipeline_removes_topic_credentials_acls_and_connection(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    exports = stack.exports
    kafka = admin(exports)
    kube.create_pipeline(namespace, "gone", spec())
    kube.wait_condition(namespace, "gone", "Ready", "True")
    topic = f"{namespace}.gone"
    users_before = {kube.username(namespace, "gone", principal) for principal in ("checkout", "listener")}
    kube.delete_pipeline(namespace, "gone")
    eventually(lambda: kube.get_pipeline(namespace, "gone") is None, timeout=60, what="the pipeline to be deleted")
    eventually(lambda: topic_partitions(kafka, topic) is None, timeout=30, what="the topic to be deleted")
    assert acls_on_topic(kafka, topic) == set()
    users = kafka.describe_user_scram_credentials(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert users_before and not users_before & set(users)
    assert airflow_connection(exports, f"{namespace}.gone").status_code == 404
    # Owner references: the controller-manager's garbage collector removes the Secrets.
    eventually(lambda: kube.secret(namespace, "gone.checkout.credentials") is None, timeout=60, what="GC of the Secret")


def test_retained_topic_survives_deletion(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    kafka = admin(stack.exports)
    retained = spec()
    retained["topic"] = {"partitions": 1}
    kube.create_pipeline(namespace, "kept", retained)
    kube.wait_condition(namespace, "kept", "Ready", "True")
    kube.delete_pipeline(namespace, "kept")
    eventually(lambda: kube.get_pipeline(namespace, "kept") is None, timeout=60, what="the pipeline to be deleted")
    assert topic_partitions(kafka, f"{namespace}.kept") == 1
    assert acls_on_topic(kafka, f"{namespace}.kept") == set()


def test_broker_not_open_to_the_namespace_gives_a_clear_reason(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    broker = unique("closed")
    body = kube.custom.get_cluster_custom_object("eventpipeline.dev", "v1alpha1", "clusterbrokers", "local-kafka")
    closed = {
        "apiVersion": "eventpipeline.dev/v1alpha1",
        "kind": "ClusterBroker",
        "metadata": {"name": broker},
        "spec": {**body["spec"], "allowedNamespaces": ["only-this-one"]},
    }
    kube.custom.create_cluster_custom_object("eventpipeline.dev", "v1alpha1", "clusterbrokers", closed)
    try:
        kube.create_pipeline(namespace, "denied", {**spec(), "brokerRef": {"kind": "ClusterBroker", "name": broker}})
        condition = kube.wait_condition(namespace, "denied", "Ready", "False", reason="NamespaceNotAllowed")
        assert "allowedNamespaces" in condition["message"]
    finally:
        kube.custom.delete_cluster_custom_object("eventpipeline.dev", "v1alpha1", "clusterbrokers", broker)


def test_topic_owned_by_another_pipeline_is_refused(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    kube.create_pipeline(namespace, "owner", {**spec(), "topic": {"name": f"{namespace}.shared"}})
    kube.wait_condition(namespace, "owner", "Ready", "True")
    kube.create_pipeline(namespace, "intruder", {**spec(), "topic": {"name": f"{namespace}.shared"}})
    condition = kube.wait_condition(namespace, "intruder", "Ready", "False", reason="TopicConflict")
    assert f"{namespace}/owner" in condition["message"]


def test_topic_outside_the_namespace_template_is_refused(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    kube.create_pipeline(namespace, "elsewhere", {**spec(), "topic": {"name": "payments.ledger"}})
    condition = kube.wait_condition(namespace, "elsewhere", "Ready", "False", reason="TopicNameNotAllowed")
    assert "does not match the broker's template" in condition["message"]


def test_operator_counts_its_backend_calls(stack: Any, operator: Any) -> None:
    metrics = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=TIMEOUT).text
    assert 'eventpipeline_backend_calls_total{operation="describe_topic",outcome="ok",system="kafka"}' in metrics


SEVERITIES = {"debug", "info", "warn", "error", "fatal"}


def test_operator_log_is_structured(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    """Every log record is one JSON object with a time, a severity and a message; records about a
    pipeline name it, so a log pipeline can filter by object."""
    kube.create_pipeline(namespace, "logged", spec())
    kube.wait_condition(namespace, "logged", "Ready", "True")
    log_path = Layout.from_environment().log_path("operator-under-test")

    def records() -> list[dict[str, Any]]:
        found = []
        for line in log_path.read_text().splitlines():
            # Python logging goes through kopf's JSON formatter; only client libraries that write to
            # stderr themselves (librdkafka, the Pulsar C++ client) leave plain lines, never "{".
            if line.startswith("{"):
                record = json.loads(line)
                assert isinstance(record, dict), line
                found.append(record)
        return found

    for record in records():
        assert isinstance(record.get("message"), str), record
        assert record.get("severity") in SEVERITIES, record
        assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None, record
    about_pipeline = eventually(
        lambda: [
            record
            for record in records()
            if (record.get("object") or {}).get("namespace") == namespace and record["object"].get("name") == "logged"
        ],
        timeout=30,
        what=f"log records about {namespace}/logged",
    )
    assert {record["object"]["kind"] for record in about_pipeline} == {"EventPipeline"}


def test_secret_edited_by_hand_is_replaced_with_a_working_credential(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    kube.create_pipeline(namespace, "edited", spec())
    kube.wait_condition(namespace, "edited", "Ready", "True")
    kube.core.patch_namespaced_secret(
        "edited.checkout.credentials", namespace, {"stringData": {"password": "typed-by-hand"}}
    )
    repaired = eventually(
        lambda: (s := kube.secret(namespace, "edited.checkout.credentials")) and s["password"] != "typed-by-hand" and s,
        timeout=60,
        what="the Secret to be replaced",
    )
    assert kafka_send(repaired, f"{namespace}.edited") is None
    assert any(reason == "CredentialRepaired" for _, reason, _ in kube.events(namespace, "edited"))


def test_airflow_connection_deleted_by_hand_is_restored(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    exports = stack.exports
    kube.create_pipeline(namespace, "conn", spec())
    kube.wait_condition(namespace, "conn", "Ready", "True")
    connection_id = kube.get_pipeline(namespace, "conn")["status"]["airflowConnection"]  # type: ignore[index]
    token = httpx.post(
        f"{exports['AIRFLOW_API_URL']}/auth/token",
        json={"username": exports["AIRFLOW_USERNAME"], "password": exports["AIRFLOW_PASSWORD"]},
        timeout=TIMEOUT,
    ).json()["access_token"]
    deleted = httpx.delete(
        f"{exports['AIRFLOW_API_URL']}/api/v2/connections/{connection_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert deleted.status_code == 204, deleted.text
    eventually(
        lambda: airflow_connection(exports, connection_id).status_code == 200,
        timeout=60,
        what="the connection to come back",
    )
