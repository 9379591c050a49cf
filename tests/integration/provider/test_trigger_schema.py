"""The Pulsar trigger on a topic with a schema, on the real stack: a deferred sensor resumes with the
message decoded with the schema version it was written with — the object and `schema`, as the
listener's runs carry them — so `triggering_message()` gives the record, not Avro bytes."""

from __future__ import annotations

import json
from typing import Any

from pulsar.schema import AvroSchema

from eventpipeline.planning import naming
from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import LOCAL_AIRFLOW, install_dag, ready_pipeline, start_run, wait_run, xcom
from tests.integration.provider.test_sensor import SENSOR_DAG, _deferred
from tests.integration.support import Kube, eventually, pulsar_client, schema_status

ORDER = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "order", "type": "int"}, {"name": "blob", "type": "bytes"}],
}


def test_the_sensor_resumes_with_the_message_decoded_with_its_schema_version(
    kube: Kube, operator: OperatorProcess, airflow: AirflowApi, namespace: str
) -> None:
    topic = ready_pipeline(kube, namespace, {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-pulsar"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        # As pulsar-client declares a dict schema, so the test's producer and the registry agree.
        "schema": {"type": "AVRO", "definition": json.dumps(ORDER, indent=True)},
        "airflow": {"instanceRef": LOCAL_AIRFLOW},
    })  # fmt: skip
    eventually(lambda: schema_status(kube, namespace, "results").get("version") is not None, timeout=120,
               what="the schema registered")  # fmt: skip
    version = int(schema_status(kube, namespace, "results")["version"])
    dag_id = f"sense_avro_{namespace.replace('-', '_')}"
    connection = naming.connection_id(namespace, "results", None)
    install_dag(airflow, dag_id, SENSOR_DAG.format(dag_id=dag_id, topic=topic, connection=connection))
    run_id = start_run(airflow, dag_id, {})
    eventually(lambda: _deferred(airflow, dag_id, run_id), timeout=180, interval=2, what="the sensor to defer")

    secret = kube.secret(namespace, "results.app.credentials")
    assert secret is not None
    with pulsar_client(secret) as client:
        producer = client.create_producer(topic, schema=AvroSchema(None, schema_definition=ORDER))
        producer.send({"order": 7, "blob": b"\x00\x01"})
    assert wait_run(airflow, dag_id, run_id) == "success"
    message: dict[str, Any] = xcom(airflow, dag_id, run_id, "wait")
    assert message["schema"] == {"version": version, "id": None}
    assert message["value"] == {"order": 7, "blob": "AAE="}  # bytes as base64, as the listener writes them
    assert "valueEncoding" not in message
