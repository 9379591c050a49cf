"""Pure decisions of the trigger listener: who serves a pipeline, what a message's run looks like,
how long to wait before a retry, what Airflow's answer means, and what may be committed.

No I/O and no client libraries here, so all of it is tested in milliseconds.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal

from pydantic import ValidationError

from eventpipeline.api.common import GROUP, AirflowInstanceRef
from eventpipeline.api.pipeline import (
    LISTENER_PRINCIPAL,
    EventPipelineSpec,
    ListenerStatus,
    TriggerSpec,
)
from eventpipeline.planning import naming

REPLAY_ANNOTATION = f"{GROUP}/replay-from"
BrokerType = Literal["Kafka", "Pulsar"]

# -- sharding ---------------------------------------------------------------------------------


def owner_replica(pipeline_key: str, replicas: int) -> int:
    """The replica (0-based) that serves a pipeline, by rendezvous (highest random weight) hashing.

    Consistent: growing from R to R+1 replicas moves only the pipelines the new replica wins
    (about 1/(R+1) of them); every other pipeline keeps its replica, and its consumer.
    """
    if replicas < 1:
        raise ValueError("replicas must be at least 1")

    def weight(replica: int) -> int:
        digest = hashlib.sha256(f"{pipeline_key}#{replica}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    return max(range(replicas), key=weight)


@dataclass(frozen=True)
class Shard:
    """Which pipelines this listener process serves."""

    replicas: int = 1
    index: int = 0
    dedicated: frozenset[str] = frozenset()  # namespace/name; non-empty: serve only these

    def serves(self, pipeline_key: str, wants_dedicated: bool) -> bool:
        """Dedicated listeners serve exactly their pipelines; shared replicas split the rest."""
        if self.dedicated:
            return pipeline_key in self.dedicated
        if wants_dedicated:
            return False
        return owner_replica(pipeline_key, self.replicas) == self.index

    @property
    def name(self) -> str:
        if self.dedicated:
            return "dedicated:" + ",".join(sorted(self.dedicated))
        return f"{self.index}/{self.replicas}"


def replica_index_from_hostname(hostname: str) -> int | None:
    """A StatefulSet pod's ordinal: `eventpipeline-listener-3` → 3."""
    match = re.search(r"-(\d+)$", hostname)
    return int(match.group(1)) if match else None


# -- which pipelines get a worker ----------------------------------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    """What a worker needs from an EventPipeline; a change to any of it restarts the worker."""

    namespace: str
    name: str
    uid: str
    broker_type: BrokerType
    topic: str  # as resolved in status.topic (Pulsar: persistent://tenant/namespace/topic)
    dead_letter_topic: str | None
    group: str  # Kafka consumer group / Pulsar subscription
    secret_name: str
    trigger: TriggerSpec
    airflow_ref: AirflowInstanceRef

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Wanted:
    """A pipeline this listener should serve, as it stands now."""

    config: PipelineConfig
    dedicated: bool
    replay_annotation: str | None
    previous: ListenerStatus | None


def wanted_pipeline(body: Mapping[str, Any]) -> Wanted | str:
    """The worker a pipeline object calls for, or why it calls for none (yet)."""
    metadata = body.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return "being deleted"
    try:
        spec = EventPipelineSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return f"spec invalid: {error.errors()[0]['msg']}"
    if spec.suspend:
        return "suspended"
    if spec.airflow is None or spec.airflow.trigger is None:
        return "no airflow.trigger"
    status = body.get("status") or {}
    topic, broker_type = status.get("topic"), status.get("brokerType")
    listener = next(
        (p for p in status.get("principals") or [] if p.get("name") == LISTENER_PRINCIPAL and p.get("secretName")),
        None,
    )
    if not topic or broker_type not in ("Kafka", "Pulsar") or listener is None:
        return "waiting for the operator to resolve the topic and issue the listener credential"
    namespace, name = metadata["namespace"], metadata["name"]
    trigger = spec.airflow.trigger
    previous = None
    if status.get("listener"):
        try:
            previous = ListenerStatus.model_validate(status["listener"])
        except ValidationError:
            previous = None
    config = PipelineConfig(
        namespace=namespace,
        name=name,
        uid=metadata.get("uid", ""),
        broker_type=broker_type,
        topic=topic,
        dead_letter_topic=naming.dead_letter_topic(topic) if trigger.dead_letter.enabled else None,
        group=naming.consumer_group(namespace, name, LISTENER_PRINCIPAL),
        secret_name=str(listener["secretName"]),
        trigger=trigger,
        airflow_ref=spec.airflow.instance_ref,
    )
    annotations = metadata.get("annotations") or {}
    return Wanted(config, spec.listener.dedicated, annotations.get(REPLAY_ANNOTATION), previous)


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
    TRANSIENT = "transient"  # Airflow down, 5xx, 401/403/429, timeout: retry, hold the position
    REFUSED = "refused"  # 400/404/422: Airflow will not take this message; dead-letter after the limit


