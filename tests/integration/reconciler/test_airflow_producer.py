"""Airflow as a producer, on the real stack: the operator writes a producer's credential into an
Airflow connection; a DAG publishes with it (PublishToTopicOperator) as that principal, keeps
publishing across a rotation with no failed task, the old credential is refused after the grace
period, the principal cannot write another topic, and withdrawal deletes the connection."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import install_dag, read_kafka, read_pulsar, start_run, wait_run
from tests.integration.reconciler.test_kafka_pipeline import acls_on_topic, admin
from tests.integration.support import GROUP, VERSION, Kube, eventually, kafka_send, pulsar_send

pytestmark = pytest.mark.integration
GRACE_SECONDS = 20
PRODUCER = "results"

PUBLISH_DAG = """\
from airflow.sdk import DAG
from eventpipeline_provider.operators.publish import PublishToTopicOperator

with DAG(dag_id="{dag_id}", schedule=None, catchup=False, render_template_as_native_obj=True,
         max_active_runs=4, tags=["eventpipeline-test"]):
    PublishToTopicOperator(
        task_id="publish",
        conn_id="{connection}",
        topic="{{{{ dag_run.conf['topic'] }}}}",
        value="{{{{ dag_run.conf['result'] }}}}",
    )
"""


def spec(broker: str, *, secret: bool = True, instance: str = "local") -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": broker},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": PRODUCER, "airflowConnection": {"instanceRef": {"name": instance}}, "secret": secret}],
        "consumers": [{"name": "reader"}],
        "credentials": {"rotateEvery": "24h", "gracePeriod": f"{GRACE_SECONDS}s"},
    }


def producer_status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    body = kube.get_pipeline(namespace, name) or {}
    return next(p for p in body.get("status", {}).get("principals", []) if p["name"] == PRODUCER)


def connection(airflow: AirflowApi, connection_id: str) -> dict[str, Any] | None:
    response = airflow.request("GET", f"/api/v2/connections/{connection_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


def connection_principal(found: dict[str, Any]) -> str:
    """The identity a connection holds: Kafka `sasl.username` in extra, Pulsar `login` (the role)."""
    if found["conn_type"] == "kafka":
        return str(json.loads(found["extra"])["sasl.username"])
    return str(found["login"])


def writers(stack: Any, broker: str, topic: str) -> set[str]:
    """Who the broker lets write the topic: Kafka ACLs (WRITE ALLOW), Pulsar grants (produce)."""
    if broker == "local-kafka":
        return {principal.removeprefix("User:") for principal, op, perm in acls_on_topic(admin(stack.exports), topic)
                if op == "WRITE" and perm == "ALLOW"}  # fmt: skip
    exports = stack.exports
    path = topic.removeprefix("persistent://")
    with httpx.Client(base_url=exports["PULSAR_ADMIN_URL"], timeout=30,
                      headers={"Authorization": f"Bearer {exports['PULSAR_ADMIN_TOKEN']}"}) as client:  # fmt: skip
        response = client.get(f"/admin/v2/persistent/{path}/permissions")
    assert response.status_code == 200, response.text
    return {role for role, actions in response.json().items() if "produce" in actions}


def send(broker: str, secret: dict[str, str], topic: str) -> object:
    return kafka_send(secret, topic) if broker == "local-kafka" else pulsar_send(secret, topic)


@pytest.mark.parametrize("broker", ["local-kafka", "local-pulsar"])
def test_a_dag_publishes_as_the_airflow_producer_across_a_rotation_and_nowhere_else(
    stack: Any, kube: Kube, operator: OperatorProcess, namespace: str, broker: str
) -> None:
    airflow = AirflowApi(stack.exports, timeout=180)  # a loaded machine answers slowly
    kube.create_pipeline(namespace, "out", spec(broker))
    kube.create_pipeline(namespace, "other", {**spec(broker), "producers": [{"name": "app"}], "consumers": []})
    kube.wait_condition(namespace, "out", "Ready", "True", timeout=180)
    kube.wait_condition(namespace, "out", "ProducerConnectionsReady", "True", timeout=60)
    kube.wait_condition(namespace, "other", "Ready", "True", timeout=180)
    topic = str((kube.get_pipeline(namespace, "out") or {})["status"]["topic"])
    other_topic = str((kube.get_pipeline(namespace, "other") or {})["status"]["topic"])
    status = producer_status(kube, namespace, "out")
    connection_id = f"{namespace}.out__{PRODUCER}"
    assert status["airflowConnection"] == connection_id
    found = connection(airflow, connection_id)
    assert found is not None and connection_principal(found) == status["username"]
    # Identity: the broker lets exactly this principal write the topic, so what arrives is its.
    assert writers(stack, broker, topic) == {status["username"]}

    dag_id = f"h5_publish_{namespace.replace('-', '_')}"
    install_dag(airflow, dag_id, PUBLISH_DAG.format(dag_id=dag_id, connection=connection_id))
    first = start_run(airflow, dag_id, {"topic": topic, "result": {"n": 0}})
    assert wait_run(airflow, dag_id, first) == "success"

    old = kube.secret(namespace, f"out.{PRODUCER}.credentials")
    assert old is not None and old.get("username", old.get("role")) == status["username"]
    kube.patch_pipeline(namespace, "out", {"metadata": {"annotations": {"eventpipeline.dev/rotate": uuid.uuid4().hex}}})
    # Runs keep starting while the connection changes under them and the grace period runs out.
    runs: list[str] = []
    deadline = time.monotonic() + GRACE_SECONDS + 15
    while time.monotonic() < deadline:
        runs.append(start_run(airflow, dag_id, {"topic": topic, "result": {"n": len(runs) + 1}}))
        time.sleep(2)
    states = [wait_run(airflow, dag_id, run_id) for run_id in runs]
    assert states == ["success"] * len(runs), states
    rotated = producer_status(kube, namespace, "out")
    assert rotated["generation"] == 2 and rotated["username"] != status["username"]
    found = connection(airflow, connection_id)
    assert found is not None and connection_principal(found) == rotated["username"]
    eventually(lambda: producer_status(kube, namespace, "out").get("previousUsername") is None,
               timeout=60, what="the previous generation to be revoked")  # fmt: skip
    assert send(broker, old, topic) is not None, "the old credential still writes after the grace period"
    after = start_run(airflow, dag_id, {"topic": topic, "result": {"n": "after"}})
    assert wait_run(airflow, dag_id, after) == "success"
    read = read_kafka if broker == "local-kafka" else read_pulsar
    assert len(read(kube, namespace, "out", topic, count=len(runs) + 2)) == len(runs) + 2

    # The Airflow principal writes nothing else: the broker refuses a run aimed at another topic.
    elsewhere = start_run(airflow, dag_id, {"topic": other_topic, "result": {"n": "elsewhere"}})
    assert wait_run(airflow, dag_id, elsewhere) == "failed"
    current = kube.secret(namespace, f"out.{PRODUCER}.credentials")
    assert current is not None and send(broker, current, other_topic) is not None


@pytest.fixture
def own_airflow(kube: Kube, namespace: str) -> Iterator[str]:
    """A ClusterAirflowInstance like `local`, open to the test's namespace only; the test may edit it."""
    name = f"airflow-{uuid.uuid4().hex[:8]}"
    body: Any = kube.custom.get_cluster_custom_object(GROUP, VERSION, "clusterairflowinstances", "local")
    copy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterAirflowInstance", "metadata": {"name": name},
            "spec": {**body["spec"], "allowedNamespaces": [namespace]}}  # fmt: skip
    kube.custom.create_cluster_custom_object(GROUP, VERSION, "clusterairflowinstances", copy)
    yield name
    kube.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterairflowinstances", name)


