"""How many trigger requests a pipeline sends Airflow at once: additive increase, multiplicative
decrease (AIMD, the way TCP shares a link), on an injectable clock.

When Airflow is overloaded (no answer, 408, 429, 5xx, or an answer slower than `slow_seconds`)
the limit halves, at most once per `cooldown` (the requests already on their way when congestion
began answer badly together, and count as one signal). Each window of `limit` good answers in
a row raises it by one, up to the pipeline's `maxInFlight`; it never goes below 1. Retries of
transient failures wait longer while the limit is down (`backoff_factor`), so a slow Airflow
gets fewer requests, not the same number later.
"""

from __future__ import annotations

import threading
import time

from eventpipeline.listener.retries import Clock
from eventpipeline.planning.delivery import congested

# Slower than this, an answer counts as congestion even when it is a success: Airflow's API
# answers a run creation in tens of milliseconds when it keeps up.
SLOW_ANSWER_SECONDS = 5.0
COOLDOWN_SECONDS = 1.0


class Congestion:
    """Thread-safe; one per pipeline (its DAG, on its Airflow instance), so one pipeline's slow
    DAG or 429s never take concurrency away from another's."""

    def __init__(
        self,
        ceiling: int,
        clock: Clock = time.monotonic,
        *,
        slow_seconds: float = SLOW_ANSWER_SECONDS,
        cooldown: float = COOLDOWN_SECONDS,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self._limit = self.ceiling
        self._clock = clock
        self._slow = slow_seconds
        self._cooldown = cooldown
        self._good_in_a_row = 0
        self._decreased_at: float | None = None
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """Requests that may run at once now."""
        return self._limit

    @property
    def throttled(self) -> bool:
        return self._limit < self.ceiling

    def backoff_factor(self) -> float:
        """How much longer transient retries wait while throttled (1 when not)."""
        return self.ceiling / self._limit

    def answered(self, status_code: int | None, seconds: float) -> bool:
        """Take one answer into account; True when the limit changed."""
        with self._lock:
            if congested(status_code) or seconds > self._slow:
                return self._decrease(max(self._cooldown, seconds))
            self._good_in_a_row += 1
            if self._good_in_a_row < self._limit or self._limit >= self.ceiling:
                return False
            self._good_in_a_row = 0
            self._limit += 1
            return True

    def _decrease(self, cooldown: float) -> bool:
        self._good_in_a_row = 0
        now = self._clock()
        if self._decreased_at is not None and now - self._decreased_at < cooldown:
            return False
        self._decreased_at = now
        halved = max(1, self._limit // 2)
        changed = halved != self._limit
        self._limit = halved
        return changed

    def describe(self) -> str | None:
        """What status says while throttled, else None."""
        if not self.throttled:
            return None
        return (
            f"Airflow is slow or overloaded (timeouts, 429 or 5xx answers): sending at most {self._limit} "
            f"of {self.ceiling} requests at once, and retrying {self.backoff_factor():.0f}x later"
        )
