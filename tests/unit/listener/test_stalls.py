"""Stall detection on a fake clock: a message past every deadline the listener knows of."""

from __future__ import annotations

from eventpipeline.listener.stalls import StallDetector
from tests.unit.listener.fakes import FakeClock


def test_a_request_on_its_way_is_explained_for_the_allowance_then_stalls_its_partition() -> None:
    clock = FakeClock()
    stalls = StallDetector(clock, request_allowance=60)
    stalls.expect((0, "1"), 0)
    stalls.expect((1, "1"), 1)
    clock.advance(59)
    assert stalls.stalled() == []
    stalls.finished((1, "1"))
    clock.advance(2)
    assert stalls.stalled() == [0]
    stalls.clear()
    assert stalls.stalled() == []


def test_a_retry_backoff_explains_the_wait() -> None:
    clock = FakeClock()
    stalls = StallDetector(clock, request_allowance=60)
    stalls.expect((3, "9"), 3, wait=300)  # retried in 5 minutes: not a stall before then
    clock.advance(350)
    assert stalls.stalled() == [] and stalls.waiting(3) == 1
    clock.advance(11)
    assert stalls.stalled() == [3]
