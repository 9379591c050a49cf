"""A hook recovers from a rotation: a task holding a producer built with generation 1 keeps
publishing after generation 1 was revoked, because the hook re-reads the connection — which the
operator updated for the Airflow producer — when the broker refuses the old credential.

The task is held between its two sends with a flag file until generation 1 is gone.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import (
    LOCAL_AIRFLOW,
    install_dag,
    read_kafka,
    ready_pipeline,
    start_run,
    wait_run,
    xcom,
)
from tests.integration.support import Kube, eventually

GRACE_SECONDS = 5
HOLD_DAG = """\
import time
from pathlib import Path

from airflow.sdk import DAG, task
from eventpipeline_provider.hooks.kafka import KafkaHook

with DAG(dag_id="{dag_id}", schedule=None, catchup=False, tags=["eventpipeline-test"]):

    @task
    def publish_twice() -> list:
        hook = KafkaHook("{connection}")
        hook.send("{topic}", b"before")
        principals = [hook.principal]
        flag = Path("{flag}")
        deadline = time.monotonic() + 300
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        hook.send("{topic}", b"after")  # same hook: its producer still holds generation 1
        principals.append(hook.principal)
        hook.close()
        return principals

    publish_twice()
"""


def _principal(kube: Kube, namespace: str) -> dict[str, object]:
    body = kube.get_pipeline(namespace, "results") or {}
    return next(p for p in body.get("status", {}).get("principals", []) if p["name"] == "dags")


def test_a_kafka_hook_keeps_publishing_across_a_rotation_by_rereading_its_connection(
    kube: Kube,
    operator: OperatorProcess,
    airflow: AirflowApi,
    namespace: str,
    tmp_path: Path,
) -> None:
    topic = ready_pipeline(kube, namespace, {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "dags", "secret": False, "airflowConnection": {"instanceRef": LOCAL_AIRFLOW}}],
        "consumers": [{"name": "reader"}],
        "credentials": {"rotateEvery": "24h", "gracePeriod": f"{GRACE_SECONDS}s"},
    })  # fmt: skip
    first = str(_principal(kube, namespace)["username"])
    connection = f"{namespace}.results__dags"
    flag = tmp_path / "rotated"
    dag_id = f"rotate_{namespace.replace('-', '_')}"
    install_dag(airflow, dag_id, HOLD_DAG.format(dag_id=dag_id, connection=connection, topic=topic, flag=flag))

    run_id = start_run(airflow, dag_id, {})
    assert len(read_kafka(kube, namespace, "results", topic, count=1)) == 1  # the first send landed
    kube.patch_pipeline(
        namespace, "results", {"metadata": {"annotations": {"eventpipeline.dev/rotate": uuid.uuid4().hex}}}
    )

    def revoked() -> bool:
        principal = _principal(kube, namespace)
        return principal["generation"] == 2 and not principal.get("previousUsername")

    eventually(revoked, timeout=120, what="generation 2, and generation 1 revoked")
    second = str(_principal(kube, namespace)["username"])
    assert second != first
    flag.touch()

    assert wait_run(airflow, dag_id, run_id) == "success"
    assert xcom(airflow, dag_id, run_id, "publish_twice") == [first, second]
    values = [message.value() for message in read_kafka(kube, namespace, "results", topic, count=2)]
    assert values == [b"before", b"after"]
