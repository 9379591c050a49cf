"""Prometheus metrics of the controller: the calls adapters make (what an idle operator costs each
system), reconciliation errors by reason, and the age and next rotation of every credential."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import ParamSpec, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from eventpipeline.adapters.ratelimit import RateLimiter

P = ParamSpec("P")
R = TypeVar("R")
# (principal, rotated at, next rotation at)
Credential = tuple[str, datetime, datetime]

BACKEND_CALLS = Counter(
    "eventpipeline_backend_calls_total",
    "Calls the operator made to Kafka, Pulsar, Airflow and Kubernetes, by operation and outcome.",
    ["system", "operation", "outcome"],
)


def counted(system: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count every call of the decorated adapter method, and whether it raised.

    When the adapter object has a `rate_limiter`, the call first waits for its turn.
    """

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            limiter: RateLimiter | None = getattr(args[0], "rate_limiter", None) if args else None
            if limiter is not None:
                limiter.acquire()
            try:
                result = method(*args, **kwargs)
            except Exception:
                BACKEND_CALLS.labels(system, method.__name__, "error").inc()
                raise
            BACKEND_CALLS.labels(system, method.__name__, "ok").inc()
            return result

        return wrapper

    return decorate


SCHEDULED_RUNS = Counter(
    "eventpipeline_scheduled_runs",
    "Reconciliations the scheduler started, by why: drift (the periodic check), hint (a rotation or "
    "listener report due), retry (after a transient failure).",
    ["reason"],
)

DRIFT_PERIOD = Gauge(
    "eventpipeline_drift_period_seconds",
    "Seconds from a pipeline's reconciliation to its next drift check: the resync period, longer when "
    "the pipelines would need more drift checks a second than allowed.",
)

HANDLER_RUNS = Counter(
    "eventpipeline_change_runs",
    "Reconciliations kopf's change handlers started, by why: create, update, resume (the object as "
    "it was when the controller started), including their retries.",
    ["reason"],
)

# ---- what a reconciliation found, per pipeline ---------------------------------------------

RECONCILE_ERRORS = Counter(
    "eventpipeline_reconcile_errors",
    "Reconciliations that ended with a part failing, by the part's condition and reason.",
    ["condition", "reason"],
)


class CredentialTimes(Collector):
    """Every pipeline's credential timestamps, kept as numbers and turned into the two gauges at
    scrape time: about 0.6 KB per pipeline instead of 3 KB of labelled gauge children (two gauges,
    two principals: 29 MiB at 10,000 pipelines, bench/operator/retained_memory.py)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, dict[str, tuple[float, float]]] = {}

    def set(self, pipeline: str, times: dict[str, tuple[float, float]]) -> None:
        """The pipeline's principals, each with (rotated at, next rotation at) in Unix time."""
        with self._lock:
            if times:
                self._times[pipeline] = times
            else:
                self._times.pop(pipeline, None)

    def forget(self, pipeline: str) -> None:
        with self._lock:
            self._times.pop(pipeline, None)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            kept = list(self._times.items())
        rotated, due = families = self._families()
        for pipeline, times in kept:
            for principal, (rotated_at, next_rotation_at) in times.items():
                rotated.add_metric([pipeline, principal], rotated_at)
                due.add_metric([pipeline, principal], next_rotation_at)
        return families

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["pipeline", "principal"]
        return (
            GaugeMetricFamily(
                "eventpipeline_credential_rotated_timestamp_seconds",
                "When the principal's current credential was issued (Unix time); its age is time() minus this.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "eventpipeline_credential_next_rotation_timestamp_seconds",
                "When the principal's credential is due to rotate (Unix time); overdue when in the past.",
                labels=labels,
            ),
        )


CREDENTIALS = CredentialTimes()
REGISTRY.register(CREDENTIALS)
# Conditions the controller does not decide: ListenerReady reports what the listener says.
_NOT_RECONCILE_CONDITIONS = frozenset({"Ready", "ListenerReady"})


class PipelineMetrics:
    """The series of one controller about its pipelines; a pipeline's go when it is deleted."""

    def __init__(self, credentials: CredentialTimes = CREDENTIALS) -> None:
        self._credentials = credentials

    def reconciled(self, pipeline: str, failures: Iterable[tuple[str, str]], credentials: Iterable[Credential]) -> None:
        """After one reconciliation: its failed parts `(condition, reason)`, and the credentials
        `(principal, rotated at, next rotation at)` it reports."""
        for condition, reason in set(failures):
            if condition not in _NOT_RECONCILE_CONDITIONS:
                RECONCILE_ERRORS.labels(condition, reason).inc()
        times = {principal: (rotated.timestamp(), due.timestamp()) for principal, rotated, due in credentials}
        self._credentials.set(pipeline, times)

    def forget(self, pipeline: str) -> None:
        self._credentials.forget(pipeline)


PIPELINES = PipelineMetrics()
