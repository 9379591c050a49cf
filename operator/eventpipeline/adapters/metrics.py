"""Prometheus counters of the calls adapters make: what an idle operator costs each system."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prometheus_client import Counter

from eventpipeline.adapters.ratelimit import RateLimiter

P = ParamSpec("P")
R = TypeVar("R")

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
