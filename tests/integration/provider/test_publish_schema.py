"""PublishToTopicOperator on pipelines with a schema, on the real stack (Kafka and Pulsar).

Pulsar: the operator uploads the pipeline's Avro schema to Pulsar's registry, enforces it on the
topic and forbids automatic updates: the broker takes messages only from a producer that declares
exactly that schema. The provider asks the broker for the topic's schema, encodes the task's value
with it and declares it; the message arrives with the schema version.

Kafka: the operator registers the schema in the broker's registry (Apicurio) and writes the
registry's URL into the Airflow producer's connection, as into producer Secrets; the provider
encodes in the Confluent wire format with the registered id.

Either way the listener's own decoder reads the dict back, and a value that does not fit the schema
fails the task before anything reaches the topic. A schema added to a running Kafka pipeline reaches
its producer's existing connection at once, with the same credential generation.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from eventpipeline.listener.decoding import Decoder
from eventpipeline.listener.pulsar_source import schema_version
from eventpipeline.planning.delivery import Message
from eventpipeline.planning.schema_versions import SchemaVersion, split_wire_format
from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import (
    install_dag,
    read_kafka,
    read_pulsar,
    ready_pipeline,
    start_run,
    task_log,
    wait_run,
)
from tests.integration.provider.test_publish import PUBLISH_DAG
from tests.integration.support import Kube, eventually, schema_status

pytestmark = pytest.mark.integration

# Compact JSON: not the text pulsar-client's own AvroSchema would declare (it re-serializes with
# indentation), so the broker accepts the producer only if it declares the definition as stored.
RESULT_SCHEMA = json.dumps({
    "type": "record", "name": "Result",
    "fields": [{"name": "order", "type": "int"}, {"name": "nonce", "type": "string"}],
}, separators=(",", ":"))  # fmt: skip


def _publish_bad_then_good(
    kube: Kube, airflow: AirflowApi, namespace: str, broker: str, result: dict[str, Any]
) -> tuple[dict[str, Any], Any]:
    """A pipeline with RESULT_SCHEMA and an Airflow producer; a run with a value that does not fit
    (it fails, with the reason in its log), then one with `result`; (status, the topic's first message)."""
    kube.create_pipeline(namespace, "results", {
        "brokerRef": {"kind": "ClusterBroker", "name": broker},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "dags", "secret": False, "airflowConnection": {"instanceRef": {"name": "local"}}}],
        "consumers": [{"name": "reader"}],
        "schema": {"type": "AVRO", "definition": RESULT_SCHEMA, "compatibility": "BACKWARD"},
    })  # fmt: skip
    kube.wait_condition(namespace, "results", "Ready", "True", timeout=180)

    def registered() -> dict[str, Any] | None:
        status = (kube.get_pipeline(namespace, "results") or {}).get("status") or {}
        return status if (status.get("schema") or {}).get("version") is not None else None

    status = eventually(registered, timeout=120, interval=1, what="the schema registered")
    topic = str(status["topic"])
    dag_id = f"publish_avro_{namespace.replace('-', '_')}"
    connection = f"{namespace}.results__dags"
    install_dag(airflow, dag_id, PUBLISH_DAG.format(dag_id=dag_id, connection=connection, topic=topic))

    # A value that does not fit: the task fails with the reason, and nothing reaches the topic
    # (the good message below is the first the topic holds).
    bad = start_run(airflow, dag_id, {"result": {"order": "seven", "nonce": "x"}, "key": "bad"})
    assert wait_run(airflow, dag_id, bad) == "failed"
    reason = "does not fit the pipeline's Avro schema"
    eventually(lambda: reason in task_log(airflow, dag_id, bad, "publish"), timeout=60, what=f"{reason!r} in the log")

    good = start_run(airflow, dag_id, {"result": result, "key": "order-7"})
    assert wait_run(airflow, dag_id, good) == "success"
    read = read_kafka if broker == "local-kafka" else read_pulsar
    (first,) = read(kube, namespace, "results", topic, count=1)
    return status, first


