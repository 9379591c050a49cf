"""What the handlers share: settings read once at start-up and the long-lived service objects."""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf
from kubernetes import client

from eventpipeline.adapters.claims import KubeClaims
from eventpipeline.adapters.kube import Kube, load_api_client
from eventpipeline.api.common import GROUP
from eventpipeline.planning import naming, schedule
from eventpipeline.planning.reference_policy import allow_namespaced_references
from eventpipeline.planning.schedule import DueSchedule, Handled
from eventpipeline.reconciler.pipeline import PipelineReconciler
from eventpipeline.reconciler.references import References


def _seconds(variable: str, default: float) -> float:
    return float(os.environ.get(variable, default))


# How often converged objects are re-checked for drift and due rotations.
RESYNC_SECONDS = _seconds("EVENTPIPELINE_RESYNC_SECONDS", 300)
# At most this many drift checks per second (0: no limit): above RESYNC_SECONDS x this many
# pipelines (3,000 at the defaults), each pipeline is checked less often than every resync period
# (planning/schedule.py: drift_period). About 5 ms of CPU each: 10 a second is ~5 % of a core.
MAX_DRIFT_CHECKS_PER_SECOND = _seconds("EVENTPIPELINE_MAX_DRIFT_CHECKS_PER_SECOND", 10)
# The least time between a pipeline's run and a run for what its status says is due (a rotation,
# a listener report): a due step that a run cannot clear is retried this often, not in a loop.
DUE_CHECK_SECONDS = min(RESYNC_SECONDS, _seconds("EVENTPIPELINE_DUE_CHECK_SECONDS", 30))
# Deletion retries with exponential backoff from this delay, for as long as it takes.
DELETE_BACKOFF_SECONDS = _seconds("EVENTPIPELINE_DELETE_BACKOFF_SECONDS", 10)
DELETE_MAX_BACKOFF_SECONDS = _seconds("EVENTPIPELINE_DELETE_MAX_BACKOFF_SECONDS", 300)
# Retries of a reconciliation that failed on a transient error (1 s doubling up to this).
TRANSIENT_MAX_BACKOFF_SECONDS = 60.0
# Reconciliations in parallel (kopf runs synchronous handlers in a thread pool).
WORKERS = int(_seconds("EVENTPIPELINE_WORKERS", 16))
# Objects kopf works on at once (its per-object workers; the others wait in their queues). Unbounded,
# a wave of 10,000 new pipelines had kopf patch all of them at once: the API server reset the
# connections and the controller grew past 3 GiB.
OBJECT_WORKERS = int(_seconds("EVENTPIPELINE_OBJECT_WORKERS", 4 * WORKERS))
# How long an idle per-object worker keeps its place before it lets another object have it.
OBJECT_IDLE_SECONDS = 1.0


@dataclass
class Services:
    # One Kubernetes client (one connection pool) for every call the handlers make themselves:
    # reads and writes, claims, Events of scheduled runs.
    api: client.ApiClient
    kube: Kube
    references: References
    reconciler: PipelineReconciler


_services: Services | None = None
_services_lock = threading.Lock()
_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
# Every pipeline's next due time, for the one scheduler (handlers/schedule.py).
_schedule = DueSchedule(
    RESYNC_SECONDS, DUE_CHECK_SECONDS, TRANSIENT_MAX_BACKOFF_SECONDS, MAX_DRIFT_CHECKS_PER_SECOND or None
)
_schedule_lock = threading.Lock()
_wakers: list[Callable[[], None]] = []
# Each pipeline's last reconciliation that ended without a transient failure (kopf's repeats skip).
_handled: dict[str, Handled] = {}
T = TypeVar("T")


def services() -> Services:
    """The one set of clients of this process, built on first use. Under a lock: a restarted
    controller's first runs start together in kopf's threads, and each built a set of its own (12
    at 1,000 pipelines: 12 connection pools, admin clients and broker listings, ~400 MiB more)."""
    global _services  # noqa: PLW0603 - one set of clients per process, built on first use
    if _services is not None:
        return _services
    with _services_lock:
        if _services is None:
            _services = _build_services()
    return _services


def _build_services() -> Services:
    api = load_api_client(pool_size=WORKERS * 2)
    kube = Kube(api)
    references = References(kube)
    reconciler = PipelineReconciler(
        kube,
        KubeClaims(api),
        references,
        allow_namespaced_references=allow_namespaced_references(os.environ),
        listener_namespace=os.environ.get(naming.LISTENER_NAMESPACE_ENV, naming.DEFAULT_LISTENER_NAMESPACE),
    )
    return Services(api, kube, references, reconciler)


def transient_backoff(retry: int) -> float:
    """Delay before retrying a reconciliation that failed on a transient error: 1 s doubling to 60 s."""
    return schedule.transient_backoff(retry, TRANSIENT_MAX_BACKOFF_SECONDS)


def delete_backoff(retry: int) -> float:
    """Delay before cleanup attempt `retry + 1`: doubling, capped; deletion never gives up by itself."""
    return float(min(DELETE_BACKOFF_SECONDS * 2 ** min(retry, 16), DELETE_MAX_BACKOFF_SECONDS))


def object_lock(uid: str) -> threading.Lock:
    """Timers and change handlers of one object must not reconcile it at the same time."""
    return _locks[uid]


def with_schedule(use: Callable[[DueSchedule], T], *, wake: bool = True) -> T:
    """Read or change the schedule of every pipeline (thread-safe); a change wakes the scheduler."""
    with _schedule_lock:
        result = use(_schedule)
    if wake:
        for waker in _wakers:
            waker()
    return result


def on_schedule_change(waker: Callable[[], None]) -> None:
    _wakers.append(waker)


def record_full_check(uid: str, now: float) -> None:
    """A reconciliation of `uid` begins: its next drift check is one resync period from `now`."""
    with_schedule(lambda due: due.started(uid, now))


def last_handled(uid: str) -> Handled | None:
    return _handled.get(uid)


def record_handled(uid: str, handled: Handled | None) -> None:
    """The last run ended without a transient failure, on `handled` (None: it failed)."""
    if handled is None:
        _handled.pop(uid, None)
    else:
        _handled[uid] = handled


def forget(uid: str) -> None:
    with_schedule(lambda due: due.forget(uid), wake=False)
    _locks.pop(uid, None)
    _handled.pop(uid, None)


def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Our own Events say what changed; kopf's per-handler success Events would drown them.
    settings.posting.level = logging.ERROR
    settings.execution.max_workers = WORKERS
    settings.queueing.worker_limit = OBJECT_WORKERS
    settings.queueing.idle_timeout = OBJECT_IDLE_SECONDS
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300
