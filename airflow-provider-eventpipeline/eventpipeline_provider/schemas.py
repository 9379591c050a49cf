"""Values for a pipeline with a schema, encoded the way its consumers decode them. Pure.

Kafka: the operator registers the pipeline's schema under the subject `<topic>-value` (topic
name strategy) and the listener decodes with the schema id in each message's first five bytes:
magic byte 0, then the id as a 4-byte big-endian integer, then the payload — Avro's binary
encoding, or JSON text for a JSON schema (validated against it before sending).

Pulsar: the schema lives in the broker's own registry, per topic. The payload is the bare Avro
binary encoding (or JSON text), and the producer declares the topic's schema, which the broker
compares with what it holds (byte for byte, since the operator forbids automatic updates); the
message then carries the schema version a consumer decodes it with.
"""

from __future__ import annotations

import base64
import io
import json
import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import jsonschema

from eventpipeline_provider.errors import PublishError

WIRE_MAGIC = b"\x00"


@dataclass(frozen=True)
class RegisteredSchema:
    """One version of a subject, as the registry's `GET /subjects/{s}/versions/latest` answers it."""

    id: int
    version: int
    schema_type: str  # AVRO (the registry leaves it out), JSON, PROTOBUF
    definition: str

    @classmethod
    def from_registry(cls, body: dict[str, Any]) -> RegisteredSchema:
        return cls(int(body["id"]), int(body["version"]), str(body.get("schemaType") or "AVRO"), str(body["schema"]))


def kafka_subject(topic: str) -> str:
    """The subject of a topic's values under the topic name strategy (as the operator registers it)."""
    return f"{topic}-value"


@dataclass(frozen=True)
class TopicSchema:
    """A Pulsar topic's schema as the broker holds it: its type and its definition, exactly as stored."""

    schema_type: str  # AVRO or JSON (Pulsar's JSON schemas are Avro record definitions too)
    definition: str
    name: str = ""


def _avro(value: Any, definition: str) -> bytes:
    import fastavro  # noqa: PLC0415 - the provider's `avro` extra: only pipelines with an Avro schema need it

    schema = fastavro.parse_schema(json.loads(definition))
    buffer = io.BytesIO()
    try:
        fastavro.schemaless_writer(buffer, schema, value)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise PublishError(f"the value does not fit the pipeline's Avro schema: {error}") from error
    return buffer.getvalue()


def _json(value: Any, definition: str) -> bytes:
    try:
        jsonschema.validate(value, json.loads(definition))
    except jsonschema.ValidationError as error:
        raise PublishError(f"the value does not fit the pipeline's JSON schema: {error.message}") from error
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _json_for_avro_record(value: Any, definition: str) -> bytes:
    import fastavro.validation  # noqa: PLC0415 - as in _avro

    try:
        fastavro.validation.validate(value, fastavro.parse_schema(json.loads(definition)), raise_errors=True)
    except fastavro.validation.ValidationError as error:
        problems = "; ".join(str(problem) for problem in error.errors)
        raise PublishError(f"the value does not fit the pipeline's JSON schema: {problems}") from error
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _object(value: Any, schema_type: str) -> Any:
    """A templated value arrives as JSON text: the object it holds."""
    if not isinstance(value, (str, bytes)):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise PublishError(f"a {schema_type} schema needs an object; the value is not JSON") from error


def encode_with_schema(value: Any, schema: RegisteredSchema) -> bytes:
    """The value in the wire format with the schema's id; refused when it does not fit the schema."""
    if schema.schema_type == "AVRO":
        payload = _avro(_object(value, "AVRO"), schema.definition)
    elif schema.schema_type == "JSON":
        payload = _json(_object(value, "JSON"), schema.definition)
    else:
        raise PublishError(f"{schema.schema_type} schemas are not supported: publish bytes (serializer='bytes')")
    return WIRE_MAGIC + schema.id.to_bytes(4, "big") + payload


def encode_for_pulsar(value: Any, schema: TopicSchema) -> bytes:
    """The payload for a Pulsar topic with a schema: Avro binary, or JSON text checked against the
    definition (an Avro record, as Pulsar's JSON schemas are, or a JSON Schema document); refused
    when the value does not fit, before anything is sent."""
    if schema.schema_type == "AVRO":
        return _avro(_object(value, "AVRO"), schema.definition)
    if schema.schema_type == "JSON":
        value = _object(value, "JSON")
        parsed = json.loads(schema.definition)
        if isinstance(parsed, dict) and parsed.get("type") == "record":
            return _json_for_avro_record(value, schema.definition)
        return _json(value, schema.definition)
    raise PublishError(
        f"the topic's {schema.schema_type} schema is not supported: publish bytes you encoded (serializer='bytes')"
    )


def json_safe(value: Any) -> Any:
    """A decoded value as JSON Airflow can keep, by the listener's rules (the provider cannot import
    the operator): bytes as base64, decimals as exact text, timestamps RFC 3339 in UTC, dates, times
    and UUIDs as text, NaN and infinities as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return value if not math.isinf(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    raise ValueError(f"the value holds a {type(value).__name__}, which has no JSON form")


def decode_pulsar_value(payload: bytes, schema: TopicSchema) -> Any:
    """A Pulsar message's value read with the schema version it was written with, as JSON (the
    trigger's events carry it as the listener's runs do); ValueError when it cannot be read."""
    if schema.schema_type == "AVRO":
        import fastavro  # noqa: PLC0415 - as in _avro

        stream = io.BytesIO(payload)
        try:
            value = fastavro.schemaless_reader(stream, fastavro.parse_schema(json.loads(schema.definition)), None)
        except Exception as error:  # EOFError, StopIteration, UnicodeDecodeError, …: what a bad payload gives
            raise ValueError(f"the payload is not Avro of the schema: {type(error).__name__}: {error}") from error
        if stream.tell() != len(payload):
            raise ValueError("the payload is not Avro of the schema: bytes left after the record")
        return json_safe(value)
    if schema.schema_type == "JSON":
        return json.loads(payload)
    raise ValueError(f"{schema.schema_type} payloads are not decoded")
