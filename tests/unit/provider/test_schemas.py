"""Values for a pipeline with a schema come out in the wire format the listener decodes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import fastavro
import pytest
from eventpipeline_provider.errors import PublishError
from eventpipeline_provider.schemas import (
    RegisteredSchema,
    TopicSchema,
    decode_pulsar_value,
    encode_for_pulsar,
    encode_with_schema,
    kafka_subject,
)

from eventpipeline.listener.decoding import Decoder
from eventpipeline.planning.delivery import Message
from eventpipeline.planning.schema_versions import SchemaVersion, split_wire_format

ORDER_AVRO = json.dumps({
    "type": "record", "name": "Order",
    "fields": [{"name": "order", "type": "string"}, {"name": "total", "type": "double"}],
})  # fmt: skip
ORDER_JSON = json.dumps({"type": "object", "required": ["order"], "properties": {"order": {"type": "string"}}})


def test_an_avro_value_carries_the_schema_id_and_reads_back_with_the_schema() -> None:
    data = encode_with_schema({"order": "o-1", "total": 12.5}, RegisteredSchema(41, 2, "AVRO", ORDER_AVRO))
    schema_id, payload = split_wire_format(data)
    assert schema_id == 41
    decoded = fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(json.loads(ORDER_AVRO)))
    assert decoded == {"order": "o-1", "total": 12.5}


def test_a_templated_value_arrives_as_json_text_and_is_encoded_as_the_object() -> None:
    data = encode_with_schema('{"order": "o-2", "total": 1}', RegisteredSchema(1, 1, "AVRO", ORDER_AVRO))
    assert split_wire_format(data)[0] == 1


def test_a_json_schema_value_is_validated_and_sent_as_json() -> None:
    data = encode_with_schema({"order": "o-3"}, RegisteredSchema(7, 1, "JSON", ORDER_JSON))
    assert split_wire_format(data) == (7, b'{"order":"o-3"}')
    with pytest.raises(PublishError, match="JSON schema"):
        encode_with_schema({"total": 3}, RegisteredSchema(7, 1, "JSON", ORDER_JSON))


def test_a_value_that_does_not_fit_the_avro_schema_is_refused_before_sending() -> None:
    with pytest.raises(PublishError, match="Avro schema"):
        encode_with_schema({"order": "o-4"}, RegisteredSchema(1, 1, "AVRO", ORDER_AVRO))


def test_protobuf_is_refused_with_what_to_do() -> None:
    with pytest.raises(PublishError, match="serializer='bytes'"):
        encode_with_schema({"a": 1}, RegisteredSchema(1, 1, "PROTOBUF", "syntax = 'proto3';"))


def test_the_subject_is_the_topic_name_strategy() -> None:
    assert kafka_subject("shop.orders") == "shop.orders-value"


def test_the_registry_answer_without_a_type_is_avro() -> None:
    schema = RegisteredSchema.from_registry({"id": 3, "version": 2, "schema": ORDER_AVRO})
    assert (schema.id, schema.version, schema.schema_type) == (3, 2, "AVRO")


def test_a_pulsar_avro_value_is_the_bare_avro_encoding() -> None:
    data = encode_for_pulsar({"order": "o-5", "total": 2.5}, TopicSchema("AVRO", ORDER_AVRO))
    decoded = fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(json.loads(ORDER_AVRO)))
    assert decoded == {"order": "o-5", "total": 2.5}
    assert encode_for_pulsar('{"order": "o-5", "total": 2.5}', TopicSchema("AVRO", ORDER_AVRO)) == data


def test_a_pulsar_value_that_does_not_fit_its_avro_schema_is_refused_before_sending() -> None:
    with pytest.raises(PublishError, match="Avro schema"):
        encode_for_pulsar({"order": 5, "total": "many"}, TopicSchema("AVRO", ORDER_AVRO))
    with pytest.raises(PublishError, match="not JSON"):
        encode_for_pulsar("not json", TopicSchema("AVRO", ORDER_AVRO))


def test_a_pulsar_json_schema_is_an_avro_record_the_value_is_checked_against() -> None:
    assert encode_for_pulsar({"total": 1.0, "order": "o-6"}, TopicSchema("JSON", ORDER_AVRO)) == (
        b'{"order":"o-6","total":1.0}'
    )
    with pytest.raises(PublishError, match=r"JSON schema: Field\(Order.total\)"):
        encode_for_pulsar({"order": "o-6"}, TopicSchema("JSON", ORDER_AVRO))
    assert encode_for_pulsar({"order": "o-7"}, TopicSchema("JSON", ORDER_JSON)) == b'{"order":"o-7"}'


def test_other_pulsar_schema_types_say_to_publish_bytes() -> None:
    with pytest.raises(PublishError, match="serializer='bytes'"):
        encode_for_pulsar({"a": 1}, TopicSchema("PROTOBUF_NATIVE", "…"))


def test_the_trigger_decodes_a_pulsar_avro_payload_as_the_listener_does() -> None:
    schema = json.dumps({
        "type": "record", "name": "R",
        "fields": [
            {"name": "order", "type": "string"}, {"name": "blob", "type": "bytes"},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}},
        ],
    })  # fmt: skip
    record = {"order": "o-9", "blob": b"\x00\x01", "at": datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
              "price": Decimal("12.30")}  # fmt: skip
    payload = io.BytesIO()
    fastavro.schemaless_writer(payload, fastavro.parse_schema(json.loads(schema)), record)
    decoded = decode_pulsar_value(payload.getvalue(), TopicSchema("AVRO", schema))
    version = SchemaVersion(version=0, type="AVRO", definition=schema)
    message = Message("t", 0, "1:1:0:-1", "r", None, payload.getvalue(), (), None, schema_version=0)
    listener = Decoder([version], "Pulsar").decode(message).decoded
    assert listener is not None and decoded == listener.value
    assert decoded == {"order": "o-9", "blob": "AAE=", "at": "2026-11-30T12:00:00Z", "price": "12.30"}
    with pytest.raises(ValueError, match="not Avro of the schema"):
        decode_pulsar_value(payload.getvalue() + b"\x00", TopicSchema("AVRO", schema))
    assert decode_pulsar_value(b'{"order": "o-1"}', TopicSchema("JSON", ORDER_JSON)) == {"order": "o-1"}
