"""The dispatcher never keeps silent while Airflow takes no runs: the log says so when it begins,
with what the worker waits for, again at most once a minute while it lasts, and when it ends.
Fakes and a fake clock (`test_worker.rig`), no threads, no sleeps."""

from __future__ import annotations

import logging

import pytest

from eventpipeline.listener.dispatch import UNAVAILABLE_LOG_INTERVAL_SECONDS
from tests.unit.listener.fakes import FakeAirflow, FakeSource, messages
from tests.unit.listener.test_worker import rig


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "could not take" in r.getMessage()
    ]


def test_an_airflow_that_takes_no_runs_is_logged_at_once_then_once_a_minute_and_its_return_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="eventpipeline.listener")
    down = [True]
    source = FakeSource(messages(3, partitions=1))
    airflow = FakeAirflow(lambda _run, _attempt: None if down[0] else 200)
    r = rig(source, airflow)

    r.steps(2)
    [first] = _warnings(caplog)
    assert first.startswith("ns/p: Airflow could not take runs for DAG d (no answer")
    assert "3 message(s) wait for a retry (next in 2 s), 0 request(s) on their way, at most 2 of 4 at once" in first

    # Retries keep failing: no warning per failure, one per minute.
    for _ in range(20):
        r.clock.advance(2.5)
        r.steps(2)
    assert sum(airflow.attempts.values()) > 6 and len(_warnings(caplog)) == 1
    r.clock.advance(UNAVAILABLE_LOG_INTERVAL_SECONDS)
    r.steps(2)
    assert len(_warnings(caplog)) == 2

    down[0] = False
    r.run(lambda: source.committed == {0: 3}, tick=0.5)
    assert "ns/p: Airflow takes runs again" in [rec.getMessage() for rec in caplog.records]
    assert len(_warnings(caplog)) == 2


def test_a_healthy_airflow_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventpipeline.listener")
    source = FakeSource(messages(10))
    r = rig(source, FakeAirflow())
    r.run(lambda: source.committed == {0: 5, 1: 5})
    assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.INFO] == []
