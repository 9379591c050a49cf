"""PulsarMessageSensor: a deferrable task that waits for one message of a Pulsar topic."""

from __future__ import annotations

from typing import Any

import pulsar
from airflow.sdk import BaseSensorOperator, Context

from eventpipeline_provider.hooks.pulsar import PulsarHook
from eventpipeline_provider.triggers.pulsar import PulsarMessageTrigger


def acknowledge(pulsar_conn_id: str, topic: str, subscription: str, ack_id: str) -> None:
    """Acknowledge one message (its serialized id, hex) on a subscription, from a task."""
    message_id = pulsar.MessageId.deserialize(bytes.fromhex(ack_id))
    # A deserialized id names no topic, which a consumer of a partitioned topic (several partitions
    # behind one consumer) refuses: acknowledge on the message's own partition.
    partition = message_id.partition()
    target = f"{topic}-partition-{partition}" if partition >= 0 else topic
    hook = PulsarHook(pulsar_conn_id)
    try:
        consumer = hook.subscribe(target, subscription, consumer_type=pulsar.ConsumerType.Shared)
        consumer.acknowledge(message_id)
        consumer.close()
    finally:
        hook.close()


class PulsarMessageSensor(BaseSensorOperator):
    """Defers to `PulsarMessageTrigger` and returns the message (the `conf` shape) as its XCom.

    The message is acknowledged here, when the task resumes on a worker: the trigger event was
    stored by then. If the task fails before, the message comes back to the subscription.
    """

    template_fields = ("topic", "subscription")

    def __init__(self, *, topic: str, subscription: str, pulsar_conn_id: str = PulsarHook.default_conn_name,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.topic = topic
        self.subscription = subscription
        self.pulsar_conn_id = pulsar_conn_id

    def execute(self, context: Context) -> None:
        self.defer(
            trigger=PulsarMessageTrigger(
                topic=self.topic, subscription=self.subscription, pulsar_conn_id=self.pulsar_conn_id
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        acknowledge(self.pulsar_conn_id, self.topic, self.subscription, str(event.pop("ackId")))
        return event
