"""One scheduler for every EventPipeline, over the watch stream, instead of timers per object.

`watch_pipelines` sees every watch event and keeps `NAMES` (uid → namespace and name); each
event also refreshes the pipeline's due hint (`planning/schedule.py`). It is an event handler, not
a kopf index, because kopf makes every object wait until all objects are indexed, and that wait
deadlocks when kopf's per-object workers are bounded (`context.OBJECT_WORKERS`) and more objects
exist than workers. One task sleeps until
the earliest due time, then runs what is due in kopf's thread pool, at most `SCHEDULED_WORKERS`
at a time so creations and updates (kopf's own handlers, which reconcile at once) always find a
free worker. A drift check reads the brokers through their per-period snapshot
(`adapters/drift.py`), the pipeline from the watch's copy (`handlers/pipeline.py: COPIES`) and its
claims from the last listing plus our own writes (`adapters/claims.py`); a rotation, a listener
change or a retry reads fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import time
from concurrent.futures import Executor
from functools import partial
from typing import Any

import kopf

from eventpipeline.adapters import metrics
from eventpipeline.adapters.drift import drift_reads
from eventpipeline.adapters.events import EventRecorder, InvolvedObject
from eventpipeline.api.common import API_VERSION
from eventpipeline.handlers import context
from eventpipeline.handlers.pipeline import COPIES, RESOURCE, reconcile, remember
from eventpipeline.planning.clock import utcnow
from eventpipeline.planning.schedule import DueSchedule, Reason, due_hint
from eventpipeline.reconciler.pipeline import Note, parse_pipeline

LOG = logging.getLogger("eventpipeline.handlers.schedule")

# Scheduled runs in parallel: half of kopf's workers, the other half stays free for changes.
SCHEDULED_WORKERS = max(1, context.WORKERS // 2)
# The longest the scheduler sleeps without looking (a safety net; changes wake it at once).
MAX_SLEEP_SECONDS = 60.0


class PipelineNames:
    """uid → (namespace, name) of every EventPipeline the watch has shown and not yet deleted."""

    def __init__(self) -> None:
        self._names: dict[str, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._names)

    def seen(self, uid: str, namespace: str, name: str) -> None:
        self._names[uid] = (namespace, name)

    def deleted(self, uid: str) -> None:
        self._names.pop(uid, None)

    def get(self, uid: str) -> tuple[str, str] | None:
        return self._names.get(uid)


NAMES = PipelineNames()
_tasks: list[asyncio.Task[None]] = []
_recorder: EventRecorder | None = None


@kopf.on.event(*RESOURCE)
async def watch_pipelines(*, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Every watch event: the scheduler's name of the object, what the object says is due, and the
    copy of the object a drift check reconciles from (`handlers/pipeline.py: COPIES`).

    Runs on the event loop (it is cheap): as a synchronous handler it would wait for a thread
    behind the reconciliations."""
    metadata = body["metadata"]
    uid = metadata["uid"]
    if event.get("type") == "DELETED":
        NAMES.deleted(uid)
        return
    NAMES.seen(uid, metadata["namespace"], metadata["name"])
    remember(body)
    hint: float | None = None
    if not metadata.get("deletionTimestamp"):
        try:
            pipeline = parse_pipeline(dict(body))
            now = utcnow()
            at = due_hint(pipeline.spec, pipeline.status, pipeline.rotate_request, now)
            hint = None if at is None else time.monotonic() + max(0.0, (at - now).total_seconds())
        except ValueError:  # an object that does not parse: its runs report why
            hint = None
    context.with_schedule(lambda due: due.hinted(uid, hint))


@kopf.on.startup()
async def start_scheduler(*, settings: kopf.OperatorSettings, **_: Any) -> None:
    _tasks.append(asyncio.create_task(_schedule_loop(NAMES, settings.execution.executor)))


@kopf.on.cleanup()
async def stop_scheduler(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    _tasks.clear()


async def _schedule_loop(names: PipelineNames, executor: Executor) -> None:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def waker() -> None:
        loop.call_soon_threadsafe(wake.set)

    context.on_schedule_change(waker)
    slots = asyncio.Semaphore(SCHEDULED_WORKERS)
    running: set[asyncio.Task[None]] = set()
    while True:
        wake.clear()
        now = time.monotonic()
        for uid, reason in context.with_schedule(partial(DueSchedule.pop_due, now=now), wake=False):
            await slots.acquire()
            task = asyncio.create_task(_run_one(names, executor, uid, reason, slots))
            running.add(task)
            task.add_done_callback(running.discard)
        next_at, period = context.with_schedule(lambda due: (due.next_at(), due.drift_period()), wake=False)
        metrics.DRIFT_PERIOD.set(period)
        sleep = MAX_SLEEP_SECONDS if next_at is None else min(MAX_SLEEP_SECONDS, next_at - time.monotonic())
        if sleep > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=sleep)


async def _run_one(
    names: PipelineNames, executor: Executor, uid: str, reason: Reason, slots: asyncio.Semaphore
) -> None:
    """One scheduled reconciliation; whatever happens, the pipeline stays scheduled."""
    failed = False
    try:
        found = names.get(uid)
        if found is None:  # deleted
            context.forget(uid)
            COPIES.forget(uid)
            return
        namespace, name = found
        metrics.SCHEDULED_RUNS.labels(reason).inc()
        run = contextvars.copy_context().run
        loop = asyncio.get_running_loop()
        failure = await loop.run_in_executor(executor, run, _reconcile_scheduled, uid, namespace, name, reason)
        failed = failure is not None
    except Exception:  # supervised: one pipeline's bug never stops the scheduler
        LOG.exception("scheduled reconciliation of %s failed", uid)
        failed = True
    finally:
        slots.release()
    context.with_schedule(lambda due: due.finished(uid, time.monotonic(), transient_failure=failed))


def _reconcile_scheduled(uid: str, namespace: str, name: str, reason: Reason) -> str | None:
    body = kopf.Body(
        {
            "apiVersion": API_VERSION,
            "kind": "EventPipeline",
            "metadata": {"namespace": namespace, "name": name, "uid": uid},
        }
    )
    with drift_reads(context.RESYNC_SECONDS if reason == "drift" else None):
        return reconcile(body, emit=_emit_directly)


def _emit_directly(body: kopf.Body, notes: list[Note]) -> None:
    """Events of a scheduled run: written with our own client (kopf posts only from its handlers)."""
    global _recorder  # noqa: PLW0603 - one recorder per process, built on first use
    if not notes:
        return
    if _recorder is None:
        _recorder = EventRecorder(context.services().api, "eventpipeline-operator", socket.gethostname())
    metadata = body["metadata"]
    about = InvolvedObject(API_VERSION, "EventPipeline", metadata["namespace"], metadata["name"], metadata["uid"])
    for note in notes:
        _recorder.emit(about, note.type, note.reason, note.message)
