"""Prometheus metrics of the listener, labelled by pipeline (`namespace/name`)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
PREFIX = "eventpipeline_listener"

CONSUMED = Counter(f"{PREFIX}_messages_consumed", "Messages taken from the topic.", ["pipeline"], registry=REGISTRY)
RUNS_CREATED = Counter(
    f"{PREFIX}_runs_created", "DAG runs (or asset events) Airflow created (200).", ["pipeline"], registry=REGISTRY
)
DUPLICATES = Counter(
    f"{PREFIX}_duplicates",
    "Messages whose DAG run existed already (409): redeliveries after a crash, or a replay.",
    ["pipeline"],
    registry=REGISTRY,
)
RETRIES = Counter(
    f"{PREFIX}_retries",
    "Trigger attempts that failed and are retried, by kind.",
    ["pipeline", "kind"],
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    f"{PREFIX}_dead_lettered", "Messages sent to the dead-letter topic.", ["pipeline"], registry=REGISTRY
)
WITHOUT_RUN = Counter(
    f"{PREFIX}_messages_without_run",
    "Messages Airflow refused for good with dead-lettering disabled: committed without a run.",
    ["pipeline"],
    registry=REGISTRY,
)
LAG = Gauge(f"{PREFIX}_consumer_lag", "Messages on the topic not yet committed.", ["pipeline"], registry=REGISTRY)
IN_FLIGHT = Gauge(
    f"{PREFIX}_in_flight", "Trigger requests running now (bounded by maxInFlight).", ["pipeline"], registry=REGISTRY
)
UNCOMMITTED = Gauge(
    f"{PREFIX}_uncommitted", "Messages taken and not yet committed / acknowledged.", ["pipeline"], registry=REGISTRY
)
UP = Gauge(
    f"{PREFIX}_consumer_up", "1 while the pipeline's consumer works, 0 while it reports an error.", ["pipeline"],
    registry=REGISTRY,
)  # fmt: skip
TRIGGER_LATENCY = Histogram(
    f"{PREFIX}_trigger_latency_seconds",
    "Time of one Airflow trigger request.",
    ["pipeline"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
STALLED_PARTITIONS = Gauge(
    f"{PREFIX}_stalled_partitions",
    "Partitions holding messages that made no progress for longer than their backoff explains.",
    ["pipeline"],
    registry=REGISTRY,
)
STALLS = Counter(
    f"{PREFIX}_stalls", "Stalls detected (each reopens the pipeline's consumer).", ["pipeline"], registry=REGISTRY
)
CONCURRENCY_LIMIT = Gauge(
    f"{PREFIX}_concurrency_limit",
    "Trigger requests the pipeline may send Airflow at once now: maxInFlight, lower while Airflow is congested.",
    ["pipeline"],
    registry=REGISTRY,
)
SCHEMA_HELD = Gauge(
    f"{PREFIX}_schema_held_messages",
    "Messages held, uncommitted, because their schema version is newer than the DAG states (DagBehindSchema).",
    ["pipeline"],
    registry=REGISTRY,
)
PIPELINES = Gauge(f"{PREFIX}_pipelines", "Pipelines this listener serves.", registry=REGISTRY)


def start(pipeline: str) -> None:
    """Create a pipeline's counters at zero, so `rate()` and `increase()` say 0 rather than
    nothing before its first retry or dead letter (a dashboard panel shows 0, not "No data")."""
    for counter in (CONSUMED, RUNS_CREATED, DUPLICATES, DEAD_LETTERED, WITHOUT_RUN, STALLS):
        counter.labels(pipeline)
    for kind in ("transient", "refused"):
        RETRIES.labels(pipeline, kind)
    TRIGGER_LATENCY.labels(pipeline)


def forget(pipeline: str) -> None:
    """Drop a pipeline's series when this listener stops serving it."""
    for metric in (
        CONSUMED, RUNS_CREATED, DUPLICATES, DEAD_LETTERED, WITHOUT_RUN, LAG, IN_FLIGHT, UNCOMMITTED, UP,
        TRIGGER_LATENCY, STALLED_PARTITIONS, STALLS, CONCURRENCY_LIMIT, SCHEMA_HELD,
    ):  # fmt: skip
        with contextlib.suppress(KeyError):
            metric.remove(pipeline)
    for kind in ("transient", "refused"):
        with contextlib.suppress(KeyError):
            RETRIES.remove(pipeline, kind)


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside the pod
    start_http_server(port, addr=address, registry=REGISTRY)
