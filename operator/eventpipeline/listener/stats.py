"""One recorder of what a pipeline's worker did: it feeds `status.listener` and the Prometheus
metrics from the same calls, so the two never disagree and there is no second set of counters.

Counters in status carry over a listener restart (they start from the previous status);
Prometheus counters start at zero with the process, as Prometheus expects.
"""

from __future__ import annotations

import threading
from typing import Literal

from eventpipeline.api.pipeline import ListenerStatus
from eventpipeline.listener import metrics

RetryKind = Literal["transient", "refused"]


class ListenerStats:
    """Thread-safe: the worker loop, the trigger pool and the status writer all use it."""

    def __init__(self, pipeline: str, replica: str, previous: ListenerStatus | None = None) -> None:
        self._label = pipeline
        metrics.start(pipeline)
        self._lock = threading.Lock()
        self._urgent = threading.Event()
        carried = previous.model_copy() if previous is not None else ListenerStatus()
        fresh = {"replica": replica, "error": None, "updated_at": None, "stalled_partitions": None, "throttled": None}
        self._status = carried.model_copy(update=fresh)
        self._source_error: str | None = None
        self._airflow_error: str | None = None
        self._stall_error: str | None = None
        self._idle_error: str | None = None  # the consumer took nothing in front of a backlog
        self._hold_error: str | None = None

    # -- what the status writer reads ----------------------------------------------------------

    def snapshot(self) -> ListenerStatus:
        """What status.listener should say now (updatedAt is set by the writer)."""
        with self._lock:
            error = (
                self._stall_error or self._idle_error or self._source_error or self._airflow_error or self._hold_error
            )
            return self._status.model_copy(update={"error": error})

    def take_urgent(self) -> bool:
        """Whether something a user waits for changed (an error, a replay): write status soon."""
        urgent = self._urgent.is_set()
        self._urgent.clear()
        return urgent

    def forget(self) -> None:
        """Drop the pipeline's metric series (this listener stops serving it)."""
        metrics.forget(self._label)

    # -- messages ------------------------------------------------------------------------------

    def consumed(self, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self._status.consumed += count
            self._idle_error = None
        metrics.CONSUMED.labels(self._label).inc(count)

    def run_created(self, run_id: str) -> None:
        with self._lock:
            self._status.runs_created += 1
            self._status.last_run_id = run_id
        metrics.RUNS_CREATED.labels(self._label).inc()

    def duplicate(self, run_id: str) -> None:
        with self._lock:
            self._status.duplicates += 1
            self._status.last_run_id = run_id
        metrics.DUPLICATES.labels(self._label).inc()

    def retried(self, kind: RetryKind) -> None:
        with self._lock:
            self._status.retries += 1
        metrics.RETRIES.labels(self._label, kind).inc()

    def dead_lettered(self) -> None:
        with self._lock:
            self._status.dead_lettered += 1
        metrics.DEAD_LETTERED.labels(self._label).inc()

    def dropped(self) -> None:
        """Refused for good with dead-lettering disabled: committed without a run (a metric only)."""
        metrics.WITHOUT_RUN.labels(self._label).inc()

    def trigger_latency(self, seconds: float) -> None:
        metrics.TRIGGER_LATENCY.labels(self._label).observe(seconds)

    # -- the consumer --------------------------------------------------------------------------

    def flow(self, *, in_flight: int, uncommitted: int) -> None:
        metrics.IN_FLIGHT.labels(self._label).set(in_flight)
        metrics.UNCOMMITTED.labels(self._label).set(uncommitted)

    def lag(self, lag: int | None) -> None:
        with self._lock:
            self._status.lag = lag
        if lag is not None:
            metrics.LAG.labels(self._label).set(lag)

    def source_error(self, error: str | None) -> bool:
        """Record whether the consumer works; True when that changed."""
        with self._lock:
            changed = error != self._source_error
            self._source_error = error
        metrics.UP.labels(self._label).set(0 if error else 1)
        if changed:
            self._urgent.set()
        return changed

    def airflow_error(self, error: str | None) -> None:
        with self._lock:
            changed = error != self._airflow_error
            self._airflow_error = error
        if changed:
            self._urgent.set()

    # -- health: stalls, congestion -----------------------------------------------------------

    def stalled(self, partitions: list[int], why: str | None = None) -> None:
        """Partitions now stalled (empty: none), and what status.listener.error says about them."""
        with self._lock:
            before = self._status.stalled_partitions
            self._status.stalled_partitions = sorted(partitions) or None
            self._stall_error = why if partitions else None
            changed = before != self._status.stalled_partitions
        metrics.STALLED_PARTITIONS.labels(self._label).set(len(partitions))
        if changed:
            self._urgent.set()
            if partitions and not before:
                metrics.STALLS.labels(self._label).inc()

    def consumer_stalled(self, why: str) -> None:
        """The consumer itself took nothing in front of a backlog and is being reopened: counted as
        a stall, and status.listener.error says so until messages come again."""
        with self._lock:
            self._idle_error = why
        metrics.STALLS.labels(self._label).inc()
        self._urgent.set()

    def stalled_partitions(self) -> list[int]:
        with self._lock:
            return list(self._status.stalled_partitions or [])

    def progressed(self, partition: int) -> None:
        """A message of `partition` finished: the partition moves (again)."""
        with self._lock:
            stalled = self._status.stalled_partitions
            if not stalled or partition not in stalled:
                return
            left = [p for p in stalled if p != partition]
        self.stalled(left, self._stall_error if left else None)

    def throttled(self, limit: int, description: str | None) -> None:
        """The concurrency limit towards Airflow changed (`description` None: back to maxInFlight)."""
        with self._lock:
            changed = (description is None) != (self._status.throttled is None)
            self._status.throttled = description
        metrics.CONCURRENCY_LIMIT.labels(self._label).set(limit)
        if changed:
            self._urgent.set()

    def schema_hold(self, why: str | None, messages: int) -> None:
        """Messages waiting for the DAG to handle their schema version (`why` None: none wait)."""
        with self._lock:
            changed = why != self._hold_error
            self._hold_error = why
        metrics.SCHEMA_HELD.labels(self._label).set(messages)
        if changed:
            self._urgent.set()

    # -- replay --------------------------------------------------------------------------------

    def replay(self, *, request: str | None = None, outcome: str | None = None) -> None:
        """A replay request acted on and / or its outcome (a user waits for both)."""
        with self._lock:
            if request is not None:
                self._status.replay_request = request
            if outcome is not None:
                self._status.replay = outcome
        self._urgent.set()