def test_withdrawal_deletes_the_connection_and_revokes_an_airflow_only_producer(
    stack: Any, kube: Kube, operator: OperatorProcess, namespace: str, own_airflow: str
) -> None:
    airflow = AirflowApi(stack.exports, timeout=180)  # a loaded machine answers slowly
    kube.create_pipeline(namespace, "out", spec("local-kafka", secret=False, instance=own_airflow))
    kube.wait_condition(namespace, "out", "Ready", "True", timeout=180)
    connection_id = f"{namespace}.out__{PRODUCER}"
    assert connection(airflow, connection_id) is not None
    assert kube.secret(namespace, f"out.{PRODUCER}.credentials") is None  # secret: false
    username = producer_status(kube, namespace, "out")["username"]
    topic = f"{namespace}.out"

    kube.custom.patch_cluster_custom_object(
        GROUP, VERSION, "clusterairflowinstances", own_airflow, {"spec": {"allowedNamespaces": ["somebody-else"]}}
    )
    kube.wait_condition(namespace, "out", "ProducerConnectionsReady", "False", reason="NamespaceNotAllowed", timeout=60)
    eventually(lambda: connection(airflow, connection_id) is None, timeout=60, what="the connection to be deleted")
    eventually(lambda: username not in writers(stack, "local-kafka", topic), timeout=60, what="the ACLs to go")

    # Allowed again: a new generation; then the producer leaves the spec and its connection goes.
    kube.custom.patch_cluster_custom_object(
        GROUP, VERSION, "clusterairflowinstances", own_airflow, {"spec": {"allowedNamespaces": [namespace]}}
    )
    kube.wait_condition(namespace, "out", "ProducerConnectionsReady", "True", timeout=60)
    again = producer_status(kube, namespace, "out")
    assert again["username"] != username and again["generation"] == 2
    kube.patch_pipeline(namespace, "out", {"spec": {"producers": []}})
    eventually(lambda: connection(airflow, connection_id) is None, timeout=60, what="the connection to be deleted")
    assert writers(stack, "local-kafka", topic) == set()
