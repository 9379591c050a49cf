"""DAG authorization against real Airflow: a DAG without the namespace's `eventpipeline:` tag gets
no run and the messages wait uncommitted; once the DAG owner adds the tag, each message becomes
its run. The controller reports the refusal as Ready=False / DagNotAuthorized."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.listener.brokers import kafka_committed, kafka_produce
from tests.integration.listener.conftest import Airflow, Harness, listener_status, write_dag
from tests.integration.listener.test_messages_become_runs import run_prefix, spec, wait_runs
from tests.integration.support import eventually, unique

pytestmark = pytest.mark.integration


def dag_tags(airflow: Airflow, dag_id: str) -> set[str] | None:
    response = airflow.request("GET", f"/api/v2/dags/{dag_id}")
    if response.status_code != 200:
        return None
    return {tag["name"] for tag in response.json()["tags"]}


def publish_dag(stack: Any, airflow: Airflow, dag_id: str, tags: Sequence[str]) -> None:
    """Write the DAG with these tags and wait until Airflow serves exactly them (paused: runs stay queued)."""
    write_dag(stack.exports["AIRFLOW_DAGS_FOLDER"], dag_id, tags)
    eventually(
        lambda: dag_tags(airflow, dag_id) == set(tags), timeout=120, interval=2, what=f"DAG {dag_id} with {tags}"
    )
    airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True}).raise_for_status()


@pytest.fixture
def untagged_dag(stack: Any, airflow: Airflow) -> Iterator[str]:
    """A DAG whose owner has not opted in to any namespace."""
    name = "ep_untagged_" + unique("t").replace("-", "_")
    publish_dag(stack, airflow, name, ["eventpipeline-test"])
    yield name
    (Path(stack.exports["AIRFLOW_DAGS_FOLDER"]) / f"{name}.py").unlink(missing_ok=True)


def wait_topic_and_producer(h: Harness, name: str) -> tuple[str, dict[str, str]]:
    """The pipeline's topic and producer Secret exist even while its DAG refuses it."""

    def ready() -> tuple[str, dict[str, str]] | None:
        body = h.kube.get_pipeline(h.namespace, name) or {}
        topic = body.get("status", {}).get("topic")
        secret = h.kube.secret(h.namespace, f"{name}.app.credentials")
        return (topic, secret) if topic and secret else None

    return eventually(ready, timeout=120, what=f"the topic and producer Secret of {name}")


def test_the_listener_triggers_no_run_until_the_dag_carries_the_namespace_tag(
    harness: Harness, untagged_dag: str
) -> None:
    h = harness
    h.kube.create_pipeline(h.namespace, "guarded", spec("local-kafka", untagged_dag))
    topic, producer = wait_topic_and_producer(h, "guarded")
    prefix = run_prefix(h.namespace, "guarded")
    h.listener_factory(f"{h.namespace}/guarded")
    sent = [f"g-{index}" for index in range(3)]
    kafka_produce(producer, topic, sent)

    status = eventually(
        lambda: "DagNotAuthorized" in (s := listener_status(h.kube, h.namespace, "guarded")).get("error", "") and s,
        timeout=60,
        what="the listener to report DagNotAuthorized",
    )
    assert f"eventpipeline:{h.namespace}" in status["error"]
    assert h.airflow.runs(untagged_dag, prefix) == {}
    group = f"ep.{h.namespace}.guarded.listener"
    assert kafka_committed(h.stack.exports, group, topic, 2) == {0: 0, 1: 0}  # nothing committed, nothing lost

    # The DAG owner opts in for this namespace: the waiting messages become their runs.
    publish_dag(h.stack, h.airflow, untagged_dag, ["eventpipeline-test", f"eventpipeline:{h.namespace}"])
    runs = wait_runs(h.airflow, untagged_dag, prefix, len(sent), timeout=150)
    assert sorted(run["conf"]["value"] for run in runs.values()) == sorted(sent)


def test_a_dag_tagged_for_another_namespace_does_not_accept_this_one(harness: Harness, untagged_dag: str) -> None:
    h = harness
    publish_dag(h.stack, h.airflow, untagged_dag, [f"eventpipeline:{h.namespace}-other"])
    h.kube.create_pipeline(h.namespace, "elsewhere", spec("local-kafka", untagged_dag))
    topic, producer = wait_topic_and_producer(h, "elsewhere")
    h.listener_factory(f"{h.namespace}/elsewhere")
    kafka_produce(producer, topic, ["x"])
    eventually(
        lambda: "DagNotAuthorized" in listener_status(h.kube, h.namespace, "elsewhere").get("error", ""),
        timeout=60,
        what="the listener to report DagNotAuthorized",
    )
    assert h.airflow.runs(untagged_dag, run_prefix(h.namespace, "elsewhere")) == {}


def test_the_controller_reports_dag_not_authorized_with_the_tag_to_add(harness: Harness, untagged_dag: str) -> None:
    """Needs the controller-side check (planning.dag_access.check_dag) wired into the reconciler."""
    h = harness
    h.kube.create_pipeline(h.namespace, "refused", spec("local-kafka", untagged_dag))
    ready = h.kube.wait_condition(h.namespace, "refused", "Ready", "False", reason="DagNotAuthorized")
    assert f"eventpipeline:{h.namespace}" in ready["message"]
    assert untagged_dag in ready["message"]
