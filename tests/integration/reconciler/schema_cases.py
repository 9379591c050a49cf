"""What the Kafka and the Pulsar schema tests share: the schema's versions and the pipeline's spec."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import OPEN_DAG

V1 = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "int"}]}
# Compatible (BACKWARD): a field with a default.
V2 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "int"}, {"name": "note", "type": "string", "default": ""}],
}
# Incompatible: the id changes type.
V3 = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}


def spec(broker: str, definition: str) -> dict[str, Any]:
    """A pipeline on `broker` whose topic holds Avro messages of `definition`."""
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": broker},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "checkout"}],
        "schema": {"type": "AVRO", "definition": definition},
        "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
    }
