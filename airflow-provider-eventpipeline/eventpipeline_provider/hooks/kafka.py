"""Kafka hook: producers and consumers from a connection the EventPipeline operator keeps.

The operator rotates the credential behind the connection (SCRAM users `<principal>-a` / `-b`
alternate). A client built before a rotation keeps working through the grace period; after
it, the broker refuses the old user. When that happens this hook reads the connection again
and, if it holds a different credential, rebuilds its client and sends once more.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseHook
from confluent_kafka import Consumer, KafkaError, Message, Producer

from eventpipeline_provider.connections import (
    credential_fingerprint,
    is_kafka_refusal,
    kafka_consumer_settings,
    kafka_principal,
    kafka_producer_settings,
    parse_extra,
)
from eventpipeline_provider.errors import CredentialRefusedError, NotAcknowledgedError


@dataclass
class Delivery:
    """What the broker answered for one message."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    error_name: str | None = None


@dataclass
class _Watch:
    """Errors librdkafka reports outside a delivery (a failed SASL login arrives here)."""

    refusal: str | None = None
    errors: list[str] = field(default_factory=list)

    def __call__(self, error: KafkaError) -> None:
        if is_kafka_refusal(error.name()):
            self.refusal = f"{error.name()}: {error.str()}"
        self.errors.append(error.str())


class KafkaHook(BaseHook):
    """Kafka clients from an operator-made `kafka` connection, recovering from a rotation.

    :param kafka_conn_id: the Airflow connection (for an Airflow producer, the one named in the
        pipeline's `producers[].airflowConnection`).
    :param settings: librdkafka settings that override the connection's.
    """

    conn_name_attr = "kafka_conn_id"
    default_conn_name = "kafka_default"
    conn_type = "kafka"
    hook_name = "Kafka (EventPipeline)"

    def __init__(self, kafka_conn_id: str = default_conn_name, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.kafka_conn_id = kafka_conn_id
        self.settings = dict(settings or {})
        self._producer: Producer | None = None
        self._watch = _Watch()
        self._fingerprint: str | None = None
        self.principal: str | None = None

    def connection_extra(self) -> dict[str, Any]:
        """The connection's `extra`, read afresh from Airflow (after a rotation it holds the new user)."""
        return parse_extra(self.get_connection(self.kafka_conn_id).extra)

    def _build_producer(self) -> Producer:
        extra = self.connection_extra()
        self.principal = kafka_principal(extra)
        self._fingerprint = credential_fingerprint(self.principal, str(extra.get("sasl.password", "")))
        self._watch = _Watch()
        settings = kafka_producer_settings(extra, self.settings)
        settings["error_cb"] = self._watch
        self.log.info("Kafka producer for connection %s as %s", self.kafka_conn_id, self.principal)
        return Producer(settings)

    def get_conn(self) -> Producer:
        """The hook's producer (built on first use)."""
        if self._producer is None:
            self._producer = self._build_producer()
        return self._producer

    def get_consumer(self, group_id: str | None = None, **settings: Any) -> Consumer:
        """A consumer from the connection (its `group.id` unless `group_id` is given)."""
        merged = {**kafka_consumer_settings(self.connection_extra(), group_id), **settings}
        return Consumer(merged)

    def _send_once(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, str | bytes | None]],
        timeout: float,
    ) -> Delivery:
        producer = self.get_conn()
        delivery = Delivery(topic)

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                delivery.error, delivery.error_name = error.str(), error.name()
            else:
                delivery.partition, delivery.offset = message.partition(), message.offset()

        producer.produce(topic, value=value, key=key, headers=headers or None, on_delivery=delivered)
        deadline = time.monotonic() + timeout
        while delivery.offset is None and delivery.error is None and time.monotonic() < deadline:
            producer.poll(0.2)
            if self._watch.refusal is not None:
                # A refused login never fails the delivery by itself (librdkafka keeps retrying
                # until message.timeout.ms): stop waiting and let the caller re-read the connection.
                producer.purge()
                producer.poll(0)
                raise CredentialRefusedError(f"Kafka refused {self.principal}: {self._watch.refusal}")
        if delivery.error_name is not None and is_kafka_refusal(delivery.error_name):
            raise CredentialRefusedError(f"Kafka refused {self.principal} on {topic}: {delivery.error}")
        if delivery.offset is None:
            producer.purge()
            producer.poll(0)
            reason = delivery.error or f"no acknowledgement within {timeout:.0f}s"
            recent = f" (client errors: {'; '.join(self._watch.errors[-3:])})" if self._watch.errors else ""
            raise NotAcknowledgedError(f"Kafka did not acknowledge the message to {topic}: {reason}{recent}")
        return delivery

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        timeout: float = 30.0,
    ) -> Delivery:
        """Publish one message and wait until the broker acknowledged it.

        Raises NotAcknowledgedError when it did not; when the broker refused the credential, the
        connection is read again and the message sent once more with the credential it now holds.
        """
        try:
            return self._send_once(topic, value, key, headers or [], timeout)
        except CredentialRefusedError as refused:
            if not self._credential_changed():
                raise
            self.log.warning("%s; the connection holds a new credential now, sending again", refused)
            self.close()
            return self._send_once(topic, value, key, headers or [], timeout)

    def _credential_changed(self) -> bool:
        extra = self.connection_extra()
        fingerprint = credential_fingerprint(kafka_principal(extra), str(extra.get("sasl.password", "")))
        return fingerprint != self._fingerprint

    def close(self) -> None:
        """Drop the producer (the next send builds one from the connection as it is then)."""
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