def classify(status_code: int | None) -> Outcome:
    """Map an HTTP status (None: no answer at all) to what the listener does next."""
    if status_code in (200, 201):
        return Outcome.CREATED
    if status_code == 409:
        return Outcome.DUPLICATE
    if status_code in (400, 404, 422):
        return Outcome.REFUSED
    return Outcome.TRANSIENT


def dead_letter_due(refusals: int, retry_limit: int) -> bool:
    """After the first attempt and `retry_limit` retries all refused, the message is dead-lettered."""
    return refusals > retry_limit


# -- messages and runs ------------------------------------------------------------------------


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


def _text_or_base64(data: bytes | None) -> tuple[str | None, str]:
    if data is None:
        return None, "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def rfc3339_ms(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_conf(message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> dict[str, Any]:
    """The DAG run's `conf`: position, key, value, headers and timestamp of the message.

    Text stays text; bytes that are not UTF-8 travel as base64, said so by `valueEncoding` /
    `keyEncoding`, so a DAG never has to guess.
    """
    value, value_encoding = _text_or_base64(message.value)
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


# -- commits ----------------------------------------------------------------------------------


class PartitionTracker:
    """Offsets of one Kafka partition taken but not yet committable.

    Triggers finish out of order (maxInFlight of them run at once); the committed offset only
    ever moves to just past the longest finished prefix, so a crash re-delivers every message
    whose run is not known to exist — and a redelivery is a harmless 409.
    """

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()

    def __len__(self) -> int:
        return len(self._order)

    def take(self, offset: int) -> None:
        if self._order and offset <= self._order[-1]:
            raise ValueError(f"offset {offset} taken out of order after {self._order[-1]}")
        self._order.append(offset)

    def finish(self, offset: int) -> int | None:
        """Mark one offset done; the new offset to commit (next to read), or None if unchanged."""
        if offset not in self._order:  # already committed, or from before a rebalance/seek
            return None
        self._done.add(offset)
        committable = None
        while self._order and self._order[0] in self._done:
            head = self._order.popleft()
            self._done.discard(head)
            committable = head + 1
        return committable


class CommitTracker:
    """PartitionTrackers by partition, and the offsets waiting to be committed."""

    def __init__(self) -> None:
        self._partitions: dict[int, PartitionTracker] = {}
        self._to_commit: dict[int, int] = {}

    @property
    def uncommitted(self) -> int:
        """Messages taken and not yet committable: the window maxInFlight bounds."""
        return sum(len(tracker) for tracker in self._partitions.values())

    def take(self, partition: int, offset: int) -> None:
        self._partitions.setdefault(partition, PartitionTracker()).take(offset)

    def finish(self, partition: int, offset: int) -> None:
        tracker = self._partitions.get(partition)
        if tracker is None:
            return
        committable = tracker.finish(offset)
        if committable is not None:
            self._to_commit[partition] = committable

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget partitions taken away (rebalance) or rewound (replay): their messages come again."""
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._to_commit.pop(partition, None)

    def pending_commits(self) -> dict[int, int]:
        """Offsets to commit now (partition → next offset to read); cleared by the call."""
        pending, self._to_commit = self._to_commit, {}
        return pending

    def restore(self, pending: Mapping[int, int]) -> None:
        """Put back commits that failed, unless a newer one came meanwhile."""
        for partition, offset in pending.items():
            if self._to_commit.get(partition, -1) < offset:
                self._to_commit[partition] = offset


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
