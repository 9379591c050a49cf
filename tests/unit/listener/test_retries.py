"""Retry scheduling on an injected clock: who is due when."""

from __future__ import annotations

from datetime import timedelta

from eventpipeline.listener.retries import RetrySchedule
from tests.unit.listener.fakes import FakeClock


def schedule(clock: FakeClock) -> RetrySchedule[str]:
    return RetrySchedule(timedelta(seconds=1), timedelta(seconds=5), clock)


def test_an_entry_is_due_only_once_its_backoff_has_passed() -> None:
    clock = FakeClock()
    retries = schedule(clock)
    assert retries.schedule("a", failures=1) == 1.0
    assert retries.pop_due(10) == []
    clock.advance(0.999)
    assert retries.pop_due(10) == []
    clock.advance(0.001)
    assert retries.pop_due(10) == ["a"]
    assert len(retries) == 0


def test_backoff_doubles_with_each_failure_up_to_the_maximum() -> None:
    retries = schedule(FakeClock())
    assert [retries.schedule(str(n), failures=n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_due_entries_come_earliest_first_and_at_most_as_many_as_there_are_free_slots() -> None:
    clock = FakeClock()
    retries = schedule(clock)
    retries.schedule("late", failures=3)
    retries.schedule("early", failures=1)
    retries.schedule("same-time-second", failures=1)
    clock.advance(10)
    assert retries.pop_due(2) == ["early", "same-time-second"]
    assert retries.pop_due(2) == ["late"]


def test_the_wait_until_the_next_retry_bounds_the_receive_timeout() -> None:
    clock = FakeClock()
    retries = schedule(clock)
    assert retries.wait(0.1) == 0.1
    retries.schedule("a", failures=1)
    assert retries.wait(5.0) == 1.0
    clock.advance(0.75)
    assert retries.wait(5.0) == 0.25
    clock.advance(1.0)
    assert retries.wait(5.0) == 0.0


def test_clearing_forgets_every_entry() -> None:
    clock = FakeClock()
    retries = schedule(clock)
    retries.schedule("a", failures=1)
    retries.clear()
    clock.advance(10)
    assert retries.pop_due(10) == [] and len(retries) == 0


def test_expedited_entries_are_due_at_once_in_their_order_and_the_others_keep_their_time() -> None:
    clock = FakeClock()
    retries = schedule(clock)
    retries.schedule("late", failures=3)  # 4 s
    retries.schedule("early", failures=2)  # 2 s
    retries.schedule("kept", failures=1)  # 1 s
    assert retries.expedite(lambda entry: entry != "kept") == 2
    assert retries.pop_due(10) == ["late", "early"]
    clock.advance(1)
    assert retries.pop_due(10) == ["kept"]
