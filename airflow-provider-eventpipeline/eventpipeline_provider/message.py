"""The message that started a DAG run, read from `dag_run.conf` (or an asset event's `extra`).

The EventPipeline listener puts each message into the run's `conf` (DagRun mode) or the asset
event's `extra` (AssetEvent mode); this provider's Pulsar trigger puts the same shape into its
trigger event. The keys (see the operator's `planning/delivery.py`):

    topic, partition, offset (Kafka) | messageId (Pulsar), key, value, headers, timestamp,
    valueEncoding / keyEncoding = "base64" when the bytes are not text,
    schema = {"version", "id"} when the pipeline has a schema (then `value` is the decoded object),
    eventId (asset events only: the message's deterministic id).

Header values that are not text travel as "base64:<data>". Everything here is pure: no Airflow.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BASE64_HEADER_PREFIX = "base64:"


class NotAMessageError(ValueError):
    """The mapping is not a message the EventPipeline listener or trigger wrote."""


def _decode(text: Any, encoding: Any, what: str) -> str | bytes | None:
    if text is None:
        return None
    if encoding in (None, "utf-8"):
        return text if isinstance(text, str) else json.dumps(text)
    if encoding == "base64":
        try:
            return base64.b64decode(str(text), validate=True)
        except binascii.Error as error:
            raise NotAMessageError(f"{what} says base64 but is not: {error}") from error
    raise NotAMessageError(f"unknown {what} encoding {encoding!r}")


def _header(value: Any) -> str | bytes:
    text = str(value)
    if text.startswith(BASE64_HEADER_PREFIX):
        try:
            return base64.b64decode(text[len(BASE64_HEADER_PREFIX) :], validate=True)
        except binascii.Error:
            return text  # a text header that happens to start with the prefix
    return text


@dataclass(frozen=True)
class TriggeringMessage:
    """One message of a pipeline's topic, as a DAG sees it.

    `value` is what was published: text as `str`, other bytes as `bytes`, and, for a pipeline
    with a schema, the decoded object. `json()` parses a JSON text value.
    """

    topic: str
    partition: int | None
    key: str | bytes | None
    value: Any
    headers: Mapping[str, str | bytes] = field(default_factory=dict)
    offset: int | None = None  # Kafka
    message_id: str | None = None  # Pulsar: ledger:entry:partition:batch
    timestamp: datetime | None = None
    schema_version: int | None = None
    schema_id: int | None = None
    event_id: str | None = None  # asset events: the message's deterministic id

    @property
    def position(self) -> str:
        """Where the message sits in its topic: `partition:offset` (Kafka) or the Pulsar message id."""
        if self.message_id is not None:
            return self.message_id
        return f"{self.partition}:{self.offset}"

    def json(self) -> Any:
        """The value parsed as JSON (a value a schema decoded already is returned as it is)."""
        if self.schema_version is not None or not isinstance(self.value, (str, bytes)):
            return self.value
        return json.loads(self.value)

    def text(self) -> str:
        """The value as text; bytes that are not UTF-8 raise UnicodeDecodeError."""
        if isinstance(self.value, bytes):
            return self.value.decode("utf-8")
        if isinstance(self.value, str):
            return self.value
        return json.dumps(self.value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def message_from_conf(conf: Mapping[str, Any] | None) -> TriggeringMessage:
    """The message in a run's `conf` or an asset event's `extra` (a trigger event's `payload` too)."""
    if not conf:
        raise NotAMessageError("no message: the run's conf is empty (was the run started by the listener?)")
    if "topic" not in conf and isinstance(conf.get("payload"), Mapping):
        conf = conf["payload"]  # an asset event of a trigger: Airflow wraps the trigger's payload
    if "topic" not in conf or ("value" not in conf and "key" not in conf):
        raise NotAMessageError(f"no message in this mapping (keys: {sorted(conf)}); expected topic, key, value")
    found = conf.get("schema")
    schema: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    value: Any = conf.get("value")
    if not schema:
        value = _decode(value, conf.get("valueEncoding"), "value")
    key = _decode(conf.get("key"), conf.get("keyEncoding"), "key")
    headers = {str(name): _header(raw) for name, raw in (conf.get("headers") or {}).items()}
    return TriggeringMessage(
        topic=str(conf["topic"]),
        partition=_optional_int(conf.get("partition")),
        key=key,
        value=value,
        headers=headers,
        offset=_optional_int(conf.get("offset")),
        message_id=None if conf.get("messageId") is None else str(conf["messageId"]),
        timestamp=_timestamp(conf.get("timestamp")),
        schema_version=_optional_int(schema.get("version")),
        schema_id=_optional_int(schema.get("id")),
        event_id=None if conf.get("eventId") is None else str(conf["eventId"]),
    )


def message_conf(
    topic: str,
    partition: int | None,
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, str],
    *,
    message_id: str | None = None,
    offset: int | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The mapping `message_from_conf` reads, built from a received message (the Pulsar trigger's payload)."""
    conf: dict[str, Any] = {"topic": topic, "partition": partition}
    if message_id is not None:
        conf["messageId"] = message_id
        conf["eventId"] = message_id
    if offset is not None:
        conf["offset"] = offset
    for name, data in (("key", key), ("value", value)):
        text, encoding = _text_or_base64(data)
        conf[name] = text
        if encoding != "utf-8":
            conf[f"{name}Encoding"] = encoding
    conf["headers"] = dict(headers)
    conf["timestamp"] = timestamp
    return conf


def with_decoded_value(conf: Mapping[str, Any], version: int, value: Any) -> dict[str, Any]:
    """The conf of a message read with the schema version it was written with, as the listener
    writes it: `value` the decoded object, `schema` the version (Pulsar versions have no id)."""
    decoded = {key: item for key, item in conf.items() if key != "valueEncoding"}
    decoded["value"] = value
    decoded["schema"] = {"version": version, "id": None}
    return decoded


def _text_or_base64(data: bytes | None) -> tuple[str | None, str]:
    # Same rule as the listener: NUL-free UTF-8 stays text (PostgreSQL's JSON refuses \u0000).
    if data is None:
        return None, "utf-8"
    if b"\x00" not in data:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), "base64"
