"""Kafka consumer of one pipeline: manual commits of the highest contiguous finished offset.

`enable.auto.commit` and `enable.auto.offset.store` are off: an offset is committed only after
its message has a DAG run (or sits in the dead-letter topic). Static group membership
(`group.instance.id`) lets a restarted listener take its partitions back at once instead of
waiting for the killed one's session to expire. A fatal client error (e.g. the static member fenced
after a broker restart) ends the consumer for good: `receive` then raises, and the worker opens a
new one, which resumes from the committed offsets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka import (
    Message as KafkaMessage,
)
from confluent_kafka.admin import AdminClient

from eventpipeline.adapters.tls import kafka_tls_settings
from eventpipeline.listener.commits import CommitTracker
from eventpipeline.listener.source import Lag, SourceBase, SourceError
from eventpipeline.planning import naming
from eventpipeline.planning.delivery import Message

COMMIT_INTERVAL_SECONDS = 0.2
PAUSE_AFTER_SECONDS = 30.0
TIMEOUT_SECONDS = 10.0
AUTH_ERRORS = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
}
ACCESS_ERRORS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
QUIET_ERRORS = {KafkaError._PARTITION_EOF, KafkaError._NO_OFFSET}


def client_settings(secret: Mapping[str, str]) -> dict[str, Any]:
    """librdkafka settings from the listener principal's Secret (with its CA on SASL_SSL)."""
    return {
        "bootstrap.servers": secret["bootstrap.servers"],
        "security.protocol": secret.get("security.protocol", "SASL_PLAINTEXT"),
        "sasl.mechanism": secret.get("sasl.mechanism", "SCRAM-SHA-512"),
        "sasl.username": secret["username"],
        "sasl.password": secret["password"],
        **kafka_tls_settings(secret),
    }


def describe(error: KafkaError) -> str:
    code = error.code()
    if code in AUTH_ERRORS:
        return (
            f"Kafka refused the listener's credential ({error.str()}); the operator re-issues it "
            "(see CredentialsReady) and the listener picks up the new Secret"
        )
    if code in ACCESS_ERRORS:
        return f"Kafka denied the listener access ({error.name()}: {error.str()}); see AccessReady"
    return f"Kafka: {error.name()}: {error.str()}"


