"""The chaos harness's Kafka producer repairs a client it gives up: whatever that client left
undelivered is produced again by a fresh one, and the topic ends with every value exactly once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.chaos.kafka_writer import BrokerFaults, KafkaWriter, read_values
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.listener.brokers import kafka_admin_secret, kafka_admin_settings

pytestmark = pytest.mark.integration
PARTITIONS = 2


@pytest.fixture
def topic(stack: Any) -> Iterator[str]:
    admin = AdminClient(kafka_admin_settings(stack.exports))
    name = f"chaos-writer-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def test_a_client_given_up_mid_stream_is_replaced_and_every_value_lands_once(
    stack: Any, topic: str, tmp_path: Path
) -> None:
    exports = dict(stack.exports)
    admin = kafka_admin_secret(exports)
    writer = KafkaWriter(admin, exports, topic, PARTITIONS, faults=BrokerFaults(), log_path=tmp_path / "writer.log")
    values = [f"value-{index}" for index in range(200)]

    for index, value in enumerate(values[:100]):
        writer.send(index, value)
    # Given up while messages are queued or in flight: those are purged and must come again.
    writer.replace_client("given up by the test")
    for index, value in enumerate(values[100:], start=100):
        writer.send(index, value)
    writer.finish()

    assert writer.errors == []
    assert read_values(exports, topic, PARTITIONS, timeout=60) == Counter(values)
    assert len(writer.repairs) == 1 and "given up by the test: client closed; the topic held" in writer.repairs[0]
