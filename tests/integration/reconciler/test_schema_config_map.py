"""A JSON Schema given through `spec.schema.configMapRef`, on the real stack (Kafka with Apicurio):
read from the pipeline's own namespace only, registered as JSON, a changed ConfigMap picked up
without touching the pipeline, a ConfigMap of another namespace never read, and a ConfigMap's schema
held to the same length bound as an inline one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from eventpipeline.api.pipeline import SCHEMA_DEFINITION_MAX_LENGTH
from tests.integration.conftest import OPEN_DAG
from tests.integration.reconciler.test_schema_kafka import TIMEOUT, schema_status, versions, wait_version
from tests.integration.support import Kube, eventually, fresh_namespace

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]
KEY = "order.schema.json"

V1 = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {"id": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["id", "note"],
}
# BACKWARD-compatible: the new reader no longer requires `note`, so it reads every old message.
V2 = {**V1, "required": ["id"]}


@pytest.fixture
def registry(stack: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.exports["SCHEMA_REGISTRY_URL"], timeout=15) as registry_client:
        yield registry_client


@pytest.fixture
def other_namespace(kube: Kube) -> Iterator[str]:
    with fresh_namespace(kube) as name:
        yield name


def config_map(name: str, schema: dict[str, Any]) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={KEY: json.dumps(schema)})


def spec(config_map_ref: dict[str, str]) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "checkout"}],
        "schema": {"type": "JSON", "configMapRef": config_map_ref},
        "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
    }


@pytest.mark.usefixtures("operator")
def test_a_json_schema_from_a_config_map_of_the_pipelines_namespace_is_registered_and_follows_its_changes(
    stack: Any, kube: Kube, namespace: str, registry: httpx.Client
) -> None:
    kube.core.create_namespaced_config_map(namespace, config_map("order-schema", V1))
    kube.create_pipeline(namespace, "orders", spec({"name": "order-schema", "key": KEY}))
    kube.wait_condition(namespace, "orders", "SchemaReady", "True", timeout=TIMEOUT)
    subject = f"{namespace}.orders-value"
    status = wait_version(kube, namespace, "orders", 1)
    registered = registry.get(f"/subjects/{subject}/versions/1").json()
    assert registered.get("schemaType") == "JSON", registered
    assert json.loads(registered["schema"]) == V1
    assert status["type"] == "JSON" and status["id"] == registered["id"] and status["subject"] == subject

    # The ConfigMap changes, the pipeline does not: no watch on ConfigMaps, so the next drift check
    # (every EVENTPIPELINE_RESYNC_SECONDS; 4 s in the tests, 300 s by default) reads it again.
    generation = (kube.get_pipeline(namespace, "orders") or {})["metadata"]["generation"]
    changed_at = time.monotonic()
    kube.core.replace_namespaced_config_map("order-schema", namespace, config_map("order-schema", V2))
    status = wait_version(kube, namespace, "orders", 2)
    print(f"the changed ConfigMap was registered as version 2 after {time.monotonic() - changed_at:.1f} s")
    assert versions(registry, subject) == [1, 2]
    assert json.loads(registry.get(f"/subjects/{subject}/versions/2").json()["schema"]) == V2
    assert [entry["version"] for entry in status["history"]] == [1, 2]
    assert (kube.get_pipeline(namespace, "orders") or {})["metadata"]["generation"] == generation

    # A key removed from the ConfigMap: a condition, and the registered versions stay.
    kube.core.patch_namespaced_config_map("order-schema", namespace, {"data": {KEY: None, "other": "{}"}})
    condition = kube.wait_condition(
        namespace, "orders", "SchemaReady", "False", reason="SchemaDefinitionMissing", timeout=TIMEOUT
    )
    assert f"{namespace}/order-schema" in condition["message"] and KEY in condition["message"]
    assert versions(registry, subject) == [1, 2]


@pytest.mark.usefixtures("operator")
def test_a_config_map_of_another_namespace_is_never_read(
    stack: Any, kube: Kube, namespace: str, other_namespace: str, registry: httpx.Client
) -> None:
    """The reference has no namespace field: one written anyway is pruned by the API server, and the
    operator looks in the pipeline's namespace, finds nothing, and registers nothing."""
    kube.core.create_namespaced_config_map(other_namespace, config_map("elsewhere", V1))
    ref = {"name": "elsewhere", "key": KEY, "namespace": other_namespace}
    created = kube.create_pipeline(namespace, "stray", spec(ref))
    assert created["spec"]["schema"]["configMapRef"] == {"name": "elsewhere", "key": KEY}
    condition = kube.wait_condition(
        namespace, "stray", "SchemaReady", "False", reason="SchemaDefinitionMissing", timeout=TIMEOUT
    )
    assert f"{namespace}/elsewhere" in condition["message"] and other_namespace not in condition["message"]
    assert "schema.configMapRef" in condition["message"]
    # The other parts go on (a schema refusal stops nothing else); nothing reached the registry.
    kube.wait_condition(namespace, "stray", "TopicReady", "True", timeout=TIMEOUT)
    assert versions(registry, f"{namespace}.stray-value") == []
    assert schema_status(kube, namespace, "stray") == {}
    eventually(
        lambda: (kube.condition(namespace, "stray", "Ready") or {}).get("status") == "False",
        timeout=TIMEOUT,
        what="Ready=False on the pipeline without its schema",
    )


@pytest.mark.usefixtures("operator")
def test_a_config_map_schema_longer_than_an_inline_one_may_be_is_refused(
    kube: Kube, namespace: str, registry: httpx.Client
) -> None:
    """A ConfigMap holds up to 1 MiB; the schema in it is held to the inline bound like `definition` is
    (Apicurio took a 400 KiB one before)."""
    padded = {**V1, "description": "x" * SCHEMA_DEFINITION_MAX_LENGTH}
    kube.core.create_namespaced_config_map(namespace, config_map("big-schema", padded))
    kube.create_pipeline(namespace, "big", spec({"name": "big-schema", "key": KEY}))
    condition = kube.wait_condition(
        namespace, "big", "SchemaReady", "False", reason="SchemaDefinitionTooLong", timeout=TIMEOUT
    )
    assert (
        f"{namespace}/big-schema" in condition["message"] and str(SCHEMA_DEFINITION_MAX_LENGTH) in condition["message"]
    )
    assert versions(registry, f"{namespace}.big-value") == []
