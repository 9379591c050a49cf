"""Values for a pipeline with a schema: the Confluent wire format a Kafka consumer of it expects. Pure.

The operator registers the pipeline's schema under the subject `<topic>-value` (topic name
strategy) and the listener decodes with the schema id in each message's first five bytes:
magic byte 0, then the id as a 4-byte big-endian integer, then the payload — Avro's binary
encoding, or JSON text for a JSON schema (validated against it before sending).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
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


def encode_with_schema(value: Any, schema: RegisteredSchema) -> bytes:
    """The value in the wire format with the schema's id; refused when it does not fit the schema."""
    if isinstance(value, (str, bytes)) and schema.schema_type in ("AVRO", "JSON"):
        try:
            value = json.loads(value)  # a templated value arrives as JSON text
        except json.JSONDecodeError as error:
            raise PublishError(f"a {schema.schema_type} schema needs an object; the value is not JSON") from error
    if schema.schema_type == "AVRO":
        payload = _avro(value, schema.definition)
    elif schema.schema_type == "JSON":
        payload = _json(value, schema.definition)
    else:
        raise PublishError(f"{schema.schema_type} schemas are not supported: publish bytes (serializer='bytes')")
    return WIRE_MAGIC + schema.id.to_bytes(4, "big") + payload
