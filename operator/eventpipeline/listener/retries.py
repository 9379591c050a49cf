"""When to try a message again: exponential backoff per message, on an injectable clock.

A pipeline keeps its own schedule, so one pipeline's long backoff (Airflow refusing its DAG)
never delays another's messages.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, TypeVar

from eventpipeline.planning.delivery import backoff_delay

T = TypeVar("T")
Clock = Callable[[], float]  # monotonic seconds


@dataclass(order=True)
class _Due(Generic[T]):
    at: float
    seq: int  # first scheduled, first due among equal times
    entry: T = field(compare=False)


class RetrySchedule(Generic[T]):
    """Entries waiting for their next attempt, earliest first."""

    def __init__(self, backoff: timedelta, max_backoff: timedelta, clock: Clock = time.monotonic) -> None:
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._clock = clock
        self._heap: list[_Due[T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, entry: T, failures: int, factor: float = 1.0) -> float:
        """Retry `entry` after its `failures`-th failure in a row; the delay in seconds.

        `factor` stretches the delay (up to max_backoff) while Airflow is congested."""
        delay = min(
            backoff_delay(failures, self._backoff, self._max_backoff) * factor, self._max_backoff.total_seconds()
        )
        self._seq += 1
        heapq.heappush(self._heap, _Due(self._clock() + delay, self._seq, entry))
        return delay

    def pop_due(self, limit: int) -> list[T]:
        """Up to `limit` entries whose time has come, earliest first."""
        now = self._clock()
        due: list[T] = []
        while self._heap and self._heap[0].at <= now and len(due) < limit:
            due.append(heapq.heappop(self._heap).entry)
        return due

    def wait(self, longest: float) -> float:
        """Seconds until the next entry is due, at most `longest` (0 when one is due now)."""
        if not self._heap:
            return longest
        return max(0.0, min(longest, self._heap[0].at - self._clock()))

    def expedite(self, wanted: Callable[[T], bool]) -> int:
        """Make the `wanted` entries due now (keeping their order); how many there were."""
        now = self._clock()
        moved = 0
        for due in self._heap:
            if due.at > now and wanted(due.entry):
                due.at = now
                moved += 1
        if moved:
            heapq.heapify(self._heap)
        return moved

    def clear(self) -> None:
        """Forget every entry (a new consumer delivers those messages again)."""
        self._heap.clear()
