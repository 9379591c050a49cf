"""A Kafka consumer that hit a fatal error (librdkafka stops such a client) is given up: `receive`
raises, so the worker opens a new consumer instead of polling a dead one for ever."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from eventpipeline.listener.kafka_source import KafkaSource
from eventpipeline.listener.source import SourceError

SECRET = {"bootstrap.servers": "127.0.0.1:9", "username": "listener", "password": "secret"}
FENCED = "Broker: Static consumer fenced by other consumer with same group.instance.id"


class IdleConsumer:
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        return []


def source() -> KafkaSource:
    kafka = KafkaSource("shop.orders", "ep.shop.orders.listener", SECRET, None)
    kafka._consumer = IdleConsumer()  # type: ignore[assignment]  # stands in for an open consumer
    return kafka


@pytest.mark.parametrize(
    "error",
    [
        # as error_cb reports it (seen on the real stack): code _FATAL, no fatal flag
        KafkaError(KafkaError._FATAL, f"Fatal error: {FENCED}"),
        # as a failed call raises it: the broker's code, with the fatal flag
        KafkaError(KafkaError.FENCED_INSTANCE_ID, FENCED, fatal=True),
        # as a commit's callback may carry it: the broker's code alone
        KafkaError(KafkaError.FENCED_INSTANCE_ID, FENCED),
    ],
)
def test_a_fatal_error_makes_receive_ask_for_a_new_consumer(error: KafkaError) -> None:
    kafka = source()
    kafka._on_error(error)

    with pytest.raises(SourceError, match=r"fenced.*opening a new one"):
        kafka.receive(10, 0)


def test_a_transient_error_keeps_the_consumer() -> None:
    kafka = source()
    kafka._on_error(KafkaError(KafkaError._TRANSPORT, "Connection refused"))

    assert kafka.receive(10, 0) == []
    assert kafka.error() == "Kafka: _TRANSPORT: Connection refused"
