"""What a message's run looks like, what Airflow's answer means, retries and replay requests."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from eventpipeline.planning import delivery as planning
from eventpipeline.planning.delivery import Message, Outcome


def message(value: bytes | None = b"hello", key: bytes | None = b"k", offset: int = 7) -> Message:
    return Message(
        topic="shop.orders",
        partition=1,
        position=str(offset),
        run_id=f"ep__shop.orders__1__{offset}",
        key=key,
        value=value,
        headers=(("trace", b"abc"), ("bin", b"\xff\x00")),
        timestamp_ms=1_700_000_000_123,
        offset=offset,
    )


# -- retries ----------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum() -> None:
    delays = [planning.backoff_delay(n, timedelta(seconds=5), timedelta(seconds=60)) for n in range(1, 7)]
    assert delays == [5, 10, 20, 40, 60, 60]
    assert planning.backoff_delay(10_000, timedelta(seconds=1), timedelta(minutes=5)) == 300


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.CREATED),
        (201, Outcome.CREATED),
        (409, Outcome.DUPLICATE),
        (400, Outcome.REFUSED),
        (404, Outcome.REFUSED),
        (422, Outcome.REFUSED),
        (403, Outcome.REFUSED),
        (413, Outcome.REFUSED),
        (415, Outcome.REFUSED),
        (418, Outcome.REFUSED),
        (401, Outcome.TRANSIENT),
        (408, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (None, Outcome.TRANSIENT),
    ],
)
def test_airflow_answers_map_to_what_happens_to_the_message(status: int | None, outcome: Outcome) -> None:
    assert planning.classify(status) is outcome


def test_a_refused_message_is_dead_lettered_after_the_retry_limit() -> None:
    assert not planning.dead_letter_due(1, 2)
    assert not planning.dead_letter_due(2, 2)
    assert planning.dead_letter_due(3, 2)
    assert planning.dead_letter_due(1, 0)


# -- run conf ---------------------------------------------------------------------------------


def test_run_body_has_the_deterministic_id_and_the_message_in_conf() -> None:
    body = planning.dag_run_body(message(), "Kafka")
    assert body["dag_run_id"] == "ep__shop.orders__1__7"
    assert body["logical_date"] is None
    conf = body["conf"]
    assert conf["topic"] == "shop.orders" and conf["partition"] == 1 and conf["offset"] == 7
    assert conf["key"] == "k" and conf["value"] == "hello"
    assert "valueEncoding" not in conf
    assert conf["headers"] == {"trace": "abc", "bin": "base64:" + base64.b64encode(b"\xff\x00").decode()}
    assert conf["timestamp"] == "2023-11-14T22:13:20.123Z"


def test_binary_values_travel_as_base64_and_say_so() -> None:
    conf = planning.run_conf(message(value=b"\x80\x81", key=None), "Pulsar")
    assert conf["value"] == base64.b64encode(b"\x80\x81").decode()
    assert conf["valueEncoding"] == "base64"
    assert conf["key"] is None
    assert "offset" not in conf and conf["messageId"] == "7"


def test_a_value_with_a_nul_byte_travels_as_base64_since_postgresql_refuses_it_in_json() -> None:
    value = b"avro\x00\x02text"  # valid UTF-8, but `\u0000` cannot be stored in Airflow's conf
    conf = planning.run_conf(message(value=value, key=b"k\x00"), "Kafka")
    assert base64.b64decode(conf["value"]) == value and conf["valueEncoding"] == "base64"
    assert base64.b64decode(conf["key"]) == b"k\x00" and conf["keyEncoding"] == "base64"
    assert "\x00" not in str(conf)


def test_overload_answers_are_congestion_and_refusals_are_not() -> None:
    assert all(planning.congested(status) for status in (None, 408, 429, 500, 503, 504))
    assert not any(planning.congested(status) for status in (200, 201, 409, 400, 403, 404, 413, 422))


# -- replay -----------------------------------------------------------------------------------


def test_replay_time_is_rfc3339_with_a_zone() -> None:
    assert planning.parse_replay_from("2026-01-31T12:00:00Z") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert planning.parse_replay_from("2026-01-31T13:00:00+01:00") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    with pytest.raises(planning.ReplayRequestError, match="no time zone"):
        planning.parse_replay_from("2026-01-31T12:00:00")
    with pytest.raises(planning.ReplayRequestError, match="not an RFC 3339 time"):
        planning.parse_replay_from("yesterday")


def test_a_replay_runs_once_per_annotation_value() -> None:
    assert planning.replay_wanted("2026-01-31T12:00:00Z", None)
    assert not planning.replay_wanted("2026-01-31T12:00:00Z", "2026-01-31T12:00:00Z")
    assert planning.replay_wanted("2026-01-31T13:00:00Z", "2026-01-31T12:00:00Z")
    assert not planning.replay_wanted(None, None)
