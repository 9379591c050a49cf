"""One scheduler for every EventPipeline, over a kopf index, instead of timers per object.

The index (`pipeline_names`, uid → namespace and name) is kept by kopf from the watch stream;
each event also refreshes the pipeline's due hint (`planning/schedule.py`). One task sleeps until
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

Names = kopf.Index[str, tuple[str, str]]
_tasks: list[asyncio.Task[None]] = []
_recorder: EventRecorder | None = None


@kopf.index(*RESOURCE)
def pipeline_names(*, body: kopf.Body, **_: Any) -> dict[str, tuple[str, str]]:
    """uid → (namespace, name) for the scheduler; also refreshes what the object says is due, and the
    copy of the object a drift check reconciles from (`handlers/pipeline.py: COPIES`)."""
    metadata = body["metadata"]
    uid = metadata["uid"]
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
    return {uid: (metadata["namespace"], metadata["name"])}


@kopf.on.startup()
async def start_scheduler(*, settings: kopf.OperatorSettings, **indices: Any) -> None:
    # kopf passes every index by its handler's name (empty at start-up, filled as objects are listed).
    names: Names = indices["pipeline_names"]
    _tasks.append(asyncio.create_task(_schedule_loop(names, settings.execution.executor)))


@kopf.on.cleanup()
async def stop_scheduler(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    _tasks.clear()


async def _schedule_loop(names: Names, executor: Executor) -> None:
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
        next_at = context.with_schedule(lambda due: due.next_at(), wake=False)
        sleep = MAX_SLEEP_SECONDS if next_at is None else min(MAX_SLEEP_SECONDS, next_at - time.monotonic())
        if sleep > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=sleep)


async def _run_one(names: Names, executor: Executor, uid: str, reason: Reason, slots: asyncio.Semaphore) -> None:
    """One scheduled reconciliation; whatever happens, the pipeline stays scheduled."""
    failed = False
    try:
        found = list(names.get(uid, ()))
        if not found:  # deleted: kopf dropped it from the index
            context.forget(uid)
            COPIES.forget(uid)
            return
        namespace, name = found[0]
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
