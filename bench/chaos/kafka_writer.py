"""The chaos harness's Kafka producer: every value on the topic exactly once, across broker restarts.

librdkafka's idempotent producer holds and resends what the broker has not acknowledged, so a
broker restart needs nothing from the application, in principle. In one short run with a real
Kafka restart (RESULTS.md, third round) it never delivered again after the restart: 86 of 200
messages timed out after `message.timeout.ms` (librdkafka had logged a partition's
`new leader-1 not found in cache`), while the listener had made a run of every message the topic
held. A harness whose own client loses messages proves nothing about the operator, so this writer
does not rely on the client's recovery:

- it watches itself: a delivery that fails, or messages waiting with no delivery at all for
  `STUCK_SECONDS` while Kafka is up (no fault on, and over for that long), gives the client up;
- it then repairs: purge and close that client, read the topic (admin credential) to learn which
  values are there, and produce only the missing ones with a fresh client;
- at the end it reads the topic once more: every value sent must be there exactly once, or it
  repairs again (a few rounds) and else says what is wrong.

The values are unique strings, so the topic's content decides what is missing, and the count of
runs in Airflow still proves exactly once. Each repair is recorded (`repairs`) for the outcome, and
the clients' librdkafka debug log (contexts `DEBUG_CONTEXTS`) goes to a file, so the next stuck
client leaves the evidence its cause needs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from tests.integration.listener.brokers import kafka_admin_settings

from eventpipeline_devenv.clients import kafka_settings

# Longer than a Kafka restart takes here (BROKER_READY_SECONDS of the harness allows 240 s), so a
# restart alone never times a message out; a client stuck after one is caught by STUCK_SECONDS.
MESSAGE_TIMEOUT_MS = 300_000
STUCK_SECONDS = 60.0
READ_TIMEOUT_SECONDS = 180.0
REPAIR_ROUNDS = 5
DEBUG_CONTEXTS = "broker,topic,metadata,eos,msg"
PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


class BrokerFaults:
    """Which brokers the harness has under a fault now, and when each one's last fault ended."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._on: Counter[str] = Counter()
        self._ended: dict[str, float] = {}
        self._started = clock()

    @contextmanager
    def during(self, broker: str) -> Iterator[None]:
        with self._lock:
            self._on[broker] += 1
        try:
            yield
        finally:
            with self._lock:
                self._on[broker] -= 1
                self._ended[broker] = self._clock()

    def up_since(self, broker: str) -> float | None:
        """Since when no fault of `broker` is on (the harness's start if none ever was); None while one is."""
        with self._lock:
            if self._on[broker]:
                return None
            return self._ended.get(broker, self._started)


