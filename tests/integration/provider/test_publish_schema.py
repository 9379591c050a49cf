"""PublishToTopicOperator on a Pulsar pipeline with a schema, on the real stack.

The operator uploads the pipeline's Avro schema to Pulsar's registry, enforces it on the topic and
forbids automatic updates: the broker takes messages only from a producer that declares exactly
that schema. The provider asks the broker for the topic's schema, encodes the task's value with it
and declares it; the message arrives with the schema version, and the listener's own decoder reads
it back. A value that does not fit the schema fails the task before anything reaches the topic.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from eventpipeline.listener.decoding import Decoder
from eventpipeline.listener.pulsar_source import schema_version
from eventpipeline.planning.delivery import Message
from eventpipeline.planning.schema_versions import SchemaVersion
from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import install_dag, read_pulsar, start_run, task_log, wait_run
from tests.integration.provider.test_publish import PUBLISH_DAG
from tests.integration.support import Kube, eventually

pytestmark = pytest.mark.integration

# Compact JSON: not the text pulsar-client's own AvroSchema would declare (it re-serializes with
# indentation), so the broker accepts the producer only if it declares the definition as stored.
RESULT_SCHEMA = json.dumps({
    "type": "record", "name": "Result",
    "fields": [{"name": "order", "type": "int"}, {"name": "nonce", "type": "string"}],
}, separators=(",", ":"))  # fmt: skip


def test_a_dag_publishes_a_dict_to_a_pulsar_avro_pipeline_and_a_bad_value_fails_the_task(
    kube: Kube, operator: OperatorProcess, airflow: AirflowApi, namespace: str
) -> None:
    kube.create_pipeline(namespace, "results", {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-pulsar"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "dags", "secret": False, "airflowConnection": {"instanceRef": {"name": "local"}}}],
        "consumers": [{"name": "reader"}],
        "schema": {"type": "AVRO", "definition": RESULT_SCHEMA, "compatibility": "BACKWARD"},
    })  # fmt: skip
    kube.wait_condition(namespace, "results", "Ready", "True", timeout=180)

    def registered() -> dict[str, Any] | None:
        status = (kube.get_pipeline(namespace, "results") or {}).get("status") or {}
        return status if (status.get("schema") or {}).get("version") is not None else None

    status = eventually(registered, timeout=120, interval=1, what="the schema registered in Pulsar")
    topic, version = str(status["topic"]), int(status["schema"]["version"])
    dag_id = f"publish_avro_{namespace.replace('-', '_')}"
    connection = f"{namespace}.results__dags"
    install_dag(airflow, dag_id, PUBLISH_DAG.format(dag_id=dag_id, connection=connection, topic=topic))

    # A value that does not fit: the task fails with the reason, and nothing reaches the topic
    # (the good message below is the first the topic holds).
    bad = start_run(airflow, dag_id, {"result": {"order": "seven", "nonce": "x"}, "key": "bad"})
    assert wait_run(airflow, dag_id, bad) == "failed"
    reason = "does not fit the pipeline's Avro schema"
    eventually(lambda: reason in task_log(airflow, dag_id, bad, "publish"), timeout=60, what=f"{reason!r} in the log")

    result = {"order": 7, "nonce": uuid.uuid4().hex}
    good = start_run(airflow, dag_id, {"result": result, "key": "order-7"})
    assert wait_run(airflow, dag_id, good) == "success"

    (raw,) = read_pulsar(kube, namespace, "results", topic, count=1)
    assert raw.partition_key() == "order-7"
    assert schema_version(raw) == version  # written with the registered version
    # The listener's decoder, with the version the controller hands over, reads the dict back.
    decoder = Decoder([SchemaVersion(version=version, type="AVRO", definition=RESULT_SCHEMA)], "Pulsar")
    message = Message(topic, 0, "0:0:0:-1", "run", b"order-7", raw.data(), (), None, schema_version=version)
    decoded = decoder.decode(message).decoded
    assert decoded is not None and decoded.value == result
