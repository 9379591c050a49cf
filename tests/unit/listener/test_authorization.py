"""The listener refuses on its own side: no run for a DAG that does not accept the namespace."""

from __future__ import annotations

from typing import Literal

from eventpipeline.adapters.errors import UnavailableError
from eventpipeline.listener.trigger import REFUSED_STATUS, Answer, AuthorizingTrigger, DagAuthorization
from eventpipeline.planning.delivery import Message, Outcome, classify

MESSAGE = Message(
    topic="shop.orders", partition=0, position="1", run_id="r1", key=None, value=b"{}", headers=(), timestamp_ms=None
)


class FakeDags:
    def __init__(self, tags: dict[str, list[str]], assets: dict[str, list[str]] | None = None) -> None:
        self.dag_tags = tags
        self.assets = assets or {}
        self.reads = 0
        self.down = False

    def tags(self, dag_id: str) -> list[str] | None:
        self.reads += 1
        if self.down:
            raise UnavailableError("Airflow: reading DAG failed")
        return self.dag_tags.get(dag_id)

    def asset_consumers(self, asset_uri: str) -> list[tuple[str, list[str]]] | None:
        self.reads += 1
        if asset_uri not in self.assets:
            return None
        return [(dag_id, self.dag_tags.get(dag_id, [])) for dag_id in self.assets[asset_uri]]

    def close(self) -> None:
        pass


class FakeTrigger:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def dag_run(self, dag_id: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer:
        self.calls.append(dag_id)
        return Answer(200, "", 0.0)

    def asset_event(self, asset_uri: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer:
        self.calls.append(asset_uri)
        return Answer(200, "", 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def trigger_for(namespace: str, dags: FakeDags, clock: Clock | None = None) -> tuple[AuthorizingTrigger, FakeTrigger]:
    inner = FakeTrigger()
    authorization = DagAuthorization(dags, ttl=30.0, clock=clock or Clock())
    return AuthorizingTrigger(inner, authorization, namespace), inner


def test_a_dag_without_the_namespace_tag_gets_no_run_and_the_message_is_retried() -> None:
    trigger, inner = trigger_for("shop", FakeDags({"process": ["eventpipeline:other"]}))
    answer = trigger.dag_run("process", MESSAGE, "Kafka")
    assert inner.calls == []
    assert answer.status_code == REFUSED_STATUS
    assert answer.detail.startswith("DagNotAuthorized: ")
    assert "'eventpipeline:shop'" in answer.detail
    # transient: not committed, not dead-lettered; retried until the DAG owner adds the tag
    assert answer.held, "a refusal of our own is retried like a transient failure, never dead-lettered"
    assert classify(answer.status_code) is Outcome.REFUSED, "while Airflow's own 403 is a refusal"


def test_a_dag_with_the_tag_is_triggered() -> None:
    trigger, inner = trigger_for("shop", FakeDags({"process": ["eventpipeline:shop"]}))
    assert trigger.dag_run("process", MESSAGE, "Kafka").status_code == 200
    assert inner.calls == ["process"]


def test_a_missing_dag_is_left_to_airflows_own_answer() -> None:
    trigger, inner = trigger_for("shop", FakeDags({}))
    trigger.dag_run("missing", MESSAGE, "Kafka")
    assert inner.calls == ["missing"]


def test_tags_are_read_once_per_ttl() -> None:
    clock = Clock()
    dags = FakeDags({"process": []})
    trigger, _inner = trigger_for("shop", dags, clock)
    for _ in range(5):
        trigger.dag_run("process", MESSAGE, "Kafka")
    assert dags.reads == 1
    dags.dag_tags["process"] = ["eventpipeline:shop"]  # the DAG owner opts in
    clock.now = 31.0
    assert trigger.dag_run("process", MESSAGE, "Kafka").status_code == 200
    assert dags.reads == 2


def test_when_tags_cannot_be_read_nothing_is_triggered() -> None:
    dags = FakeDags({"process": ["eventpipeline:shop"]})
    dags.down = True
    trigger, inner = trigger_for("shop", dags)
    answer = trigger.dag_run("process", MESSAGE, "Kafka")
    assert answer.status_code is None
    assert inner.calls == []
    assert classify(answer.status_code) is Outcome.TRANSIENT


def test_every_dag_scheduled_on_the_asset_must_accept_the_namespace() -> None:
    dags = FakeDags({"a": ["eventpipeline:shop"], "b": []}, {"kafka://t": ["a", "b"]})
    trigger, inner = trigger_for("shop", dags)
    answer = trigger.asset_event("kafka://t", MESSAGE, "Kafka")
    assert inner.calls == []
    assert "'b'" in answer.detail
    dags.dag_tags["b"] = ["eventpipeline:*"]
    trigger, inner = trigger_for("shop", dags)
    assert trigger.asset_event("kafka://t", MESSAGE, "Kafka").status_code == 200
