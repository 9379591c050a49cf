"""Poison never wedges a pipeline, on the real stack: a value with a NUL byte becomes a run (as
base64), a message too large for the dead-letter producer still ends in the dead-letter topic
(without its value, saying why) and its partition moves on, and a congested Airflow is met with
fewer concurrent requests, reported in status, with exactly one run per message afterwards."""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.integration.listener.brokers import (
    kafka_committed,
    kafka_end_offsets,
    kafka_produce,
    kafka_read_all,
    kafka_settings,
)
from tests.integration.listener.conftest import Harness, listener_status, wait_ready

# The refusing DAG is the dead-letter scenario's own.
from tests.integration.listener.test_messages_become_runs import (  # noqa: F401 - fixtures
    spec,
    strict_dag_id,
)
from tests.integration.support import eventually

pytestmark = pytest.mark.integration

# Larger than the dead-letter producer's message.max.bytes (librdkafka's default, 1,000,000), smaller
# than what the topic takes (1,048,588): it can be consumed, but not dead-lettered as it is.
LARGE_VALUE_BYTES = 1_010_000


def one_partition(dag_id: str, **trigger: Any) -> dict[str, Any]:
    return {**spec("local-kafka", dag_id, **trigger), "topic": {"partitions": 1, "deletionPolicy": "Delete"}}


def start(h: Harness, name: str, dag_id: str, **trigger: Any) -> tuple[str, dict[str, str]]:
    h.kube.create_pipeline(h.namespace, name, one_partition(dag_id, **trigger))
    topic = str(wait_ready(h.kube, h.namespace, name)["status"]["topic"])
    producer = h.kube.secret(h.namespace, f"{name}.app.credentials")
    assert producer is not None
    return topic, producer


def wait_runs(h: Harness, prefix: str, count: int, timeout: float) -> dict[str, Any]:
    def enough() -> dict[str, Any] | None:
        runs = h.airflow.runs(h.dag_id, prefix)
        assert len(runs) <= count, f"{len(runs)} runs for {count} messages"
        return runs if len(runs) == count else None

    return eventually(enough, timeout=timeout, interval=1, what=f"{count} runs with prefix {prefix}")


def produce_raw(secret: Mapping[str, str], topic: str, values: list[bytes]) -> None:
    producer = Producer({**kafka_settings(secret), "message.max.bytes": 1_048_000})
    for value in values:
        producer.produce(topic, value=value, key=b"k")
    assert producer.flush(30) == 0


def test_a_value_with_a_nul_byte_becomes_a_run_as_base64(harness: Harness) -> None:
    h = harness
    topic, producer = start(h, "binary", h.dag_id)
    h.listener_factory(f"{h.namespace}/binary")
    values = [b"avro\x00\x02order-7", "ünïcode".encode(), b"\xff\xfe not utf-8"]
    produce_raw(producer, topic, values)
    prefix = f"ep__{h.namespace}.binary__"
    runs = wait_runs(h, prefix, 3, timeout=90)
    confs = sorted(runs.values(), key=lambda run: run["conf"]["offset"])
    decoded = [
        base64.b64decode(c["conf"]["value"]) if c["conf"].get("valueEncoding") == "base64" else c["conf"]["value"]
        for c in confs
    ]
    assert decoded == [values[0], "ünïcode", values[2]]
    assert [c["conf"].get("valueEncoding") for c in confs] == ["base64", None, "base64"]
    assert listener_status(h.kube, h.namespace, "binary").get("deadLettered", 0) == 0


def test_a_message_too_large_for_the_dead_letter_producer_does_not_wedge_its_partition(
    harness: Harness,
    strict_dag_id: str,  # noqa: F811 - the fixture imported above
) -> None:
    h = harness
    topic, producer = start(h, "huge", strict_dag_id)
    h.listener_factory(f"{h.namespace}/huge")
    produce_raw(producer, topic, [b"x" * LARGE_VALUE_BYTES])
    kafka_produce(producer, topic, ["small-after"])

    dead = kafka_read_all(h.stack.exports, f"{topic}.dlq", 2, timeout=90)
    by_offset = {dict(m.headers())[b"eventpipeline.source-position".decode()]: m for m in dead}
    huge, small = by_offset[b"0"], by_offset[b"1"]
    assert huge.value() in (None, b"")
    huge_headers = dict(huge.headers())
    assert b"too large" in huge_headers["eventpipeline.value-omitted"].lower()
    assert huge_headers["eventpipeline.error-status"] == b"400"
    assert small.value() == b"small-after"
    eventually(
        lambda: (
            kafka_committed(h.stack.exports, f"ep.{h.namespace}.huge.listener", topic, 1)
            == kafka_end_offsets(h.stack.exports, topic, 1)
        ),
        timeout=30,
        what="both messages to be committed",
    )
    status = eventually(
        lambda: (s := listener_status(h.kube, h.namespace, "huge")).get("deadLettered") == 2 and s,
        timeout=30,
        what="deadLettered 2",
    )
    assert status.get("runsCreated", 0) == 0


def test_a_congested_airflow_gets_fewer_requests_and_status_says_so(
    harness: Harness,
    airflow_api_server: int,
) -> None:
    h = harness
    topic, producer = start(h, "slow", h.dag_id, retry={"limit": 2, "backoff": "1s", "maxBackoff": "4s"})
    listener = h.listener_factory(f"{h.namespace}/slow")
    prefix = f"ep__{h.namespace}.slow__"
    kafka_produce(producer, topic, ["warm-up"])
    eventually(lambda: len(h.airflow.runs(h.dag_id, prefix)) == 1, timeout=60, what="the first run")

    os.killpg(airflow_api_server, signal.SIGSTOP)  # requests time out: congestion
    sent = [f"m-{index}" for index in range(40)]
    kafka_produce(producer, topic, sent)
    throttled = eventually(
        lambda: listener_status(h.kube, h.namespace, "slow").get("throttled"), timeout=90, what="status.throttled"
    )
    assert "of 8 requests at once" in throttled
    limit = eventually(
        lambda: _gauge(listener.metrics(), "eventpipeline_listener_concurrency_limit", h.namespace) < 8 or None,
        timeout=30,
        what="the concurrency metric to drop",
    )
    assert limit
    time.sleep(2)
    os.killpg(airflow_api_server, signal.SIGCONT)

    runs = wait_runs(h, prefix, 41, timeout=180)
    assert sorted(run["conf"]["value"] for run in runs.values()) == sorted(["warm-up", *sent])
    eventually(
        lambda: "throttled" not in listener_status(h.kube, h.namespace, "slow"),
        timeout=120,
        what="full concurrency again",
    )


def _gauge(metrics: str, name: str, namespace: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and f'pipeline="{namespace}/' in line:
            return float(line.rsplit(" ", 1)[1])
    return float("nan")
