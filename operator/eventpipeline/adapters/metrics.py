"""Prometheus metrics of the controller: the calls adapters make (what an idle operator costs each
system), reconciliation errors by reason, and the age and next rotation of every credential."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import ParamSpec, TypeVar

from prometheus_client import Counter, Gauge

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

# ---- what a reconciliation found, per pipeline ---------------------------------------------

RECONCILE_ERRORS = Counter(
    "eventpipeline_reconcile_errors",
    "Reconciliations that ended with a part failing, by the part's condition and reason.",
    ["condition", "reason"],
)
CREDENTIAL_ROTATED = Gauge(
    "eventpipeline_credential_rotated_timestamp_seconds",
    "When the principal's current credential was issued (Unix time); its age is time() minus this.",
    ["pipeline", "principal"],
)
CREDENTIAL_NEXT_ROTATION = Gauge(
    "eventpipeline_credential_next_rotation_timestamp_seconds",
    "When the principal's credential is due to rotate (Unix time); overdue when in the past.",
    ["pipeline", "principal"],
)
# Conditions the controller does not decide: ListenerReady reports what the listener says.
_NOT_RECONCILE_CONDITIONS = frozenset({"Ready", "ListenerReady"})


class PipelineMetrics:
    """The series of one controller about its pipelines; a pipeline's go when it is deleted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._principals: dict[str, set[str]] = {}

    def reconciled(self, pipeline: str, failures: Iterable[tuple[str, str]], credentials: Iterable[Credential]) -> None:
        """After one reconciliation: its failed parts `(condition, reason)`, and the credentials
        `(principal, rotated at, next rotation at)` it reports."""
        for condition, reason in set(failures):
            if condition not in _NOT_RECONCILE_CONDITIONS:
                RECONCILE_ERRORS.labels(condition, reason).inc()
        seen = set()
        for principal, rotated_at, next_rotation_at in credentials:
            seen.add(principal)
            CREDENTIAL_ROTATED.labels(pipeline, principal).set(rotated_at.timestamp())
            CREDENTIAL_NEXT_ROTATION.labels(pipeline, principal).set(next_rotation_at.timestamp())
        with self._lock:
            gone = self._principals.get(pipeline, set()) - seen
            self._principals[pipeline] = seen
        self._remove(pipeline, gone)

    def forget(self, pipeline: str) -> None:
        with self._lock:
            gone = self._principals.pop(pipeline, set())
        self._remove(pipeline, gone)

    @staticmethod
    def _remove(pipeline: str, principals: Iterable[str]) -> None:
        for principal in principals:
            for gauge in (CREDENTIAL_ROTATED, CREDENTIAL_NEXT_ROTATION):
                with contextlib.suppress(KeyError):
                    gauge.remove(pipeline, principal)


PIPELINES = PipelineMetrics()
