"""PulsarMessageSensor on the real stack: a deferred task resumes with the next message, and
acknowledges it on resuming, so the next run waits for the next message instead of the same one."""

from __future__ import annotations

import json

from eventpipeline.planning import naming
from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import PULSAR_RESULTS, install_dag, ready_pipeline, start_run, wait_run, xcom
from tests.integration.support import Kube, eventually, pulsar_send

SENSOR_DAG = """\
from airflow.sdk import DAG
from eventpipeline_provider.sensors.pulsar import PulsarMessageSensor

with DAG(dag_id="{dag_id}", schedule=None, catchup=False, max_active_runs=1, tags=["eventpipeline-test"]):
    PulsarMessageSensor(task_id="wait", topic="{topic}", subscription="dag-wait", pulsar_conn_id="{connection}",
                        timeout=600)
"""


def _deferred(airflow: AirflowApi, dag_id: str, run_id: str) -> bool:
    response = airflow.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/wait")
    return response.status_code == 200 and response.json()["state"] == "deferred"


def test_the_sensor_resumes_with_each_message_once(kube: Kube, operator: OperatorProcess, airflow: AirflowApi,
                                                    namespace: str) -> None:  # fmt: skip
    topic = ready_pipeline(kube, namespace, PULSAR_RESULTS)
    secret = kube.secret(namespace, "results.app.credentials")
    assert secret is not None
    dag_id = f"sense_{namespace.replace('-', '_')}"
    connection = naming.connection_id(namespace, "results", None)
    install_dag(airflow, dag_id, SENSOR_DAG.format(dag_id=dag_id, topic=topic, connection=connection))

    seen = []
    for number in (1, 2):
        run_id = start_run(airflow, dag_id, {})
        eventually(lambda run_id=run_id: _deferred(airflow, dag_id, run_id), timeout=180, interval=2,
                   what="the sensor to defer")  # fmt: skip
        assert pulsar_send(secret, topic, json.dumps({"n": number}).encode()) is None
        assert wait_run(airflow, dag_id, run_id) == "success"
        message = xcom(airflow, dag_id, run_id, "wait")
        assert "ackId" not in message
        seen.append(json.loads(message["value"])["n"])
    assert seen == [1, 2]
