"""AIMD concurrency towards Airflow, on a fake clock: halve on congestion, +1 per window of
good answers, floor 1, ceiling maxInFlight."""

from __future__ import annotations

from eventpipeline.listener.congestion import Congestion
from tests.unit.listener.fakes import FakeClock


def test_congestion_halves_the_limit_once_per_cooldown_down_to_one() -> None:
    clock = FakeClock()
    congestion = Congestion(16, clock)
    assert congestion.answered(503, 0.1) and congestion.limit == 8
    # The other requests that were on their way when Airflow choked answer badly too: one signal.
    assert not congestion.answered(None, 0.1) and not congestion.answered(429, 0.1)
    assert congestion.limit == 8
    for expected in (4, 2, 1, 1):
        clock.advance(1.5)
        congestion.answered(408, 0.1)
        assert congestion.limit == expected
    assert congestion.throttled and congestion.backoff_factor() == 16
    assert "at most 1 of 16" in str(congestion.describe())


def test_a_slow_success_counts_as_congestion() -> None:
    congestion = Congestion(4, FakeClock(), slow_seconds=5.0)
    congestion.answered(200, 6.0)
    assert congestion.limit == 2


def test_each_window_of_good_answers_adds_one_up_to_max_in_flight() -> None:
    clock = FakeClock()
    congestion = Congestion(4, clock)
    congestion.answered(500, 0.1)
    clock.advance(2)
    congestion.answered(500, 0.1)
    assert congestion.limit == 1
    assert congestion.answered(200, 0.01) and congestion.limit == 2  # a window of 1
    assert not congestion.answered(201, 0.01)
    assert congestion.answered(409, 0.01) and congestion.limit == 3  # a window of 2
    for _ in range(3):
        congestion.answered(200, 0.01)
    assert congestion.limit == 4 and not congestion.throttled and congestion.describe() is None
    for _ in range(20):
        congestion.answered(200, 0.01)
    assert congestion.limit == 4, "never above maxInFlight"


def test_refusals_are_not_congestion() -> None:
    congestion = Congestion(4, FakeClock())
    for status in (400, 403, 404, 413, 422):
        congestion.answered(status, 0.01)
    assert congestion.limit == 4