def test_a_dag_publishes_a_dict_to_a_pulsar_avro_pipeline_and_a_bad_value_fails_the_task(
    kube: Kube, operator: OperatorProcess, airflow: AirflowApi, namespace: str
) -> None:
    result = {"order": 7, "nonce": uuid.uuid4().hex}
    status, raw = _publish_bad_then_good(kube, airflow, namespace, "local-pulsar", result)
    version = int(status["schema"]["version"])
    assert raw.partition_key() == "order-7"
    assert schema_version(raw) == version  # written with the registered version
    # The listener's decoder, with the version the controller hands over, reads the dict back.
    decoder = Decoder([SchemaVersion(version=version, type="AVRO", definition=RESULT_SCHEMA)], "Pulsar")
    message = Message(status["topic"], 0, "0:0:0:-1", "run", b"order-7", raw.data(), (), None, schema_version=version)
    decoded = decoder.decode(message).decoded
    assert decoded is not None and decoded.value == result


def test_a_dag_publishes_a_dict_to_a_kafka_avro_pipeline_and_a_bad_value_fails_the_task(
    kube: Kube, operator: OperatorProcess, airflow: AirflowApi, namespace: str
) -> None:
    result = {"order": 8, "nonce": uuid.uuid4().hex}
    status, raw = _publish_bad_then_good(kube, airflow, namespace, "local-kafka", result)
    version, schema_id = int(status["schema"]["version"]), int(status["schema"]["id"])
    assert raw.key() == b"order-7" and raw.offset() == 0
    assert split_wire_format(raw.value())[0] == schema_id  # the Confluent wire format, the registered id
    decoder = Decoder([SchemaVersion(version=version, id=schema_id, type="AVRO", definition=RESULT_SCHEMA)], "Kafka")
    message = Message(status["topic"], 0, "0", "run", b"order-7", raw.value(), (), None, offset=0)
    decoded = decoder.decode(message).decoded
    assert decoded is not None and decoded.value == result


def test_a_schema_added_to_a_kafka_pipeline_reaches_its_airflow_producer_connection_at_once(
    kube: Kube, operator: OperatorProcess, airflow: AirflowApi, namespace: str
) -> None:
    pipeline = {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "dags", "secret": False, "airflowConnection": {"instanceRef": {"name": "local"}}}],
        "consumers": [{"name": "reader"}],
    }
    topic = ready_pipeline(kube, namespace, pipeline)
    connection = f"{namespace}.results__dags"

    def extra() -> dict[str, Any]:
        response = airflow.request("GET", f"/api/v2/connections/{connection}")
        response.raise_for_status()
        return dict(json.loads(response.json()["extra"]))

    def producer() -> dict[str, Any]:
        body = kube.get_pipeline(namespace, "results") or {}
        return next(p for p in body["status"]["principals"] if p["name"] == "dags")

    before, issued = extra(), producer()
    assert "schema.registry.url" not in before

    kube.patch_pipeline(namespace, "results", {"spec": {"schema": {"type": "AVRO", "definition": RESULT_SCHEMA}}})

    def registered() -> dict[str, Any] | None:
        found = schema_status(kube, namespace, "results")
        return found if found.get("id") is not None else None

    status = eventually(registered, timeout=120, interval=1, what="the schema registered")

    def with_registry() -> dict[str, Any] | None:
        found = extra()
        return found if "schema.registry.url" in found else None

    after = eventually(with_registry, timeout=120, interval=1, what="the registry settings in the connection")
    # The same generation: the settings changed in place, the credential stayed.
    assert after["sasl.username"] == before["sasl.username"]
    assert (producer()["generation"], producer()["username"]) == (issued["generation"], issued["username"])
    assert any(reason == "ProducerConnectionSettingsUpdated" for _, reason, _ in kube.events(namespace, "results"))

    dag_id = f"publish_added_{namespace.replace('-', '_')}"
    install_dag(airflow, dag_id, PUBLISH_DAG.format(dag_id=dag_id, connection=connection, topic=topic))
    result = {"order": 9, "nonce": uuid.uuid4().hex}
    run = start_run(airflow, dag_id, {"result": result, "key": "order-9"})
    assert wait_run(airflow, dag_id, run) == "success"  # the unchanged password still authenticates
    (raw,) = read_kafka(kube, namespace, "results", topic, count=1)
    version, schema_id = int(status["version"]), int(status["id"])
    assert split_wire_format(raw.value())[0] == schema_id  # the Confluent wire format, the registered id
    decoder = Decoder([SchemaVersion(version=version, id=schema_id, type="AVRO", definition=RESULT_SCHEMA)], "Kafka")
    message = Message(topic, 0, "0", "run", b"order-9", raw.value(), (), None, offset=0)
    decoded = decoder.decode(message).decoded
    assert decoded is not None and decoded.value == result