def read_values(exports: Mapping[str, str], topic: str, partitions: int, timeout: float) -> Counter[str]:
    """Every value on the topic (up to each partition's end when the read starts), with its count.
    Tried again on a broker error (a leader not elected yet after a restart) until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _read_values(exports, topic, partitions, deadline)
        except KafkaException:
            if time.monotonic() + 1 > deadline:
                raise
            time.sleep(1)  # a back-off before the next try, not a wait for an event


def _read_values(exports: Mapping[str, str], topic: str, partitions: int, deadline: float) -> Counter[str]:
    consumer = Consumer(
        {
            **kafka_admin_settings(exports),
            "group.id": f"chaos-check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    values: Counter[str] = Counter()
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)[1]
            for p in range(partitions)
        }
        left = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in left])
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"read {sum(values.values())} messages of {topic}; partitions {sorted(left)} not to the end"
                )
            for message in consumer.consume(500, 1.0):
                partition = message.partition()
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                if error is None and message.offset() < ends[partition]:
                    values[(message.value() or b"").decode()] += 1
                if error is not None or message.offset() + 1 >= ends[partition]:
                    left.discard(partition)
    finally:
        consumer.close()
    return values


class KafkaWriter:
    """Writes the harness's values to one topic with an idempotent producer, and repairs what the
    client did not deliver (see the module's docstring). Used from one thread."""

    def __init__(
        self,
        secret: Mapping[str, str],
        exports: Mapping[str, str],
        topic: str,
        partitions: int,
        *,
        faults: BrokerFaults,
        log_path: Path,
    ) -> None:
        self._settings = {
            **kafka_settings(secret),
            "enable.idempotence": True,
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "linger.ms": 5,
            "debug": DEBUG_CONTEXTS,
        }
        self._exports, self._topic, self._partitions, self._faults = exports, topic, partitions, faults
        self._log = logging.getLogger(f"chaos.kafka-writer.{uuid.uuid4().hex[:6]}")
        self._log.setLevel(logging.DEBUG)
        self._log.propagate = False
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self._log.addHandler(handler)
        self._index: dict[str, int] = {}  # value -> its index, for its key
        self._sent: list[str] = []  # in the order first produced
        self._waiting: set[str] = set()  # produced by the current client, not acknowledged
        self._failures: list[str] = []  # failed deliveries of the current client
        self._progress = time.monotonic()
        self._producer = self._client()
        self._read_error: str | None = None
        self.repairs: list[str] = []
        self.errors: list[str] = []

    # -- the client --------------------------------------------------------------------------------

    def _client(self) -> Producer:
        self._waiting, self._failures, self._progress = set(), [], time.monotonic()
        return Producer(self._settings, logger=self._log)

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        value = (message.value() or b"").decode()
        if error is None:
            self._waiting.discard(value)
            self._progress = time.monotonic()
        elif error.code() not in PURGED:  # purged ones are ours: a repair follows
            self._failures.append(f"{value}: {error.name()}")

    def _produce(self, value: str) -> None:
        self._producer.produce(
            self._topic, value=value.encode(), key=str(self._index[value] % 16).encode(), on_delivery=self._delivered
        )
        self._waiting.add(value)
        self._producer.poll(0)

    def _stuck(self) -> str | None:
        """Why the current client is given up, or None while it may still deliver."""
        up_since = self._faults.up_since("kafka")
        if up_since is None:
            return None  # Kafka is down or frozen on purpose: waiting is right
        if self._failures:
            return f"{len(self._failures)} deliveries failed (first: {self._failures[0]})"
        quiet = time.monotonic() - max(self._progress, up_since)
        if self._waiting and quiet > STUCK_SECONDS:
            return f"{len(self._waiting)} messages waiting, none delivered for {quiet:.0f} s while Kafka was up"
        return None

    # -- what the harness calls --------------------------------------------------------------------

    def send(self, index: int, value: str) -> None:
        self._index[value] = index
        self._sent.append(value)
        self._produce(value)
        why = self._stuck()
        if why is not None:
            self.replace_client(why)

    def finish(self) -> None:
        """Wait for every delivery (repairing a stuck client), then check the topic holds every value
        once; `errors` says what is still wrong after `REPAIR_ROUNDS` repairs."""
        for _ in range(REPAIR_ROUNDS):
            while self._waiting or self._failures:
                self._producer.poll(1.0)
                why = self._stuck()
                if why is not None:
                    self.replace_client(why)
            on_topic = self._read()
            if on_topic is None:
                continue
            missing = [value for value in self._sent if not on_topic[value]]
            doubled = sum(count - 1 for value, count in on_topic.items() if value in self._index and count > 1)
            if doubled:
                self.errors.append(f"kafka topic holds {doubled} extra copies of sent values: the harness's producer")
                break
            if not missing:
                break
            self.replace_client(f"the final read found {len(missing)} values missing", on_topic)
        else:
            self.errors.append(
                f"kafka: values still missing after {REPAIR_ROUNDS} rounds (last read error: {self._read_error}): "
                f"{self.repairs}"
            )
        self._producer.flush(30)
        self._producer.purge()  # close() flushes what is left, for ever if the client is stuck
        self._producer.close()

    # -- repairing ---------------------------------------------------------------------------------

    def _read(self) -> Counter[str] | None:
        try:
            return read_values(self._exports, self._topic, self._partitions, READ_TIMEOUT_SECONDS)
        except (KafkaException, TimeoutError) as error:
            self._read_error = f"{type(error).__name__}: {error}"
            self._log.warning("reading the topic failed: %s", self._read_error)
            return None

    def replace_client(self, why: str, on_topic: Counter[str] | None = None) -> None:
        """Give the current client up, then produce what the topic lacks with a fresh one."""
        self._producer.purge()
        self._producer.poll(0)
        self._producer.close()
        if on_topic is None:
            on_topic = self._read()
        if on_topic is None:  # unknown what arrived: the final read decides again
            self._producer = self._client()
            self.repairs.append(f"{why}: client closed; the topic could not be read, nothing produced again yet")
            return
        missing = [value for value in self._sent if not on_topic[value]]
        self._producer = self._client()
        for value in missing:
            self._produce(value)
        self.repairs.append(
            f"{why}: client closed; the topic held {len(self._sent) - len(missing)} of the {len(self._sent)} "
            f"values sent so far; the {len(missing)} missing produced again with a new client"
        )
        self._log.warning("repair: %s", self.repairs[-1])
