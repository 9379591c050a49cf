"""Decoding with the registered schema: Avro and JSON Schema, the Confluent wire format on Kafka,
the schema version on Pulsar, and what cannot be decoded. No servers."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from eventpipeline.listener.decoding import Decoder, decoder_for, json_safe
from eventpipeline.planning.delivery import Message, run_conf
from eventpipeline.planning.schema_versions import (
    HandoffError,
    SchemaRef,
    SchemaVersion,
    UndecodableError,
    schemas_json,
)

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}],
}
ORDER_V2 = {
    "type": "record",
    "name": "Order",
    "fields": [*ORDER_V1["fields"], {"name": "note", "type": ["null", "string"], "default": None}],
}
KAFKA = [
    SchemaVersion(version=1, id=11, type="AVRO", definition=json.dumps(ORDER_V1)),
    SchemaVersion(version=2, id=12, type="AVRO", definition=json.dumps(ORDER_V2)),
]
JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
    "required": ["id", "item"],
}


def avro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def wire(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def message(value: bytes | None, schema_version: int | None = None) -> Message:
    return Message("t", 0, "5", "run-0-5", None, value, (), None, offset=5, schema_version=schema_version)


def test_a_kafka_message_is_read_with_the_version_its_schema_id_names() -> None:
    decoder = Decoder(KAFKA, "Kafka")
    v1 = decoder.decode(message(wire(11, avro(ORDER_V1, {"id": 1, "item": "tea"}))))
    v2 = decoder.decode(message(wire(12, avro(ORDER_V2, {"id": 2, "item": "pot", "note": "gift"}))))
    assert v1.decoded is not None and v2.decoded is not None
    assert (v1.decoded.schema, v1.decoded.value) == (SchemaRef(1, 11), {"id": 1, "item": "tea"})
    assert (v2.decoded.schema, v2.decoded.value) == (SchemaRef(2, 12), {"id": 2, "item": "pot", "note": "gift"})


def test_the_run_conf_keeps_its_keys_with_the_decoded_value_and_the_schema() -> None:
    raw = message(wire(12, avro(ORDER_V2, {"id": 2, "item": "pot", "note": None})))
    conf = run_conf(Decoder(KAFKA, "Kafka").decode(raw), "Kafka")
    before = run_conf(raw, "Kafka")
    assert set(conf) == (set(before) - {"valueEncoding"}) | {"schema"}
    assert conf["value"] == {"id": 2, "item": "pot", "note": None}
    assert conf["schema"] == {"version": 2, "id": 12}
    assert "valueEncoding" not in conf and before["valueEncoding"] == "base64"
    json.dumps(conf, allow_nan=False)


def test_a_pulsar_message_is_read_with_the_version_it_carries() -> None:
    versions = [
        SchemaVersion(version=0, type="AVRO", definition=json.dumps(ORDER_V1)),
        SchemaVersion(version=1, type="AVRO", definition=json.dumps(ORDER_V2)),
    ]
    decoded = Decoder(versions, "Pulsar").decode(message(avro(ORDER_V1, {"id": 3, "item": "cup"}), schema_version=0))
    assert decoded.decoded is not None
    assert (decoded.decoded.schema, decoded.decoded.value) == (SchemaRef(0, None), {"id": 3, "item": "cup"})
    assert run_conf(decoded, "Pulsar")["schema"] == {"version": 0, "id": None}


def test_json_is_parsed_and_checked_against_its_json_schema() -> None:
    versions = [SchemaVersion(version=1, id=21, type="JSON", definition=json.dumps(JSON_SCHEMA))]
    decoder = Decoder(versions, "Kafka")
    good = decoder.decode(message(wire(21, b'{"id": 4, "item": "jug"}')))
    assert good.decoded is not None and good.decoded.value == {"id": 4, "item": "jug"}
    with pytest.raises(UndecodableError, match="does not match the JSON Schema at id: 'four' is not of type"):
        decoder.decode(message(wire(21, b'{"id": "four", "item": "jug"}')))
    with pytest.raises(UndecodableError, match="not JSON"):
        decoder.decode(message(wire(21, b"{id: 4")))


def test_pulsar_json_with_an_avro_shaped_definition_is_parsed_only() -> None:
    versions = [SchemaVersion(version=0, type="JSON", definition=json.dumps(ORDER_V1))]
    decoded = Decoder(versions, "Pulsar").decode(message(b'{"id": 5, "item": "mug"}', schema_version=0))
    assert decoded.decoded is not None and decoded.decoded.value == {"id": 5, "item": "mug"}


@pytest.mark.parametrize(
    ("value", "says", "retriable"),
    [
        (wire(99, b"\x02\x06tea"), "schema id 99 is not a registered version", True),
        (b'{"id": 1}', "magic byte 0", False),
        (wire(11, b"\x02"), "not AVRO of the schema", False),  # truncated: the string is missing
        (wire(11, avro(ORDER_V1, {"id": 1, "item": "tea"}) + b"\x00\x01"), "2 byte\\(s\\) left", False),
        (wire(11, b"\x02\x04\xff\xfe"), "not AVRO of the schema", False),  # a string that is not UTF-8
        (None, "tombstone", False),
    ],
)
def test_what_does_not_decode_says_why(value: bytes | None, says: str, retriable: bool) -> None:
    with pytest.raises(UndecodableError, match=says) as raised:
        Decoder(KAFKA, "Kafka").decode(message(value))
    assert raised.value.retriable is retriable


def test_a_pulsar_version_not_handed_over_may_come_later() -> None:
    versions = [SchemaVersion(version=0, type="AVRO", definition=json.dumps(ORDER_V1))]
    with pytest.raises(UndecodableError, match="version 3 is not a registered version") as raised:
        Decoder(versions, "Pulsar").decode(message(b"", schema_version=3))
    assert raised.value.retriable


def test_avro_types_without_a_json_form_get_a_stated_one() -> None:
    schema = {
        "type": "record",
        "name": "Payment",
        "fields": [
            {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
            {"name": "blob", "type": "bytes"},
            {"name": "ratio", "type": "double"},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["CARD", "CASH"]}},
        ],
    }
    ref = uuid.UUID("12345678-1234-5678-1234-567812345678")
    record = {
        "amount": Decimal("12.30"),
        "at": datetime(2026, 11, 30, 12, 0, 1, 250000, tzinfo=UTC),
        "day": date(2026, 11, 30),
        "ref": ref,
        "digest": b"\x00\x01\x02\x03",
        "blob": b"\x00hi",
        "ratio": float("nan"),
        "kind": "CARD",
    }
    versions = [SchemaVersion(version=1, id=1, type="AVRO", definition=json.dumps(schema))]
    decoded = Decoder(versions, "Kafka").decode(message(wire(1, avro(schema, record))))
    assert decoded.decoded is not None
    assert decoded.decoded.value == {
        "amount": "12.30",
        "at": "2026-11-30T12:00:01.250000Z",
        "day": "2026-11-30",
        "ref": str(ref),
        "digest": "AAECAw==",
        "blob": "AGhp",
        "ratio": "NaN",
        "kind": "CARD",
    }
    json.dumps(decoded.decoded.value, allow_nan=False)


def test_a_string_with_nul_is_refused_rather_than_changed() -> None:
    with pytest.raises(UndecodableError, match="NUL"):
        json_safe({"note": "a\x00b"})
    assert json_safe([float("inf"), -float("inf"), 1.5]) == ["Infinity", "-Infinity", 1.5]


def test_protobuf_is_carried_as_it_came_with_its_schema() -> None:
    versions = [SchemaVersion(version=1, id=31, type="PROTOBUF", definition='syntax = "proto3";')]
    decoded = Decoder(versions, "Kafka").decode(message(wire(31, b"\x00\x08\x01")))
    conf = run_conf(decoded, "Kafka")
    assert conf["value"] == "AAgB" and conf["valueEncoding"] == "base64"
    assert conf["schema"] == {"version": 1, "id": 31}


def test_the_handoff_without_schemas_decodes_nothing_and_a_broken_definition_is_refused() -> None:
    assert decoder_for({"token": "x"}, "Kafka") is None
    assert decoder_for({"schemas.json": "[]"}, "Kafka") is None
    assert decoder_for({"schemas.json": schemas_json(KAFKA)}, "Kafka") is not None
    broken = SchemaVersion(version=1, type="AVRO", definition='{"type": "nope"}')
    with pytest.raises(HandoffError, match="schema version 1 \\(AVRO\\) cannot be read"):
        decoder_for({"schemas.json": schemas_json([broken])}, "Kafka")
