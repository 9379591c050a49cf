"""Pure decisions of the trigger listener about messages: what a message's run looks like, what
Airflow's answer means, how long to wait before a retry, how many messages a pipeline may hold,
and when a replay is asked for.

No I/O and no client libraries here, so all of it is tested in milliseconds.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal

from eventpipeline.planning.schema_versions import SchemaRef

# -- retries ----------------------------------------------------------------------------------


def backoff_delay(failures: int, backoff: timedelta, max_backoff: timedelta) -> float:
    """Seconds to wait after the `failures`-th failure in a row: backoff doubling up to max_backoff."""
    if failures < 1:
        return 0.0
    base = backoff.total_seconds()
    # Cap the exponent so huge failure counts do not overflow a float.
    delay: float = base * 2.0 ** min(failures - 1, 32)
    return min(delay, max_backoff.total_seconds())


class Outcome(Enum):
    """What an answer from Airflow means for the message."""

    CREATED = "created"  # 200/201: the run exists now
    DUPLICATE = "duplicate"  # 409: the run existed already (a redelivery or a replay)
    TRANSIENT = "transient"  # no answer, 401, 408, 429, 5xx: retry with backoff, hold the position
    REFUSED = "refused"  # any other 4xx: Airflow will not take this message; dead-letter after the limit


# Answers that say "not now" rather than "not this": Airflow (or a proxy in front of it) is down,
# overloaded or timing out, or the token expired (the trigger renews it once itself, so a 401
# that persists is Airflow's auth backend failing, not the message).
TRANSIENT_STATUSES = frozenset({401, 408, 429})
# Of the transient answers, those that say Airflow is overloaded: the listener sends fewer
# requests at once while they come (see `Congestion`).
CONGESTION_STATUSES = frozenset({408, 429})


def classify(status_code: int | None) -> Outcome:
    """Map an HTTP status (None: no answer at all) to what the listener does next.

    Deliberate: 403 (the listener's Airflow user may not trigger the DAG), 413 (too large), 415,
    400, 404, 422 and every other 4xx do not get better by waiting, so they are refusals that
    dead-letter the message after `retry.limit` retries; retrying them forever would wedge the
    partition behind one message.
    """
    if status_code in (200, 201):
        return Outcome.CREATED
    if status_code == 409:
        return Outcome.DUPLICATE
    if status_code is None or status_code in TRANSIENT_STATUSES or status_code >= 500:
        return Outcome.TRANSIENT
    if 400 <= status_code < 500:
        return Outcome.REFUSED
    return Outcome.TRANSIENT  # 1xx/3xx/other 2xx: not an answer the API gives; never drop a message on it


def congested(status_code: int | None) -> bool:
    """Whether an answer says Airflow is overloaded (no answer, 408, 429, 5xx)."""
    return status_code is None or status_code in CONGESTION_STATUSES or status_code >= 500


def dead_letter_due(refusals: int, retry_limit: int) -> bool:
    """After the first attempt and `retry_limit` retries all refused, the message is dead-lettered."""
    return refusals > retry_limit


# -- messages and runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """A message's value as read with the pipeline's registered schema (`listener.decoding`)."""

    schema: SchemaRef
    value: Any  # JSON-safe; with `raw`, the payload's bytes (a schema type the listener does not decode)
    raw: bool = False


@dataclass(frozen=True)
class Message:
    """A message from either broker, in the shape the trigger needs."""

    topic: str  # the pipeline's topic (Pulsar: persistent://tenant/namespace/topic)
    partition: int
    position: str  # Kafka: the offset; Pulsar: ledger:entry:partition:batch
    run_id: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None
    offset: int | None = None  # Kafka only
    token: Any = field(default=None, compare=False)  # the broker's own handle (Pulsar: the message id)
    schema_version: int | None = None  # Pulsar: the schema version the message was written with
    decoded: Decoded | None = field(default=None, compare=False)  # set when the pipeline has a schema


def _text_or_base64(data: bytes | None) -> tuple[str | None, str]:
    """Text when the bytes are UTF-8 without NUL, else base64.

    NUL is valid UTF-8 and common in Avro and Protobuf payloads, but Airflow keeps conf as JSON
    in PostgreSQL, which refuses `\\u0000` (Airflow answers 422): such a value travels as base64.
    """
    if data is None:
        return None, "utf-8"
    if b"\x00" not in data:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), "base64"


def rfc3339_ms(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_conf(message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> dict[str, Any]:
    """The DAG run's `conf`: position, key, value, headers and timestamp of the message.

    Text stays text; bytes that are not UTF-8 travel as base64, said so by `valueEncoding` /
    `keyEncoding`, so a DAG never has to guess. With a schema, `value` is the decoded object and
    `schema` says which registered version it was read with.
    """
    decoded = message.decoded
    if decoded is None or decoded.raw:
        value, value_encoding = _text_or_base64(message.value if decoded is None else decoded.value)
    else:
        value, value_encoding = decoded.value, "utf-8"
    key, key_encoding = _text_or_base64(message.key)
    headers: dict[str, str] = {}
    for name, raw in message.headers:
        text, encoding = _text_or_base64(raw)
        headers[name] = text if encoding == "utf-8" and text is not None else f"base64:{text}"
    conf: dict[str, Any] = {"topic": message.topic, "partition": message.partition}
    if broker_type == "Kafka":
        conf["offset"] = message.offset
    else:
        conf["messageId"] = message.position
    conf.update({"key": key, "value": value, "headers": headers})
    if value_encoding != "utf-8":
        conf["valueEncoding"] = value_encoding
    if key_encoding != "utf-8":
        conf["keyEncoding"] = key_encoding
    conf["timestamp"] = rfc3339_ms(message.timestamp_ms) if message.timestamp_ms else None
    if decoded is not None:
        conf["schema"] = decoded.schema.conf()
    return conf


def dag_run_body(message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> dict[str, Any]:
    """Body of `POST /api/v2/dags/{dag_id}/dagRuns`: the deterministic run id, no logical date."""
    return {"dag_run_id": message.run_id, "logical_date": None, "conf": run_conf(message, broker_type)}


def asset_event_body(message: Message, broker_type: Literal["Kafka", "Pulsar"], asset_id: int) -> dict[str, Any]:
    """Body of `POST /api/v2/assets/events`; the run id travels in `extra` as the event's identity."""
    extra = run_conf(message, broker_type)
    extra["eventId"] = message.run_id
    return {"asset_id": asset_id, "extra": extra}


def pulsar_position(ledger: int, entry: int, partition: int, batch: int) -> str:
    return f"{ledger}:{entry}:{partition}:{batch}"


def window_limit(max_in_flight: int) -> int:
    """Messages a pipeline may hold taken but uncommitted.

    maxInFlight bounds concurrent triggers; the window behind them is larger, so one slow
    answer at the head of a partition does not idle the other trigger slots. Bounded, so a
    message retried for long (Airflow down) holds a bounded amount of memory and redelivery.
    """
    return max(100, 10 * max_in_flight)


# -- replay -----------------------------------------------------------------------------------


class ReplayRequestError(ValueError):
    """The replay-from annotation is not an RFC 3339 time."""


def parse_replay_from(value: str) -> datetime:
    """`2026-11-23T17:00:00Z` (or with an offset) → an aware datetime."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ReplayRequestError(
            f"eventpipeline.dev/replay-from {value!r} is not an RFC 3339 time such as 2026-01-31T12:00:00Z"
        ) from error
    if moment.tzinfo is None:
        raise ReplayRequestError(
            f"eventpipeline.dev/replay-from {value!r} has no time zone; add Z or an offset such as +01:00"
        )
    return moment.astimezone(UTC)


def replay_wanted(annotation: str | None, acted_on: str | None) -> bool:
    """A replay runs once per annotation value: when the value differs from the last acted on."""
    return annotation is not None and annotation.strip() != "" and annotation != acted_on
