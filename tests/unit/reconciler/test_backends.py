"""KafkaBackend's topic convergence: the admin calls a new pipeline's topic costs."""

from __future__ import annotations

from typing import Any, cast

from eventpipeline.adapters.kafka import KafkaAdmin
from eventpipeline.planning import secrets
from eventpipeline.planning.topic import DesiredTopic, ObservedTopic
from eventpipeline.reconciler.backends import KafkaBackend


class Admin:
    """The topic calls of a Kafka admin, in memory, recording each call."""

    def __init__(self, *existing: str) -> None:
        self.topics = {name: ObservedTopic(name, 1, {}) for name in existing}
        self.calls: list[str] = []
        self.made_meanwhile: set[str] = set()

    def describe_topic(self, name: str) -> ObservedTopic | None:
        self.calls.append("describe")
        return self.topics.get(name)

    def create_topic(self, topic: DesiredTopic) -> bool:
        self.calls.append("create")
        if topic.name in self.made_meanwhile:
            self.topics[topic.name] = ObservedTopic(topic.name, 1, {})
        if topic.name in self.topics:
            return False
        self.topics[topic.name] = ObservedTopic(topic.name, topic.partitions, dict(topic.config))
        return True

    def grow_partitions(self, name: str, total: int) -> None:
        self.calls.append("grow")
        self.topics[name] = ObservedTopic(name, total, self.topics[name].config)

    def set_topic_config(self, name: str, changes: Any, reset: Any = ()) -> None:
        self.calls.append("config")


def backend(admin: Admin) -> KafkaBackend:
    endpoint = secrets.KafkaEndpoint("127.0.0.1:9092", "SASL_PLAINTEXT", "SCRAM-SHA-512")
    return KafkaBackend(cast(KafkaAdmin, admin), endpoint, 1)


def test_a_topic_just_read_absent_is_created_with_one_call() -> None:
    admin = Admin()
    result = backend(admin).ensure_topic(DesiredTopic("shop.orders", 3, None, {}), seen_absent=True)
    assert result.created and result.partitions == 3
    assert admin.calls == ["create"]


def test_without_the_hint_the_topic_is_read_first() -> None:
    admin = Admin()
    assert backend(admin).ensure_topic(DesiredTopic("shop.orders", 3, None, {})).created
    assert admin.calls == ["describe", "create"]


def test_a_topic_made_by_someone_else_meanwhile_is_read_and_converged_not_reported_created() -> None:
    admin = Admin()
    admin.made_meanwhile.add("shop.orders")
    result = backend(admin).ensure_topic(DesiredTopic("shop.orders", 3, None, {}), seen_absent=True)
    assert not result.created
    assert result.grown_from == 1 and result.partitions == 3
    assert admin.calls == ["create", "describe", "grow"]
