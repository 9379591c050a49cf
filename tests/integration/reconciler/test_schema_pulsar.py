"""Schemas of Pulsar pipelines in the broker's own registry: registration with the topic's policies,
producers held to the registered schema by the broker, compatible evolution, refusal of an
incompatible change, drift repair, the hand-off, deletion."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pulsar.schema import AvroSchema

from tests.integration.reconciler.schema_cases import V1, V2, V3, spec
from tests.integration.support import (
    Kube,
    eventually,
    handed_over_schemas,
    pulsar_client,
    pulsar_send,
    schema_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]
# Generous: the stack shares two cores with other work (a broker call can take many seconds).
TIMEOUT = 240


def text(schema: dict[str, Any]) -> str:
    """The text the Python client sends for an Avro schema given as a dict (so both match byte for byte)."""
    return json.dumps(schema, indent=True)


def registered(admin: httpx.Client, namespace: str, name: str) -> list[tuple[int, dict[str, Any]]]:
    answer = admin.get(f"/admin/v2/schemas/eventpipeline/{namespace}/{namespace}.{name}/schemas")
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    return [(int(item["version"]), json.loads(item["data"])) for item in answer.json()["getSchemaResponses"]]


def produce_with_schema(
    secret: dict[str, str], topic: str, schema: dict[str, Any], value: dict[str, Any]
) -> Exception | None:
    """Publish one Avro message with the producer Secret's token; the client's exception, or None."""
    with pulsar_client(secret) as client:
        try:
            client.create_producer(topic, schema=AvroSchema(None, schema_definition=schema)).send(value)
        except Exception as error:  # the caller asserts on whatever the client raised
            return error
    return None


def test_pulsar_schema_is_registered_enforced_evolved_refused_and_repaired(
    kube: Kube, operator: Any, namespace: str, pulsar_admin: httpx.Client
) -> None:
    topic = f"persistent://eventpipeline/{namespace}/{namespace}.orders"
    topic_path = f"/admin/v2/persistent/eventpipeline/{namespace}/{namespace}.orders"
    kube.create_pipeline(namespace, "orders", spec("local-pulsar", text(V1)))
    kube.wait_condition(namespace, "orders", "SchemaReady", "True", timeout=TIMEOUT)

    # Registered on the topic, with the topic's policies and the namespace's automatic updates off.
    assert registered(pulsar_admin, namespace, "orders") == [(0, V1)]
    assert pulsar_admin.get(f"{topic_path}/schemaCompatibilityStrategy").json() == "BACKWARD"
    assert pulsar_admin.get(f"{topic_path}/schemaValidationEnforced").json() is True
    assert pulsar_admin.get(f"/admin/v2/namespaces/eventpipeline/{namespace}/isAllowAutoUpdateSchema").json() is False
    status = schema_status(kube, namespace, "orders")
    assert status["version"] == 0 and status["subject"] == topic and "id" not in status
    assert isinstance(status["history"][0]["dagVersion"], int), status
    eventually(
        lambda: [(e["version"], e["id"]) for e in handed_over_schemas(kube, namespace, "orders")] == [(0, None)],
        timeout=TIMEOUT,
        what="schemas.json in the listener's hand-off",
    )

    # The broker holds producers to the registered schema: right one accepted, others refused.
    secret = kube.secret(namespace, "orders.checkout.credentials") or {}
    assert produce_with_schema(secret, topic, V1, {"id": 1}) is None
    assert produce_with_schema(secret, topic, V3, {"id": "x"}) is not None
    assert pulsar_send(secret, topic, b"raw bytes") is not None

    # A compatible change becomes the next version; both are handed over.
    kube.patch_pipeline(namespace, "orders", {"spec": {"schema": {"definition": text(V2)}}})
    eventually(lambda: schema_status(kube, namespace, "orders").get("version") == 1, timeout=TIMEOUT, what="version 1")
    assert registered(pulsar_admin, namespace, "orders") == [(0, V1), (1, V2)]
    assert produce_with_schema(secret, topic, V2, {"id": 2, "note": "n"}) is None
    eventually(
        lambda: [e["version"] for e in handed_over_schemas(kube, namespace, "orders")] == [0, 1],
        timeout=TIMEOUT,
        what="both versions in the hand-off",
    )

    # Drift: a schema uploaded by hand makes the operator clear the topic's schema history (Pulsar
    # deletes no single version) and register the pipeline's schema again.
    by_hand = {**V2, "fields": [*V2["fields"], {"name": "extra", "type": "int", "default": 0}]}
    schema_path = f"/admin/v2/schemas/eventpipeline/{namespace}/{namespace}.orders"
    uploaded = pulsar_admin.post(
        f"{schema_path}/schema", json={"type": "AVRO", "schema": text(by_hand), "properties": {}}
    )
    assert uploaded.is_success, uploaded.text
    eventually(
        lambda: [schema for _, schema in registered(pulsar_admin, namespace, "orders")] == [V2],
        timeout=TIMEOUT,
        what="the hand-made version gone and the pipeline's schema registered again",
    )
    eventually(  # the Event follows the repair once the reconciliation finished
        lambda: any(event[1] == "SchemaDriftRepaired" for event in kube.events(namespace, "orders")),
        timeout=TIMEOUT,
        what="a SchemaDriftRepaired Event",
    )

    # Drift: the topic's schema deleted by hand is registered again.
    assert pulsar_admin.delete(f"/admin/v2/schemas/eventpipeline/{namespace}/{namespace}.orders/schema").is_success
    eventually(
        lambda: [schema for _, schema in registered(pulsar_admin, namespace, "orders")] == [V2],
        timeout=TIMEOUT,
        what="the schema registered again",
    )
    kube.wait_condition(namespace, "orders", "SchemaReady", "True", timeout=TIMEOUT)
    held = registered(pulsar_admin, namespace, "orders")

    # An incompatible change is refused: the topic keeps its schema, Ready says why, an Event too.
    kube.patch_pipeline(namespace, "orders", {"spec": {"schema": {"definition": text(V3)}}})
    condition = kube.wait_condition(namespace, "orders", "Ready", "False", reason="SchemaIncompatible", timeout=TIMEOUT)
    assert "not BACKWARD-compatible" in condition["message"], condition
    assert registered(pulsar_admin, namespace, "orders") == held
    eventually(
        lambda: ("Warning", "SchemaIncompatible") in {event[:2] for event in kube.events(namespace, "orders")},
        timeout=TIMEOUT,
        what="a SchemaIncompatible Warning Event",
    )
    assert produce_with_schema(secret, topic, V3, {"id": "x"}) is not None

    kube.delete_pipeline(namespace, "orders")
    eventually(lambda: kube.get_pipeline(namespace, "orders") is None, timeout=TIMEOUT, what="the pipeline gone")
    assert registered(pulsar_admin, namespace, "orders") == []
