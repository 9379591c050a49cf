"""Decoding a message with the pipeline's registered schema, into a value Airflow can keep in a
run's `conf`.

The schemas come from the listener hand-off Secret (`planning.schema_versions`); the listener
never calls a registry. Kafka values are in the Confluent wire format (the schema id picks the
version); Pulsar messages say their schema version. AVRO payloads are read with the writer's
schema (fastavro); JSON payloads are parsed and, when the definition is a JSON Schema, validated
against it; PROTOBUF payloads are not decoded (the conf carries them as before, with
`conf.schema`).

What JSON cannot hold as Avro gives it: bytes and fixed become base64 text, decimals exact
decimal text (`"12.30"`), timestamps RFC 3339 text in UTC, dates and times ISO 8601 text, UUIDs
their text, NaN and infinities the text `"NaN"`, `"Infinity"`, `"-Infinity"`. A string with a
NUL character cannot be stored by Airflow's PostgreSQL: such a message is undecodable (it goes
to the dead-letter topic, unchanged) rather than silently altered.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

from eventpipeline.planning.delivery import Decoded, Message
from eventpipeline.planning.schema_versions import (
    SCHEMAS_KEY,
    HandoffError,
    SchemaRef,
    SchemaVersion,
    UndecodableError,
    parse_schemas,
    split_wire_format,
    version_by_id,
    version_by_number,
)

Read = Callable[[bytes], Any]  # payload → decoded value; raises UndecodableError


def decoder_for(handoff: Mapping[str, str], broker_type: Literal["Kafka", "Pulsar"]) -> Decoder | None:
    """The decoder of the schemas in the listener hand-off Secret's data; None when the pipeline
    has no schema. Raises HandoffError when they cannot be used."""
    versions = parse_schemas(handoff.get(SCHEMAS_KEY))
    return Decoder(versions, broker_type) if versions else None


class Decoder:
    """Decodes one pipeline's messages with the versions handed over; built once per connection."""

    def __init__(self, versions: Sequence[SchemaVersion], broker_type: Literal["Kafka", "Pulsar"]) -> None:
        self._versions = tuple(versions)
        self._broker_type = broker_type
        self._readers: dict[int, Read | None] = {}
        for version in self._versions:
            try:
                self._readers[version.version] = _reader(version)
            except Exception as error:  # a definition fastavro or jsonschema cannot compile
                raise HandoffError(
                    f"schema version {version.version} ({version.type}) cannot be read: {type(error).__name__}: {error}"
                ) from error

    def decode(self, message: Message) -> Message:
        """The message with its decoded value and schema; raises UndecodableError (the value as it was
        is kept for the dead-letter topic)."""
        if self._broker_type == "Kafka":
            schema_id, payload = split_wire_format(message.value)
            version = version_by_id(self._versions, schema_id)
        else:
            version = version_by_number(self._versions, message.schema_version)
            payload = message.value or b""
        ref = SchemaRef(version.version, version.id)
        read = self._readers[version.version]
        if read is None:
            return dataclasses.replace(message, decoded=Decoded(ref, payload, raw=True))
        return dataclasses.replace(message, decoded=Decoded(ref, json_safe(read(payload))))


def _reader(version: SchemaVersion) -> Read | None:
    if version.type == "AVRO":
        return _avro_reader(version.definition)
    if version.type == "JSON":
        return _json_reader(version.definition)
    return None  # PROTOBUF: carried as it came


# fastavro and jsonschema load with the first pipeline that has a schema of their type: a listener
# serving none starts without them (their import is a sizeable part of its start on a busy machine).


def _avro_reader(definition: str) -> Read:
    import fastavro  # noqa: PLC0415 - see above

    schema = fastavro.parse_schema(json.loads(definition))

    def read(payload: bytes) -> Any:
        stream = io.BytesIO(payload)
        try:
            value = fastavro.schemaless_reader(stream, schema, None)
        except Exception as error:  # EOFError, StopIteration, UnicodeDecodeError, …: what a bad payload gives
            raise UndecodableError(f"the payload is not AVRO of the schema: {type(error).__name__}: {error}") from error
        left = len(payload) - stream.tell()
        if left:
            raise UndecodableError(f"the payload is not AVRO of the schema: {left} byte(s) left after the record")
        return value

    return read


def _json_reader(definition: str) -> Read:
    import jsonschema.exceptions  # noqa: PLC0415 - see above
    import jsonschema.validators  # noqa: PLC0415

    schema = json.loads(definition)
    # Pulsar's own JSON schemas are Avro record definitions; the broker checked the producer's
    # schema already, so the payload is only parsed. A JSON Schema is checked here.
    validator = None
    if isinstance(schema, dict) and schema.get("type") != "record":
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = cls(schema)

    def read(payload: bytes) -> Any:
        try:
            value = json.loads(payload)
        except ValueError as error:
            raise UndecodableError(f"the payload is not JSON: {error}") from error
        if validator is not None:
            failure = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if failure is not None:
                where = "/".join(str(part) for part in failure.absolute_path) or "(the value)"
                raise UndecodableError(f"the payload does not match the JSON Schema at {where}: {failure.message}")
        return value

    return read


def json_safe(value: Any) -> Any:
    """`value` as JSON that Airflow's PostgreSQL stores; raises UndecodableError for a NUL character."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise UndecodableError("a string in the value contains a NUL character, which Airflow cannot store")
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {json_safe(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    raise UndecodableError(f"the value holds a {type(value).__name__}, which has no JSON form")
