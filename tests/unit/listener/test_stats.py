"""One recorder feeds status.listener and the Prometheus metrics from the same calls."""

from __future__ import annotations

from eventpipeline.api.pipeline import ListenerStatus
from eventpipeline.listener import metrics
from eventpipeline.listener.stats import ListenerStats


def sample(name: str, pipeline: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"pipeline": pipeline, **labels})


def test_each_event_counts_in_status_and_in_metrics_alike() -> None:
    stats = ListenerStats("ns/counts", "replica-0")
    stats.consumed(3)
    stats.run_created("run-1")
    stats.duplicate("run-2")
    stats.retried("transient")
    stats.retried("refused")
    stats.dead_lettered()
    stats.lag(7)
    status = stats.snapshot()
    assert (status.consumed, status.runs_created, status.duplicates, status.retries, status.dead_lettered) == (
        3, 1, 1, 2, 1,
    )  # fmt: skip
    assert status.last_run_id == "run-2" and status.lag == 7 and status.replica == "replica-0"
    name = metrics.PREFIX
    assert sample(f"{name}_messages_consumed_total", "ns/counts") == 3
    assert sample(f"{name}_runs_created_total", "ns/counts") == 1
    assert sample(f"{name}_duplicates_total", "ns/counts") == 1
    assert sample(f"{name}_retries_total", "ns/counts", kind="transient") == 1
    assert sample(f"{name}_retries_total", "ns/counts", kind="refused") == 1
    assert sample(f"{name}_dead_lettered_total", "ns/counts") == 1
    assert sample(f"{name}_consumer_lag", "ns/counts") == 7


def test_status_counters_carry_over_from_the_previous_listener_but_not_its_error() -> None:
    previous = ListenerStatus(
        replica="old", consumed=10, runs_created=9, duplicates=1, error="broken", replay="rewound", replay_request="t"
    )
    stats = ListenerStats("ns/carried", "new", previous)
    stats.consumed(1)
    status = stats.snapshot()
    assert (status.replica, status.consumed, status.runs_created, status.duplicates) == ("new", 11, 9, 1)
    assert status.error is None and status.replay == "rewound" and status.replay_request == "t"
    assert previous.consumed == 10, "the previous status is not modified"


def test_the_consumer_error_wins_over_the_airflow_error_and_changes_are_urgent() -> None:
    stats = ListenerStats("ns/errors", "r")
    assert not stats.take_urgent()
    stats.airflow_error("Airflow down")
    assert stats.take_urgent() and not stats.take_urgent()
    assert stats.source_error("credential refused")
    assert stats.snapshot().error == "credential refused"
    assert sample(f"{metrics.PREFIX}_consumer_up", "ns/errors") == 0
    assert not stats.source_error("credential refused"), "unchanged"
    stats.source_error(None)
    assert stats.snapshot().error == "Airflow down"
    assert sample(f"{metrics.PREFIX}_consumer_up", "ns/errors") == 1
    stats.airflow_error(None)
    assert stats.snapshot().error is None


def test_a_replay_request_and_its_outcome_are_reported_at_once() -> None:
    stats = ListenerStats("ns/replay", "r")
    stats.replay(request="2026-01-01T00:00:00Z")
    assert stats.take_urgent()
    stats.replay(outcome="rewound to 2026-01-01")
    status = stats.snapshot()
    assert status.replay_request == "2026-01-01T00:00:00Z" and status.replay == "rewound to 2026-01-01"


def test_forgetting_drops_the_pipelines_series() -> None:
    stats = ListenerStats("ns/gone", "r")
    stats.consumed(1)
    stats.forget()
    assert sample(f"{metrics.PREFIX}_messages_consumed_total", "ns/gone") is None
