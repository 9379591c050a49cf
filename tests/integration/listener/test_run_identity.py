"""Run ids name one message of one incarnation of a topic on one cluster: a pipeline deleted and
created again under the same name (its topic deleted and recreated, `deletionPolicy: Delete`)
starts new runs for the new topic's messages, although they sit at the offsets (Kafka) the old
topic's messages had. Before, their run ids were the old ones: Airflow answered 409, the listener
committed, and the messages were silently dropped."""

from __future__ import annotations

import pytest

from tests.integration.listener.broker_cases import BOTH, BrokerCase
from tests.integration.listener.conftest import Harness, wait_ready
from tests.integration.listener.test_messages_become_runs import spec
from tests.integration.support import eventually

pytestmark = pytest.mark.integration
N = 6


def create_and_produce(h: Harness, broker: BrokerCase, values: list[str]) -> str:
    h.kube.create_pipeline(h.namespace, "orders", spec(broker.cluster_broker, h.dag_id))
    topic = str(wait_ready(h.kube, h.namespace, "orders")["status"]["topic"])
    producer = h.kube.secret(h.namespace, "orders.app.credentials")
    assert producer is not None
    broker.produce(producer, topic, values)
    return topic


def runs_by_value(h: Harness, prefix: str, count: int) -> dict[str, str]:
    def enough() -> dict[str, str] | None:
        runs = h.airflow.runs(h.dag_id, prefix)
        assert len(runs) <= count, f"{len(runs)} runs for {count} messages"
        return {run["conf"]["value"]: run_id for run_id, run in runs.items()} if len(runs) == count else None

    return eventually(enough, timeout=120, interval=1, what=f"{count} runs with prefix {prefix}")


@BOTH
def test_a_recreated_topics_messages_become_new_runs(harness: Harness, broker: BrokerCase) -> None:
    h = harness
    prefix = f"ep__{h.namespace}.orders__"
    h.listener_factory(f"{h.namespace}/orders", wait_for_workers=False)  # the pipeline comes later
    old = [f"old-{index}" for index in range(N)]
    create_and_produce(h, broker, old)
    first = runs_by_value(h, prefix, N)

    h.kube.delete_pipeline(h.namespace, "orders")
    eventually(lambda: h.kube.get_pipeline(h.namespace, "orders") is None, timeout=120, what="the pipeline to go")
    new = [f"new-{index}" for index in range(N)]
    topic = create_and_produce(h, broker, new)  # same keys, so the same partitions and offsets (Kafka)

    runs = runs_by_value(h, prefix, 2 * N)
    assert sorted(runs) == sorted(old + new), "exactly one run per message, the old topic's and the new one's"
    assert {runs[value] for value in old} == set(first.values())
    if broker.name == "kafka":  # the topic id changed; on Pulsar the ledger ids in the message ids did
        incarnations = {run_id.split("__")[2] for run_id in runs.values()}
        assert len(incarnations) == 2, f"the two topics' runs differ in their incarnation: {incarnations}"
    for run_id in (runs[value] for value in new):
        run = h.airflow.runs(h.dag_id, run_id)[run_id]
        broker.assert_position(run_id, run["conf"], topic)
