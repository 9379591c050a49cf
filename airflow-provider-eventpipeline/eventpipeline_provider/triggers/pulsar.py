"""A Pulsar message trigger for AssetWatcher (event-driven scheduling) and deferrable sensors.

In an `AssetWatcher` the trigger runs in Airflow's shared-stream *ack mode*: one consumer per
(connection, topic, subscription) in the triggerer, and a message is acknowledged only after
the triggerer confirmed that the asset event made from it was stored in the metadata database.
A message whose event was not confirmed (persist failed, ack timeout, triggerer stopped) is
negatively acknowledged or simply left unacknowledged, and Pulsar delivers it again: at least
once. The listener's DagRun mode is stronger: its run id is derived from the message id, so a
redelivery finds the run and makes no second one (exactly one run per message).

In a deferrable sensor (`run()`), the trigger does not acknowledge at all: it hands the message
id to the task, which acknowledges when it resumes (see `sensors/pulsar.py`).

On a topic with a schema, a message is decoded with the version it was written with (asked of the
broker once per version), so the event carries the decoded object and `schema`, as the listener's
runs do; a message that cannot be decoded is passed on as it came.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any

import pulsar
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

from eventpipeline_provider.connections import PulsarSettings
from eventpipeline_provider.hooks.pulsar import PulsarHook
from eventpipeline_provider.message import message_conf, with_decoded_value
from eventpipeline_provider.schemas import TopicSchema, decode_pulsar_value

log = logging.getLogger(__name__)
CLASSPATH = "eventpipeline_provider.triggers.pulsar.PulsarMessageTrigger"
RECEIVE_TIMEOUT_MS = 1000
# A message whose event was not stored comes back after this delay (Pulsar's default is 60 s).
REDELIVERY_DELAY_MS = 5000


def message_position(message_id: pulsar.MessageId) -> str:
    """`ledger:entry:partition:batch`, as the listener writes a Pulsar message id."""
    return f"{message_id.ledger_id()}:{message_id.entry_id()}:{message_id.partition()}:{message_id.batch_index()}"


def message_payload(message: pulsar.Message) -> dict[str, Any]:
    """The trigger event's payload: the listener's run-conf shape plus the serialized id to acknowledge."""
    message_id = message.message_id()
    published = message.publish_timestamp()
    stamp = datetime.fromtimestamp(published / 1000, UTC).isoformat(timespec="milliseconds") if published else None
    key = message.partition_key()
    conf = message_conf(
        str(message.topic_name()),
        message_id.partition(),
        key.encode("utf-8") if key else None,
        message.data(),
        dict(message.properties()),
        message_id=message_position(message_id),
        timestamp=stamp.replace("+00:00", "Z") if stamp else None,
    )
    conf["ackId"] = message_id.serialize().hex()
    return conf


class Decoding:
    """Decodes the messages of a topic with a schema, with each version fetched once from the broker."""

    def __init__(self, hook: PulsarHook) -> None:
        self._hook = hook
        self._versions: dict[int, TopicSchema | None] = {}

    async def payload(self, message: pulsar.Message) -> dict[str, Any]:
        payload = message_payload(message)
        version = int(message._message.int_schema_version())  # the wrapped message has it as a number
        data = message.data()
        if version < 0 or data is None:
            return payload  # written without a schema
        if version not in self._versions:
            # In a thread, without re-reading the connection (which the triggerer must do on its loop).
            self._versions[version] = await asyncio.to_thread(self._hook.schema_of, str(message.topic_name()), version)
        schema = self._versions[version]
        if schema is None or schema.schema_type not in ("AVRO", "JSON"):
            return payload
        try:
            value = decode_pulsar_value(data, schema)
        except ValueError as error:
            log.warning("message %s: not decoded with schema version %s: %s", payload.get("messageId"), version, error)
            return payload
        return with_decoded_value(payload, version, value)


async def _subscribe(hook: PulsarHook, topic: str, subscription: str) -> pulsar.Consumer:
    # The connection is read on the event loop (the triggerer's connection lookup talks to its
    # supervisor through that loop: from a worker thread it deadlocks); the client is built in a thread.
    settings = await hook.aconnection_settings()
    return await asyncio.to_thread(_subscribe_blocking, hook, topic, subscription, settings)


def _subscribe_blocking(hook: PulsarHook, topic: str, subscription: str, settings: PulsarSettings) -> pulsar.Consumer:
    # Shared: the triggerer's consumer and a resuming task may hold the subscription at once.
    return hook.subscribe(
        topic,
        subscription,
        settings,
        consumer_type=pulsar.ConsumerType.Shared,
        initial_position=pulsar.InitialPosition.Earliest,
        negative_ack_redelivery_delay_ms=REDELIVERY_DELAY_MS,
    )


async def _receive(consumer: pulsar.Consumer) -> pulsar.Message | None:
    try:
        return await asyncio.to_thread(consumer.receive, RECEIVE_TIMEOUT_MS)
    except pulsar.Timeout:
        return None


class PulsarStreamProducer(SharedStreamProducer):
    """The triggerer's one consumer for a (connection, topic, subscription); acknowledges stored events."""

    def __init__(self, *, topic: str, subscription: str, pulsar_conn_id: str) -> None:
        self.topic = topic
        self.subscription = subscription
        self.pulsar_conn_id = pulsar_conn_id
        self._hook: PulsarHook | None = None
        self._consumer: pulsar.Consumer | None = None

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        self._hook = PulsarHook(self.pulsar_conn_id)
        self._consumer = await _subscribe(self._hook, self.topic, self.subscription)
        decoding = Decoding(self._hook)
        while True:
            message = await _receive(self._consumer)
            if message is not None:
                yield await decoding.payload(message), message.message_id()

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Acknowledge what every subscriber stored (or refused for good); redeliver the rest."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError(f"no consumer on {self.topic} to acknowledge with")
        for item in batch:
            outcome = item.outcome
            if outcome.failed == 0 and (outcome.acked > 0 or outcome.rejected > 0):
                await asyncio.to_thread(consumer.acknowledge, item.broker_payload)
            else:
                consumer.negative_acknowledge(item.broker_payload)

    async def aclose(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.to_thread(consumer.close)
        if self._hook is not None:
            await asyncio.to_thread(self._hook.close)


class PulsarMessageTrigger(BaseEventTrigger):
    """Fires once per message of a Pulsar topic.

    :param topic: the pipeline's topic, `persistent://tenant/namespace/topic`.
    :param subscription: the subscription to read with (the connection's role needs consume on the topic).
    :param pulsar_conn_id: an operator-kept Pulsar connection with a consuming credential.
    """

    def __init__(self, *, topic: str, subscription: str, pulsar_conn_id: str = PulsarHook.default_conn_name) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped here
        self.topic = topic
        self.subscription = subscription
        self.pulsar_conn_id = pulsar_conn_id

    def _kwargs(self) -> dict[str, Any]:
        return {"topic": self.topic, "subscription": self.subscription, "pulsar_conn_id": self.pulsar_conn_id}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, self._kwargs()

    def shared_stream_key(self) -> Hashable | None:
        # A deferred task's trigger (it has a task instance) must run alone: in a shared stream its
        # single event would leave the group at once and the message would never be acknowledged.
        if self.task_instance is not None:
            return None
        return ("pulsar", self.pulsar_conn_id, self.topic, self.subscription)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> SharedStreamProducer:
        return PulsarStreamProducer(
            topic=kwargs["topic"], subscription=kwargs["subscription"], pulsar_conn_id=kwargs["pulsar_conn_id"]
        )

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for payload in shared_stream:
            yield TriggerEvent(payload)  # type: ignore[no-untyped-call]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """One message for a deferred task; it stays unacknowledged until the task acknowledges it."""
        hook = PulsarHook(self.pulsar_conn_id)
        consumer = await _subscribe(hook, self.topic, self.subscription)
        try:
            while True:
                message = await _receive(consumer)
                if message is not None:
                    payload = await Decoding(hook).payload(message)
                    yield TriggerEvent(payload)  # type: ignore[no-untyped-call]
                    return
        finally:
            await asyncio.to_thread(consumer.close)
            await asyncio.to_thread(hook.close)
