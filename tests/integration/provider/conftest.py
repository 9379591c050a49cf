"""Helpers for the provider's tests: Airflow connections made from operator Secrets, DAGs, runs.

Each test writes a DAG that imports `eventpipeline_provider` — installed into the stack's Airflow
by `dev up` — and lets Airflow's own scheduler, workers and triggerer run it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import pulsar
import pytest
from confluent_kafka import Consumer

from eventpipeline.adapters.tls import pulsar_tls_options
from eventpipeline.planning import naming
from eventpipeline.planning.secrets import CA_KEY
from eventpipeline_devenv import stack as devstack
from eventpipeline_devenv.airflow_api import AirflowApi, remove_dag, write_dag
from eventpipeline_devenv.clients import kafka_settings
from tests.integration.support import Kube, eventually

FINISHED = ("success", "failed")


@pytest.fixture(scope="session")
def airflow(stack: devstack.StackInfo) -> AirflowApi:
    return AirflowApi(stack.exports)


LOCAL_AIRFLOW = {"kind": "ClusterAirflowInstance", "name": "local"}
# A Pulsar pipeline with a producer and the connection the operator keeps for its listener's
# read-only credential (`airflow` without a `trigger`: no listener competing for the messages).
PULSAR_RESULTS = {
    "brokerRef": {"kind": "ClusterBroker", "name": "local-pulsar"},
    "topic": {"partitions": 1, "deletionPolicy": "Delete"},
    "producers": [{"name": "app"}],
    "airflow": {"instanceRef": LOCAL_AIRFLOW},
}


def ready_pipeline(kube: Kube, namespace: str, spec: Mapping[str, Any], name: str = "results") -> str:
    """Create the pipeline and wait until it is Ready; its topic."""
    kube.create_pipeline(namespace, name, dict(spec))
    kube.wait_condition(namespace, name, "Ready", "True", timeout=180)
    body = kube.get_pipeline(namespace, name)
    assert body is not None
    return str(body["status"]["topic"])


def install_dag(airflow: AirflowApi, dag_id: str, source: str) -> None:
    write_dag(airflow.exports["AIRFLOW_DAGS_FOLDER"], dag_id, source)
    eventually(lambda: airflow.dag_listed(dag_id), timeout=180, interval=2, what=f"Airflow to list {dag_id}")
    airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()


def retire_dag(airflow: AirflowApi, dag_id: str) -> None:
    """Take a test's DAG out of Airflow, whatever state the test left it in. Paused first, and
    waited for until the dag-processor has dropped the watchers of its assets and so the triggerer
    their triggers: removing the file alone also ends them, but only once the dag-processor sees it
    gone (about 13 s here), during which a trigger whose connection was deleted fails every 2 s;
    then the file and the DAG itself."""
    try:
        paused = airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True})
        if paused.status_code == 200:
            eventually(lambda: not _watched(airflow, dag_id), timeout=120, interval=1,
                       what=f"the asset watchers of {dag_id} to be dropped")  # fmt: skip
    finally:
        remove_dag(airflow.exports["AIRFLOW_DAGS_FOLDER"], dag_id)
        airflow.request("DELETE", f"/api/v2/dags/{dag_id}")  # 404 when never listed


def _watched(airflow: AirflowApi, dag_id: str) -> bool:
    """Whether an asset the DAG is scheduled on still has a watcher."""
    response = airflow.request("GET", "/api/v2/assets", params={"dag_ids": dag_id})
    response.raise_for_status()
    return any(asset.get("watchers") for asset in response.json().get("assets", []))


def start_run(airflow: AirflowApi, dag_id: str, conf: Mapping[str, Any]) -> str:
    run_id = f"test-{uuid.uuid4().hex[:10]}"
    body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf)}
    response = airflow.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
    assert response.status_code == 200, response.text
    return run_id


def wait_run(airflow: AirflowApi, dag_id: str, run_id: str, timeout: float = 240) -> str:
    def finished() -> str | None:
        response = airflow.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        state = str(response.json()["state"])
        return state if state in FINISHED else None

    return eventually(finished, timeout=timeout, interval=2, what=f"run {run_id} of {dag_id} to finish")


def xcom(airflow: AirflowApi, dag_id: str, run_id: str, task_id: str) -> Any:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    response = airflow.request("GET", path, params={"deserialize": True})
    assert response.status_code == 200, response.text
    return response.json()["value"]


def task_log(airflow: AirflowApi, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
    response = airflow.request("GET", path, params={"full_content": True})
    return response.text  # JSON with the log lines: searched as text


def read_kafka(
    kube: Kube, namespace: str, pipeline: str, topic: str, *, count: int, consumer: str = "reader"
) -> list[Any]:
    """`count` messages of the topic from its start, read with a consumer principal's Secret (the test's
    own eyes); nothing is committed, so each read starts from the beginning again."""
    secret = kube.secret(namespace, f"{pipeline}.{consumer}.credentials")
    assert secret is not None
    settings = {**kafka_settings(secret), "group.id": naming.consumer_group(namespace, pipeline, consumer),
                "auto.offset.reset": "earliest", "enable.auto.commit": False}  # fmt: skip
    reader = Consumer(settings)
    reader.subscribe([topic])
    found: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while len(found) < count and time.monotonic() < deadline:
            message = reader.poll(1.0)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        reader.close()
    return found


def read_pulsar(
    kube: Kube, namespace: str, pipeline: str, topic: str, *, count: int, consumer: str = "reader"
) -> list[Any]:
    """`count` messages of the topic, read with a consumer principal's token."""
    secret = kube.secret(namespace, f"{pipeline}.{consumer}.credentials")
    assert secret is not None
    tls_options, trust = pulsar_tls_options(secret["serviceUrl"], secret.get(CA_KEY))
    client = pulsar.Client(secret["serviceUrl"], authentication=pulsar.AuthenticationToken(secret["token"]),
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error), **tls_options)  # fmt: skip
    found: list[Any] = []
    try:
        reader = client.subscribe(topic, "test-reader", initial_position=pulsar.InitialPosition.Earliest)
        deadline = time.monotonic() + 60
        while len(found) < count and time.monotonic() < deadline:
            try:
                message = reader.receive(1000)
            except pulsar.Timeout:
                continue
            reader.acknowledge(message)
            found.append(message)
    finally:
        client.close()
        if trust is not None:
            trust.remove()
    return found
