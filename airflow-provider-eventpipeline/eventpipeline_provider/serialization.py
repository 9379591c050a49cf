"""How a task's result becomes the bytes of a message. Pure.

`json` (the default) publishes text and bytes as they are and any other value as JSON;
`string` and `bytes` insist on that type. A pipeline with a schema (Kafka: a registry URL in its
connection; Pulsar: a schema in the broker's registry for the topic) is encoded with that schema
instead: see `schemas.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

Serializer = Literal["json", "string", "bytes"]
SERIALIZERS: tuple[Serializer, ...] = ("json", "string", "bytes")


def encode_value(value: Any, serializer: Serializer = "json") -> bytes | None:
    """The message bytes for a value (None stays None: a tombstone on a compacted Kafka topic)."""
    if value is None:
        return None
    if serializer == "bytes":
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"serializer 'bytes' needs bytes, got {type(value).__name__}")
        return bytes(value)
    if serializer == "string":
        if not isinstance(value, str):
            raise TypeError(f"serializer 'string' needs str, got {type(value).__name__}")
        return value.encode("utf-8")
    if serializer != "json":
        raise ValueError(f"unknown serializer {serializer!r}; one of {', '.join(SERIALIZERS)}")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str).encode("utf-8")


def encode_key(key: str | bytes | None) -> bytes | None:
    """Keys are text or bytes; text is UTF-8."""
    if key is None or isinstance(key, bytes):
        return key
    return str(key).encode("utf-8")


def kafka_headers(headers: Mapping[str, str | bytes] | None) -> list[tuple[str, str | bytes | None]]:
    """Kafka headers as (name, bytes) pairs."""
    return [
        (str(name), value if isinstance(value, bytes) else str(value).encode())
        for name, value in (headers or {}).items()
    ]


def pulsar_properties(headers: Mapping[str, str | bytes] | None) -> dict[str, str]:
    """Pulsar properties are text only: bytes that are not UTF-8 are refused, not mangled."""
    properties: dict[str, str] = {}
    for name, value in (headers or {}).items():
        properties[str(name)] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return properties