class KafkaSource(SourceBase[Producer]):
    def __init__(
        self,
        topic: str,
        group: str,
        secret: Mapping[str, str],
        dead_letter_topic: str | None,
        *,
        broker_key: str = "",
    ) -> None:
        super().__init__()
        self._topic = topic
        self._broker_key = broker_key
        self._incarnation = ""
        self._admin: AdminClient | None = None  # reads the topic's id
        self._group = group
        self._settings = client_settings(secret)
        self._dead_letter_topic = dead_letter_topic
        self._consumer: Consumer | None = None
        self._tracker = CommitTracker()
        self._last_commit = 0.0
        self._replay_from: datetime | None = None
        self._error_at = 0.0
        self._error_code: int | None = None
        self._fatal: str | None = None
        self._assignment: list[int] = []
        self._paused = False
        self._full_since: float | None = None

    # -- client callbacks (run inside poll/consume, on the worker thread) -------------------

    def _on_error(self, error: KafkaError) -> None:
        code = error.code()
        if code in QUIET_ERRORS:
            return
        if error.fatal() or code in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID):
            # librdkafka stops the client after a fatal error (seen on the real stack: the static
            # member fenced, FENCED_INSTANCE_ID, after a Kafka restart): only a new consumer goes on.
            # error_cb reports it as code _FATAL without the fatal flag; a raised one has the flag;
            # a commit's callback may carry the fencing's own code.
            self._fatal = describe(error)
        # A refused credential makes librdkafka call the broker down next; the cause is what to show.
        if code == KafkaError._ALL_BROKERS_DOWN and self._error_code in AUTH_ERRORS | ACCESS_ERRORS:
            self._error_at = time.monotonic()
            return
        self._error = describe(error)
        self._error_code = code
        self._error_at = time.monotonic()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._replay_from is not None and partitions:
            moment = self._replay_from
            self._replay_from = None
            millis = int(moment.timestamp() * 1000)
            wanted = [TopicPartition(p.topic, p.partition, millis) for p in partitions]
            found = consumer.offsets_for_times(wanted, timeout=TIMEOUT_SECONDS)
            # No message at or after the time: start at the end (nothing to replay there).
            partitions = [
                TopicPartition(p.topic, p.partition, p.offset if p.offset >= 0 else OFFSET_END) for p in found
            ]
            consumer.assign(partitions)
            exact = [p for p in partitions if p.offset >= 0]
            if exact:
                consumer.commit(offsets=exact, asynchronous=False)
            rewound = ", ".join(f"{p.partition}@{p.offset}" for p in exact) or "none (no message since then)"
            self._replay_outcome = f"rewound to {moment.isoformat()}: partition@offset {rewound}"
        else:
            consumer.assign(partitions)
        self._assignment = sorted(p.partition for p in partitions)
        self._paused = False

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit_now(consumer)
        self._tracker.drop(p.partition for p in partitions)
        consumer.unassign()
        self._assignment = []
        self._paused = False

    # -- Source -------------------------------------------------------------------------------

    def open(self, replay_from: datetime | None) -> None:
        self._replay_from = replay_from
        settings = {
            **self._settings,
            "group.id": self._group,
            # Static membership: one consumer serves a pipeline at a time, so one id per pipeline (not
            # per replica). A restarted or moved worker takes the killed one's place and partitions at
            # once (0.2 s, bench/listener/RESULTS.md), and fences a stale one still running. The classic
            # protocol on purpose: under Kafka 4's consumer protocol the id of a SIGKILLed member stays
            # taken until the broker's session timeout (45 s), and its successor fails meanwhile.
            "group.protocol": "classic",
            "group.instance.id": f"{self._group}.worker",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "error_cb": self._on_error,
            "on_commit": self._on_commit,
            "client.id": f"eventpipeline-listener:{self._group}",
        }
        # Before the first message: its run id depends on which incarnation of the topic it is from.
        self._incarnation = naming.topic_incarnation(self._broker_key, self._topic_id())
        try:
            consumer = Consumer(settings)
            consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        except KafkaException as error:
            raise SourceError(describe(error.args[0])) from error
        self._consumer = consumer

    def receive(self, max_messages: int, timeout: float) -> list[Message]:
        assert self._consumer is not None
        if self._fatal is not None:
            raise SourceError(f"{self._fatal}; the consumer cannot go on, opening a new one")
        # With the window full for long (an Airflow outage), keep polling, or the group evicts
        # us after max.poll.interval.ms — with the partitions paused, so nothing is taken. Not
        # for short waits: resuming drops what was prefetched and costs a fetch round trip.
        now = time.monotonic()
        if max_messages <= 0:
            if self._full_since is None:
                self._full_since = now
            if not self._paused and now - self._full_since > PAUSE_AFTER_SECONDS and self._assignment:
                self._consumer.pause([TopicPartition(self._topic, p) for p in self._assignment])
                self._paused = True
            if not self._paused:
                return []
        else:
            self._full_since = None
            if self._paused:
                self._consumer.resume([TopicPartition(self._topic, p) for p in self._assignment])
                self._paused = False
        try:
            # What is there now, without waiting; else wait for the first message only (consume
            # would otherwise wait for a full batch until the timeout, adding latency).
            raw = self._consumer.consume(num_messages=max(1, max_messages), timeout=0)
            if not raw and timeout > 0:
                raw = self._consumer.consume(num_messages=1, timeout=timeout)
        except KafkaException as error:
            self._on_error(error.args[0])
            return []
        messages = []
        for item in raw:
            failure = item.error()
            if failure is not None:
                self._on_error(failure)
                continue
            messages.append(self._message(item))
        if messages:
            self._error = None
        return messages

    def _message(self, item: KafkaMessage) -> Message:
        partition, offset = item.partition(), item.offset()
        assert partition is not None and offset is not None
        self._tracker.take(partition, offset)
        timestamp_type, timestamp = item.timestamp()
        return Message(
            topic=self._topic,
            partition=partition,
            position=str(offset),
            run_id=naming.kafka_run_id(self._topic, self._incarnation, partition, offset),
            key=item.key(),
            value=item.value(),
            headers=_headers(item.headers()),
            timestamp_ms=timestamp if timestamp_type != 0 and timestamp > 0 else None,
            offset=offset,
        )

    def done(self, message: Message) -> None:
        assert message.offset is not None
        self._tracker.finish(message.partition, message.offset)

    def window(self) -> int:
        return self._tracker.uncommitted

    def commit(self, *, force: bool = False) -> None:
        if self._consumer is None:
            return
        if not force and time.monotonic() - self._last_commit < COMMIT_INTERVAL_SECONDS:
            return
        # In the loop, commits go out asynchronously (a lost one only means a redelivery, a 409);
        # when forced (closing, a rebalance) they are synchronous.
        self._commit_now(self._consumer, wait=force)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is None or error.code() == KafkaError._NO_OFFSET:
            return
        self._on_error(error)
        self._tracker.restore({p.partition: p.offset for p in partitions if p.offset >= 0})

    def _commit_now(self, consumer: Consumer, *, wait: bool = True) -> None:
        pending = self._tracker.pending_commits()
        self._last_commit = time.monotonic()
        if not pending:
            return
        offsets = [TopicPartition(self._topic, partition, offset) for partition, offset in sorted(pending.items())]
        try:
            if wait:
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:
            kafka_error = error.args[0]
            if kafka_error.code() != KafkaError._NO_OFFSET:
                self._on_error(kafka_error)
                self._tracker.restore(pending)

    def _topic_id(self) -> str:
        """The topic's id (a UUID Kafka gives each topic at creation); the listener may DESCRIBE its topic."""
        if self._admin is None:
            # error_cb: a refused credential shows as such, not as a timeout of the describe call.
            settings: dict[str, Any] = {**self._settings, "error_cb": self._on_error}
            self._admin = AdminClient({**settings, "client.id": f"eventpipeline-listener:{self._group}"})
        admin = self._admin
        try:
            described = admin.describe_topics(TopicCollection([self._topic]), request_timeout=TIMEOUT_SECONDS)
            description = described[self._topic].result(TIMEOUT_SECONDS)
        except Exception as error:  # refused, timed out (no controller reached), an unexpected answer
            # A refused credential often surfaces only as a timeout ("waiting for controller"): the
            # authentication failure itself goes to error_cb, which poll serves. It is the cause to show.
            admin.poll(0.5)
            refused = self._error_code in AUTH_ERRORS | ACCESS_ERRORS
            if refused and self._error is not None:
                cause = self._error
            elif isinstance(error, KafkaException):
                cause = describe(error.args[0])
            else:
                cause = self._error or f"{type(error).__name__}: {error}"
            raise SourceError(f"cannot describe topic {self._topic}: {cause}", credential_refused=refused) from error
        return str(description.topic_id)

    def recreated(self) -> bool:
        """Whether the topic was deleted and created again since `open` (its id changed): the
        consumer must be opened again, so its messages get the new incarnation's run ids."""
        try:
            incarnation = naming.topic_incarnation(self._broker_key, self._topic_id())
        except SourceError:
            return False  # the topic is gone for now (or Kafka is): nothing to compare yet
        return incarnation != self._incarnation

    def lag(self) -> Lag | None:
        """Messages not committed, and those not taken yet, on the partitions assigned to us; with
        none assigned (a group that never settled after a broker fault), on every partition of the
        topic, so that a consumer idle in front of a backlog shows as such."""
        consumer = self._consumer
        if consumer is None:
            return None
        started = time.monotonic()
        try:
            assigned = list(self._assignment)
            numbers = assigned or self._partition_numbers(consumer)
            partitions = [TopicPartition(self._topic, partition) for partition in numbers]
            committed = consumer.committed(partitions, timeout=TIMEOUT_SECONDS)
            # Where the consumer will fetch next (assigned partitions only); unassigned: the commit.
            fetching = {p.partition: p.offset for p in consumer.position(partitions)} if assigned else {}
            total = untaken = 0
            for position in committed:
                low, high = self._watermarks(consumer, position, fresh=not assigned or self._paused)
                start = position.offset if position.offset >= 0 else low
                total += max(0, high - start)
                # Past the fetch position, not the commit: a transaction marker after the last
                # message keeps the commit one short of the end for good, but is never a message.
                fetch = fetching.get(position.partition, -1)
                untaken += max(0, high - (fetch if fetch >= 0 else start))
        except KafkaException as error:
            self._on_error(error.args[0])
            return None
        if self._error_at < started:
            self._error = None  # the broker answered with our credential: whatever failed before works now
        if self.recreated():
            raise SourceError(
                f"topic {self._topic} was deleted and created again; reopening the consumer so that its "
                "messages get the new topic's run ids"
            )
        return Lag(uncommitted=total, untaken=untaken)

    @staticmethod
    def _watermarks(consumer: Consumer, partition: TopicPartition, *, fresh: bool) -> tuple[int, int]:
        """A partition's low and high offsets. While the consumer fetches the partition, as its last
        fetch answer gave them: asking the broker again waits behind the consumer's fetch long-poll,
        about 0.4 s a partition, on the worker's thread, which then hands Airflow no messages
        (bench/listener/RESULTS.md, F). Asked when paused or not assigned (no fetch answers then), or
        not known yet."""
        if not fresh:
            cached = consumer.get_watermark_offsets(partition, cached=True)
            if cached is not None and cached[0] >= 0 and cached[1] >= 0:
                return int(cached[0]), int(cached[1])
        low, high = consumer.get_watermark_offsets(partition, timeout=TIMEOUT_SECONDS, cached=False)
        return int(low), int(high)

    def _partition_numbers(self, consumer: Consumer) -> list[int]:
        metadata = consumer.list_topics(self._topic, timeout=TIMEOUT_SECONDS).topics.get(self._topic)
        return sorted(metadata.partitions) if metadata is not None and metadata.error is None else []

    def dead_letter(self, message: Message, headers: Mapping[str, str]) -> None:
        if self._dead_letter_topic is None:
            raise SourceError("dead-lettering is disabled")
        producer = self._dead_letter_producer(lambda: Producer({**self._settings, "acks": "all"}))
        outcome: list[KafkaError | None] = []
        all_headers: list[tuple[str, str | bytes | None]] = [*message.headers, *headers.items()]
        try:
            producer.produce(
                self._dead_letter_topic,
                value=message.value,
                key=message.key,
                headers=all_headers,
                on_delivery=lambda error, _msg: outcome.append(error),
            )
        except KafkaException as error:  # refused before sending, e.g. larger than message.max.bytes
            raise SourceError(f"writing to {self._dead_letter_topic} failed: {describe(error.args[0])}") from error
        except BufferError as error:
            raise SourceError(f"writing to {self._dead_letter_topic} failed: {error}") from error
        producer.flush(TIMEOUT_SECONDS)
        if not outcome:
            raise SourceError(f"no acknowledgement from Kafka for the dead-letter topic {self._dead_letter_topic}")
        if outcome[0] is not None:
            raise SourceError(f"writing to {self._dead_letter_topic} failed: {describe(outcome[0])}")

    def close(self) -> None:
        self._admin = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                self._commit_now(consumer)
                consumer.close()
            except (KafkaException, RuntimeError):
                pass
        producer = self._take_producer()
        if producer is not None:
            producer.flush(TIMEOUT_SECONDS)


def _headers(raw: object) -> tuple[tuple[str, bytes], ...]:
    """Kafka headers as (name, bytes) pairs, in order (a name may repeat)."""
    if not isinstance(raw, list):
        return ()
    pairs = []
    for name, value in raw:
        data = value.encode() if isinstance(value, str) else (value or b"")
        pairs.append((str(name), data))
    return tuple(pairs)
