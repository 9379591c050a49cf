"""PublishToTopicOperator on the real stack: a DAG publishes with the Airflow-producer credential
the operator keeps in an Airflow connection (`producers[].airflowConnection`, no Secret).

The broker must acknowledge, and a reader with its own consumer credential must find the message
with its key and headers.
"""

from __future__ import annotations

import json
import uuid

from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import (
    LOCAL_AIRFLOW,
    install_dag,
    read_kafka,
    read_pulsar,
    ready_pipeline,
    start_run,
    wait_run,
    xcom,
)
from tests.integration.support import Kube

PUBLISH_DAG = """\
from airflow.sdk import DAG
from eventpipeline_provider.operators.publish import PublishToTopicOperator

with DAG(dag_id="{dag_id}", schedule=None, catchup=False, render_template_as_native_obj=True,
         tags=["eventpipeline-test"]):
    PublishToTopicOperator(
        task_id="publish",
        conn_id="{connection}",
        topic="{topic}",
        value="{{{{ dag_run.conf['result'] }}}}",
        key="{{{{ dag_run.conf['key'] }}}}",
        headers={{"source": "{{{{ dag_run.dag_id }}}}"}},
    )
"""


def _pipeline(broker: str) -> dict[str, object]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": broker},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "dags", "secret": False, "airflowConnection": {"instanceRef": LOCAL_AIRFLOW}}],
        "consumers": [{"name": "reader"}],
    }


def _publish(kube: Kube, airflow: AirflowApi, namespace: str, broker: str) -> tuple[str, dict[str, object], object]:
    """Create the pipeline, the producer's connection and the DAG; run it once; (topic, conf, xcom)."""
    topic = ready_pipeline(kube, namespace, _pipeline(broker))
    assert kube.secret(namespace, "results.dags.credentials") is None  # the credential lives in Airflow only
    connection = f"{namespace}.results__dags"  # the operator's default id: <namespace>.<pipeline>__<producer>
    dag_id = f"publish_{namespace.replace('-', '_')}"
    install_dag(airflow, dag_id, PUBLISH_DAG.format(dag_id=dag_id, connection=connection, topic=topic))
    conf: dict[str, object] = {"result": {"order": 7, "nonce": uuid.uuid4().hex}, "key": "order-7"}
    run_id = start_run(airflow, dag_id, conf)
    assert wait_run(airflow, dag_id, run_id) == "success"
    return topic, conf, xcom(airflow, dag_id, run_id, "publish")


def test_a_dag_publishes_a_result_to_kafka_and_the_broker_acknowledges_it(
    kube: Kube, operator: OperatorProcess, airflow: AirflowApi, namespace: str
) -> None:
    topic, conf, placed = _publish(kube, airflow, namespace, "local-kafka")
    assert isinstance(placed, dict)
    assert placed["topic"] == topic and placed["partition"] == 0 and placed["offset"] == 0
    (message,) = read_kafka(kube, namespace, "results", topic, count=1)
    assert json.loads(message.value()) == conf["result"]
    assert message.key() == b"order-7"
    assert dict(message.headers() or []) == {"source": f"publish_{namespace.replace('-', '_')}".encode()}


def test_a_dag_publishes_a_result_to_pulsar_and_the_broker_acknowledges_it(
    kube: Kube, operator: OperatorProcess, airflow: AirflowApi, namespace: str
) -> None:
    topic, conf, placed = _publish(kube, airflow, namespace, "local-pulsar")
    assert isinstance(placed, dict)
    assert placed["topic"] == topic and placed["messageId"]
    (message,) = read_pulsar(kube, namespace, "results", topic, count=1)
    assert json.loads(message.data()) == conf["result"]
    assert message.partition_key() == "order-7"
    assert message.properties() == {"source": f"publish_{namespace.replace('-', '_')}"}
