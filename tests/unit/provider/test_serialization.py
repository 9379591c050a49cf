"""How a task's result becomes message bytes."""

from __future__ import annotations

import pytest
from eventpipeline_provider.serialization import encode_key, encode_value, kafka_headers, pulsar_properties


def test_json_publishes_text_and_bytes_as_they_are_and_objects_as_compact_json() -> None:
    assert encode_value("plain") == b"plain"
    assert encode_value(b"\x00raw") == b"\x00raw"
    assert encode_value({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'
    assert encode_value(None) is None


def test_string_and_bytes_serializers_insist_on_their_type() -> None:
    assert encode_value("x", "string") == b"x"
    assert encode_value(b"x", "bytes") == b"x"
    with pytest.raises(TypeError):
        encode_value({"a": 1}, "string")
    with pytest.raises(TypeError):
        encode_value("x", "bytes")


def test_an_unknown_serializer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown serializer"):
        encode_value("x", "avro")  # type: ignore[arg-type]


def test_keys_and_headers() -> None:
    assert encode_key("k") == b"k"
    assert encode_key(None) is None
    assert kafka_headers({"a": "1", "b": b"\xff"}) == [("a", b"1"), ("b", b"\xff")]
    assert pulsar_properties({"a": "1", "b": b"2"}) == {"a": "1", "b": "2"}
