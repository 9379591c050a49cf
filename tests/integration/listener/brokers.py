"""Producing and reading test messages with a pipeline's own Secrets (and the admin where needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulsar
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from eventpipeline.adapters.tls import pulsar_tls_options
from eventpipeline.planning.secrets import CA_KEY
from eventpipeline_devenv.clients import kafka_settings

TIMEOUT = 15


def kafka_admin_settings(exports: Mapping[str, str]) -> dict[str, Any]:
    """librdkafka settings of the local Kafka's admin (plain SASL listener)."""
    return kafka_settings(kafka_admin_secret(exports))


def kafka_admin_secret(exports: Mapping[str, str]) -> dict[str, str]:
    """The admin credential in the shape of a pipeline's credentials Secret (`kafka_settings` input)."""
    return {
        "bootstrap.servers": exports["KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "username": exports["KAFKA_ADMIN_USER"],
        "password": exports["KAFKA_ADMIN_PASSWORD"],
    }


def kafka_produce(secret: Mapping[str, str], topic: str, values: Sequence[str]) -> None:
    producer = Producer({**kafka_settings(secret), "message.timeout.ms": 10000})
    errors: list[Any] = []
    for index, value in enumerate(values):
        producer.produce(
            topic,
            value=value.encode(),
            key=f"key-{index % 5}".encode(),
            headers=[("source", b"test")],
            on_delivery=lambda error, _msg: errors.append(error) if error else None,
        )
    assert producer.flush(TIMEOUT) == 0, "messages left undelivered"
    assert not errors, errors


def kafka_read_all(exports: Mapping[str, str], topic: str, expected: int, timeout: float = 30) -> list[Any]:
    """Read a topic from the start with the admin credential (a throw-away group)."""
    import time  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    consumer = Consumer(
        {**kafka_admin_settings(exports), "group.id": f"test-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        consumer.close()
    return found


def kafka_committed(exports: Mapping[str, str], group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets; 0 for a partition it never committed (nothing to commit there)."""
    consumer = Consumer({**kafka_admin_settings(exports), "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=TIMEOUT)
        return {tp.partition: max(tp.offset, 0) for tp in committed}
    finally:
        consumer.close()


def kafka_end_offsets(exports: Mapping[str, str], topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({**kafka_admin_settings(exports), "group.id": "end-offsets-probe"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1] for p in range(partitions)
        }
    finally:
        consumer.close()


def kafka_delete_scram_user(exports: Mapping[str, str], username: str) -> None:
    from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion  # noqa: PLC0415

    admin = AdminClient(kafka_admin_settings(exports))
    deletion = UserScramCredentialDeletion(username, ScramMechanism.SCRAM_SHA_512)
    for future in admin.alter_user_scram_credentials([deletion]).values():
        future.result(timeout=TIMEOUT)


def pulsar_client(secret: Mapping[str, str]) -> pulsar.Client:
    import logging  # noqa: PLC0415

    quiet = logging.getLogger("pulsar-test")
    quiet.setLevel(logging.ERROR)
    # The CA's temporary file (pulsar+ssl://) outlives the client: a few hundred bytes in /tmp, mode 0600.
    tls_options, _ = pulsar_tls_options(secret["serviceUrl"], secret.get(CA_KEY))
    return pulsar.Client(
        secret["serviceUrl"],
        authentication=pulsar.AuthenticationToken(secret["token"]),
        operation_timeout_seconds=10,
        logger=quiet,
        **tls_options,
    )


def pulsar_produce(secret: Mapping[str, str], topic: str, values: Sequence[str]) -> None:
    client = pulsar_client(secret)
    try:
        producer = client.create_producer(topic, batching_enabled=False)
        for index, value in enumerate(values):
            producer.send(value.encode(), partition_key=f"key-{index % 5}", properties={"source": "test"})
        producer.flush()
    finally:
        client.close()
