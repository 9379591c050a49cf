"""PublishToTopicOperator: a task publishes its result to a pipeline's topic (Kafka or Pulsar)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseHook, BaseOperator, Context

from eventpipeline_provider.connections import parse_extra, registry_url
from eventpipeline_provider.errors import PublishError
from eventpipeline_provider.hooks.kafka import KafkaHook
from eventpipeline_provider.hooks.pulsar import PulsarHook
from eventpipeline_provider.registry import latest_schema
from eventpipeline_provider.schemas import encode_for_pulsar, encode_with_schema
from eventpipeline_provider.serialization import (
    Serializer,
    encode_key,
    encode_value,
    kafka_headers,
    pulsar_properties,
)

PULSAR_CONN_TYPES = frozenset({"pulsar", "generic"})


class PublishToTopicOperator(BaseOperator):
    """Publish one message with the credential in an operator-kept connection; fail unless acknowledged.

    The broker is the connection's: a `kafka` connection publishes to Kafka, a Pulsar one
    (`generic` as the operator writes it, or `pulsar`) to Pulsar. If the broker refuses the
    credential (a rotation finished while the task ran), the hook reads the connection again and
    sends once more; any other failure, or no acknowledgement within `timeout`, fails the task.

    :param conn_id: the Airflow connection the operator keeps for this producer.
    :param topic: the pipeline's topic (`status.topic`; Pulsar: `persistent://tenant/ns/topic`). Templated.
    :param value: what to publish: str and bytes as they are, other values as JSON. Templated
        (an XComArg such as another task's output works too).
    :param key: the message key (Kafka partitioning; Pulsar partition key). Templated.
    :param headers: Kafka headers / Pulsar properties. Templated.
    :param serializer: `json` (default), `string` or `bytes`. A pipeline with a schema (Kafka: a
        registry URL in the connection; Pulsar: a schema in the broker's registry for the topic)
        is encoded with that schema instead, and a value that does not fit it fails the task
        before anything is sent; `bytes` then sends bytes the DAG encoded with the schema itself.
    :param timeout: seconds to wait for the broker's acknowledgement.

    Returns (XCom) where the message landed: topic and partition/offset (Kafka) or messageId (Pulsar).
    """

    template_fields: Sequence[str] = ("topic", "value", "key", "headers")
    ui_color = "#e8f4fb"

    def __init__(
        self,
        *,
        conn_id: str,
        topic: str,
        value: Any,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        serializer: Serializer = "json",
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.topic = topic
        self.value = value
        self.key = key
        self.headers = headers
        self.serializer: Serializer = serializer
        self.timeout = timeout

    def execute(self, context: Context) -> dict[str, Any]:
        connection = BaseHook.get_connection(self.conn_id)
        if connection.conn_type == "kafka":
            extra = parse_extra(connection.extra)
            if registry_url(extra) is not None and self.serializer != "bytes":
                # The pipeline has a schema: its consumers decode the wire format with the schema id.
                schema = latest_schema(extra, self.topic)
                self.log.info("encoding with schema version %s (id %s, %s)", schema.version, schema.id,
                              schema.schema_type)  # fmt: skip
                return self._kafka(encode_with_schema(self.value, schema))
            return self._kafka(encode_value(self.value, self.serializer))
        if connection.conn_type in PULSAR_CONN_TYPES:
            return self._pulsar()
        raise PublishError(
            f"connection {self.conn_id} is of type {connection.conn_type!r}; expected kafka, or pulsar/generic"
        )

    def _kafka(self, payload: bytes | None) -> dict[str, Any]:
        hook = KafkaHook(self.conn_id)
        try:
            delivery = hook.send(self.topic, payload, encode_key(self.key), kafka_headers(self.headers), self.timeout)
        finally:
            hook.close()
        self.log.info("published to %s [%s] at offset %s as %s", self.topic, delivery.partition, delivery.offset,
                      hook.principal)  # fmt: skip
        return {"topic": self.topic, "partition": delivery.partition, "offset": delivery.offset}

    def _pulsar(self) -> dict[str, Any]:
        hook = PulsarHook(self.conn_id)
        key = self.key.decode("utf-8") if isinstance(self.key, bytes) else self.key
        try:
            # A topic with a schema in Pulsar's registry takes only producers declaring it: the
            # value is encoded with it (refused here when it does not fit, before anything is sent).
            schema = hook.topic_schema(self.topic)
            if schema is None:
                payload = encode_value(self.value, self.serializer) or b""
            elif self.serializer == "bytes":
                payload = encode_value(self.value, "bytes") or b""  # encoded by the DAG with the schema
            else:
                self.log.info("encoding with the topic's %s schema", schema.schema_type)
                payload = encode_for_pulsar(self.value, schema)
            properties = pulsar_properties(self.headers)
            message_id = hook.send(self.topic, payload, key, properties, self.timeout, schema=schema)
        finally:
            hook.close()
        position = (
            f"{message_id.ledger_id()}:{message_id.entry_id()}:{message_id.partition()}:{message_id.batch_index()}"
        )
        self.log.info("published to %s at %s as role %s", self.topic, position, hook.role)
        return {"topic": self.topic, "partition": message_id.partition(), "messageId": position}
