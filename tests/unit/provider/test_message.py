"""The triggering-message helper reads exactly what the listener writes into a run's conf."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eventpipeline_provider.message import NotAMessageError, message_conf, message_from_conf, with_decoded_value

from eventpipeline.planning.delivery import Decoded, Message, asset_event_body, rfc3339_ms, run_conf
from eventpipeline.planning.schema_versions import SchemaRef


def _message(
    value: bytes | None, key: bytes | None = b"order-1", headers: tuple[tuple[str, bytes], ...] = ()
) -> Message:
    return Message(
        topic="shop.orders",
        partition=2,
        position="17",
        run_id="shop.orders-2-17",
        key=key,
        value=value,
        headers=headers,
        timestamp_ms=1_790_000_000_123,
        offset=17,
    )


def test_a_kafka_run_conf_reads_back_as_the_message_that_was_sent() -> None:
    conf = run_conf(_message(b'{"order": 1}', headers=(("source", b"checkout"),)), "Kafka")
    message = message_from_conf(conf)
    assert message.topic == "shop.orders"
    assert (message.partition, message.offset, message.position) == (2, 17, "2:17")
    assert message.key == "order-1"
    assert message.value == '{"order": 1}'
    assert message.json() == {"order": 1}
    assert message.headers == {"source": "checkout"}
    assert message.timestamp == datetime(2026, 9, 21, 14, 13, 20, 123000, tzinfo=UTC)
    assert message.schema_version is None


def test_binary_value_key_and_header_come_back_as_the_same_bytes() -> None:
    binary = b"\x00\xff\x10avro"
    conf = run_conf(_message(binary, key=b"\x00k", headers=(("trace", b"\xff\x00"),)), "Kafka")
    message = message_from_conf(conf)
    assert message.value == binary
    assert message.key == b"\x00k"
    assert message.headers == {"trace": b"\xff\x00"}


def test_a_pulsar_run_conf_has_its_message_id_as_position() -> None:
    conf = run_conf(_message(b"hello"), "Pulsar")
    message = message_from_conf(conf)
    assert message.message_id == "17"
    assert message.position == "17"
    assert message.text() == "hello"


def test_an_asset_event_extra_of_the_listener_carries_the_event_id() -> None:
    extra = asset_event_body(_message(b"1"), "Kafka", asset_id=3)["extra"]
    message = message_from_conf(extra)
    assert message.event_id == "shop.orders-2-17"
    assert message.json() == 1


def test_a_decoded_schema_value_is_kept_as_the_object_with_its_version() -> None:
    conf = {"topic": "t", "partition": 0, "offset": 1, "key": None, "value": {"id": 7},
            "headers": {}, "timestamp": None, "schema": {"version": 3, "id": 12}}  # fmt: skip
    message = message_from_conf(conf)
    assert message.value == {"id": 7}
    assert message.json() == {"id": 7}
    assert (message.schema_version, message.schema_id) == (3, 12)


def test_a_trigger_payload_wrapped_by_airflow_is_unwrapped() -> None:
    payload = message_conf("persistent://eventpipeline/demo/demo.results", 0, None, b'{"ok": true}', {"a": "b"},
                           message_id="5:3:0:-1", timestamp="2026-11-30T17:00:00.000Z")  # fmt: skip
    message = message_from_conf({"from_trigger": True, "payload": payload})
    assert message.message_id == message.event_id == "5:3:0:-1"
    assert message.json() == {"ok": True}
    assert message.headers == {"a": "b"}


@pytest.mark.parametrize("conf", [None, {}, {"something": "else"}, {"topic": "t"}])
def test_a_run_not_started_by_a_message_is_refused_with_a_clear_error(conf: dict[str, object] | None) -> None:
    with pytest.raises(NotAMessageError):
        message_from_conf(conf)


def test_a_value_that_claims_base64_but_is_not_is_refused() -> None:
    with pytest.raises(NotAMessageError, match="base64"):
        message_from_conf({"topic": "t", "value": "***", "valueEncoding": "base64"})


# The provider is a distribution of its own and cannot import the operator: its Pulsar trigger
# builds the run-conf shape again. These pin the two to the same mapping for the same message.
@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (b"order-1", b'{"order": 1}', {"source": "checkout"}),
        (None, b"\x00\xff\x10avro", {}),  # NUL and not UTF-8: base64
        (b"\x00k", b"caf\xc3\xa9", {"a": "b", "trace": "x"}),
        (None, None, {}),
    ],
)
def test_the_pulsar_trigger_builds_the_same_conf_as_the_listener(
    key: bytes | None, value: bytes | None, headers: dict[str, str]
) -> None:
    message = Message(
        topic="persistent://eventpipeline/shop/shop.orders",
        partition=0,
        position="12:3:0:-1",
        run_id="ep__shop.orders__12-3-0--1",
        key=key,
        value=value,
        headers=tuple((name, text.encode()) for name, text in headers.items()),
        timestamp_ms=1_790_000_000_123,
    )
    listener = asset_event_body(message, "Pulsar", asset_id=1)["extra"]
    trigger = message_conf(
        message.topic, 0, key, value, headers, message_id=message.position, timestamp=rfc3339_ms(1_790_000_000_123)
    )
    # The one documented difference: an asset event's id is the listener's run id, the trigger's the message id.
    assert listener.pop("eventId") == message.run_id
    assert trigger.pop("eventId") == message.position
    assert trigger == listener


def test_a_message_the_trigger_decoded_has_the_listeners_conf() -> None:
    record = {"order": 1, "note": "x"}
    message = Message(
        topic="persistent://eventpipeline/shop/shop.orders",
        partition=0,
        position="12:3:0:-1",
        run_id="ep__shop.orders__12-3-0--1",
        key=None,
        value=b"\x02\x02x",
        headers=(),
        timestamp_ms=1_790_000_000_123,
        schema_version=4,
        decoded=Decoded(SchemaRef(4, None), record),
    )
    listener = run_conf(message, "Pulsar")
    raw = message_conf(message.topic, 0, None, message.value, {}, message_id=message.position,
                       timestamp=rfc3339_ms(1_790_000_000_123))  # fmt: skip
    trigger = with_decoded_value(raw, 4, record)
    assert trigger.pop("eventId") == message.position
    assert trigger == listener
    read = message_from_conf(trigger)
    assert (read.value, read.schema_version, read.json()) == (record, 4, record)
