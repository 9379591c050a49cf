"""Schemas of Kafka pipelines in the stack's Apicurio Registry (Confluent API): registration,
compatible evolution, refusal of an incompatible change, drift repair, the hand-off, deletion."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.integration.reconciler.schema_cases import V1, V2, V3, spec
from tests.integration.reconciler.test_withdrawal import local_kafka_copy
from tests.integration.support import GROUP, VERSION, Kube, eventually, handed_over_schemas, schema_status, unique

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]
# Generous: the stack shares two cores with other work (a broker call can take many seconds).
TIMEOUT = 240

# Compatible with V2, registered by hand (drift).
BY_HAND = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "note", "type": "string", "default": ""},
        {"name": "extra", "type": "int", "default": 0},
    ],
}


@pytest.fixture
def registry(stack: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.exports["SCHEMA_REGISTRY_URL"], timeout=15) as client:
        yield client


def text(schema: dict[str, Any]) -> str:
    return json.dumps(schema)


def versions(registry: httpx.Client, subject: str) -> list[int]:
    response = registry.get(f"/subjects/{subject}/versions")
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return list(response.json())


def latest_fields(registry: httpx.Client, subject: str) -> list[str]:
    body = registry.get(f"/subjects/{subject}/versions/latest").json()
    return [field["name"] for field in json.loads(body["schema"])["fields"]]


def wait_version(kube: Kube, namespace: str, name: str, version: int) -> dict[str, Any]:
    def reached() -> dict[str, Any]:
        status = schema_status(kube, namespace, name)
        assert status.get("version") == version, status
        return status

    return eventually(reached, timeout=TIMEOUT, what=f"status.schema.version {version}")


def test_kafka_schema_is_registered_evolved_refused_and_repaired(
    stack: Any, kube: Kube, operator: Any, namespace: str, registry: httpx.Client
) -> None:
    subject = f"{namespace}.orders-value"
    kube.create_pipeline(namespace, "orders", spec("local-kafka", text(V1)))
    kube.wait_condition(namespace, "orders", "SchemaReady", "True", timeout=TIMEOUT)

    # Registered: the subject, its compatibility, status, the producers' Secret, the hand-off.
    assert versions(registry, subject) == [1]
    assert registry.get(f"/config/{subject}").json()["compatibilityLevel"] == "BACKWARD"
    status = wait_version(kube, namespace, "orders", 1)
    registered = registry.get(f"/subjects/{subject}/versions/1").json()
    assert status["id"] == registered["id"] and status["subject"] == subject and status["type"] == "AVRO"
    assert isinstance(status["history"][0]["dagVersion"], int), status
    producer = kube.secret(namespace, "orders.checkout.credentials") or {}
    assert producer["schema.registry.url"] == stack.exports["SCHEMA_REGISTRY_URL"]
    eventually(
        lambda: [entry["id"] for entry in handed_over_schemas(kube, namespace, "orders")] == [registered["id"]],
        timeout=TIMEOUT,
        what="schemas.json in the listener's hand-off",
    )

    # A compatible change becomes version 2; both versions are handed over.
    kube.patch_pipeline(namespace, "orders", {"spec": {"schema": {"definition": text(V2)}}})
    status = wait_version(kube, namespace, "orders", 2)
    assert versions(registry, subject) == [1, 2]
    assert [entry["version"] for entry in status["history"]] == [1, 2]
    eventually(
        lambda: [entry["version"] for entry in handed_over_schemas(kube, namespace, "orders")] == [1, 2],
        timeout=TIMEOUT,
        what="both versions in the hand-off",
    )

    # Drift: a version registered by hand is removed; a subject deleted by hand is registered again.
    by_hand = registry.post(f"/subjects/{subject}/versions", json={"schema": text(BY_HAND), "schemaType": "AVRO"})
    assert by_hand.status_code == 200, by_hand.text
    eventually(lambda: versions(registry, subject) == [1, 2], timeout=TIMEOUT, what="the hand-made version removed")
    assert latest_fields(registry, subject) == ["id", "note"]
    for params in ({}, {"permanent": "true"}):
        registry.delete(f"/subjects/{subject}", params=params)
    eventually(lambda: len(versions(registry, subject)) == 1, timeout=TIMEOUT, what="the subject registered again")
    assert latest_fields(registry, subject) == ["id", "note"]
    kube.wait_condition(namespace, "orders", "SchemaReady", "True", timeout=TIMEOUT)
    eventually(
        lambda: any(event[1] == "SchemaDriftRepaired" for event in kube.events(namespace, "orders")),
        timeout=TIMEOUT,
        what="a SchemaDriftRepaired Event",
    )
    held = versions(registry, subject)

    # An incompatible change is refused: the registry keeps what it had, Ready says why, an Event too.
    kube.patch_pipeline(namespace, "orders", {"spec": {"schema": {"definition": text(V3)}}})
    condition = kube.wait_condition(namespace, "orders", "Ready", "False", reason="SchemaIncompatible", timeout=TIMEOUT)
    assert "not BACKWARD-compatible" in condition["message"], condition
    assert "Incompatible" in condition["message"], condition
    assert versions(registry, subject) == held
    assert latest_fields(registry, subject) == ["id", "note"]
    eventually(
        lambda: ("Warning", "SchemaIncompatible") in {event[:2] for event in kube.events(namespace, "orders")},
        timeout=TIMEOUT,
        what="a SchemaIncompatible Warning Event",
    )

    # Deleting the pipeline (deletionPolicy Delete) removes the subject.
    kube.delete_pipeline(namespace, "orders")
    eventually(lambda: kube.get_pipeline(namespace, "orders") is None, timeout=TIMEOUT, what="the pipeline gone")
    assert versions(registry, subject) == []


def test_a_subject_registered_outside_the_operator_is_a_conflict(
    kube: Kube, operator: Any, namespace: str, registry: httpx.Client
) -> None:
    subject = f"{namespace}.taken-value"
    answer = registry.post(f"/subjects/{subject}/versions", json={"schema": text(V1), "schemaType": "AVRO"})
    assert answer.status_code == 200, answer.text
    kube.create_pipeline(namespace, "taken", spec("local-kafka", text(V2)))
    condition = kube.wait_condition(
        namespace, "taken", "SchemaReady", "False", reason="SchemaConflict", timeout=TIMEOUT
    )
    assert subject in condition["message"]
    assert versions(registry, subject) == [1]
    assert latest_fields(registry, subject) == ["id"]


def test_producers_hold_the_brokers_client_registry_credential_never_the_operators(
    stack: Any, kube: Kube, operator: Any, namespace: str, registry: httpx.Client
) -> None:
    # The stack's registry takes any basic auth: what is shown is which credential goes where.
    secrets = {"registry-operator": ("operator", "operator-only-secret"), "registry-reader": ("reader", "read-only")}
    for name, (username, password) in secrets.items():
        kube.core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=name), string_data={"username": username, "password": password}
            ),
        )
    broker = unique("kafka-registry")
    body = local_kafka_copy(kube, broker, namespace)
    body["spec"]["kafka"]["schemaRegistry"] = {
        "url": stack.exports["SCHEMA_REGISTRY_URL"],
        "credentialsSecretRef": {"name": "registry-operator", "namespace": namespace},
        "clientCredentialsSecretRef": {"name": "registry-reader", "namespace": namespace},
    }
    kube.custom.create_cluster_custom_object(GROUP, VERSION, "clusterbrokers", body)
    try:
        kube.create_pipeline(namespace, "orders", spec(broker, text(V1)))
        kube.wait_condition(namespace, "orders", "SchemaReady", "True", timeout=TIMEOUT)
        assert versions(registry, f"{namespace}.orders-value") == [1]
        producer = kube.secret(namespace, "orders.checkout.credentials") or {}
        assert producer["basic.auth.user.info"] == "reader:read-only"
        assert (producer["auto.register.schemas"], producer["use.latest.version"]) == ("false", "true")
        assert not any("operator-only-secret" in value for value in producer.values())
        kube.delete_pipeline(namespace, "orders")
        eventually(lambda: kube.get_pipeline(namespace, "orders") is None, timeout=TIMEOUT, what="the pipeline gone")
    finally:
        kube.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterbrokers", broker)
