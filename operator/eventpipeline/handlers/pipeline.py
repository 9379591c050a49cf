"""Handlers of EventPipeline: reconcile on change, clean up on deletion (the periodic runs are
handlers/schedule.py's)."""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any, cast

import kopf

from eventpipeline.adapters import metrics
from eventpipeline.adapters.drift import WatchedCopies, drift_reads
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.api.common import GROUP, VERSION, wire
from eventpipeline.api.pipeline import EventPipelineStatus
from eventpipeline.api.resources import EVENT_PIPELINE
from eventpipeline.handlers import context
from eventpipeline.planning.clock import parse_iso
from eventpipeline.planning.schedule import Handled, repeats_last_run
from eventpipeline.reconciler.pipeline import Note, PipelineObject, Reconciled, parse_pipeline
from eventpipeline.reconciler.run import ROTATE_ANNOTATION

RESOURCE = (GROUP, VERSION, EVENT_PIPELINE.plural)
LOG = logging.getLogger("eventpipeline.handlers.pipeline")
# Each pipeline as the watch last showed it (what a run reads of it, as compressed JSON by uid, kept
# by the scheduler's kopf index): a drift check reconciles from it instead of reading the object,
# unless the status this operator wrote last has not come back through the watch yet. Compressed:
# ~0.9 KB instead of ~2.8 KB per pipeline (bench/operator/retained_memory.py), for ~50 us per watch
# event and ~30 us per drift check.
COPIES: WatchedCopies[str, bytes] = WatchedCopies()


# What of an object's metadata a run reads (`parse_pipeline`); the rest (managedFields, kopf's
# last-handled copy of the spec, labels, finalizers) is not kept in the drift copies.
_RUN_METADATA = ("namespace", "name", "uid", "generation", "resourceVersion")


def drift_copy(body: kopf.Body | dict[str, Any]) -> dict[str, Any]:
    """The part of a pipeline object a reconciliation reads: its identity, generation, rotation
    request, spec and status (about half of a reconciled object's JSON)."""
    metadata = body["metadata"]
    kept: dict[str, Any] = {key: metadata[key] for key in _RUN_METADATA if key in metadata}
    rotate = (metadata.get("annotations") or {}).get(ROTATE_ANNOTATION)
    if rotate is not None:
        kept["annotations"] = {ROTATE_ANNOTATION: rotate}
    return {"metadata": kept, "spec": body.get("spec") or {}, "status": body.get("status") or {}}


def remember(body: kopf.Body) -> None:
    """Keep the watch's copy of a pipeline for drift checks (what a run reads); forget one being deleted."""
    metadata = body["metadata"]
    uid = metadata["uid"]
    if metadata.get("deletionTimestamp"):
        COPIES.forget(uid)
        return
    copy = zlib.compress(json.dumps(drift_copy(body), separators=(",", ":")).encode(), 1)
    COPIES.seen(uid, str(metadata.get("resourceVersion", "")), copy)


def _current(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The object as it is now: in a drift check the watch's copy if it holds our last write, else read."""
    copy = COPIES.lookup(metadata["uid"])
    if copy is not None:
        return cast(dict[str, Any], json.loads(zlib.decompress(copy.value)))
    return context.services().kube.read_pipeline(metadata["namespace"], metadata["name"])


def _essence(metadata: dict[str, Any]) -> tuple[int | None, str | None]:
    """What a run reads from the object itself (`PipelineObject`): its generation and rotation request."""
    return metadata.get("generation"), (metadata.get("annotations") or {}).get(ROTATE_ANNOTATION)


def _write_status(pipeline: PipelineObject, status: EventPipelineStatus) -> None:
    """Write a run's status report if it changed (the caller holds the object's lock)."""
    # status.listener belongs to the trigger listener; the controller never writes it.
    old = {key: value for key, value in wire(pipeline.status).items() if key != "listener"}
    new = {key: value for key, value in wire(status).items() if key != "listener"}
    if new != old:
        # A merge patch keeps keys it is not told to remove: null out what disappeared.
        version: str | None = None
        try:
            version = context.services().kube.patch_status(
                EVENT_PIPELINE.plural,
                pipeline.name,
                pipeline.namespace,
                {**{key: None for key in old if key not in new}, **new},
            )
        finally:
            COPIES.written(pipeline.uid, version)  # None (failed): the watch's copy waits a period


def _emit(body: kopf.Body, notes: list[Note]) -> None:
    for note in notes:
        kopf.event(body, type=note.type, reason=note.reason, message=note.message[:1000])


def reconcile(
    body: kopf.Body, emit: Callable[[kopf.Body, list[Note]], None] = _emit, *, skip_repeat: bool = False
) -> str | None:
    """Reconcile from the object as it is now, and write its status before letting go of it.

    kopf's `body` can predate the status the previous run wrote (a timer and a change handler
    may hold the same old snapshot), and kopf applies handler patches only after the handler
    returns; reading fresh and writing status under the object's lock keeps runs in sequence.
    With `skip_repeat` (kopf's change handlers), a run that would repeat the last clean run (same
    generation and rotation request) is skipped: the scheduler's drift check follows that run.
    """
    metadata = body["metadata"]
    with context.object_lock(metadata["uid"]):
        if skip_repeat and repeats_last_run(context.last_handled(metadata["uid"]), _essence(metadata)):
            # kopf's own earlier state taken for a change (nearly every creation of a wave): a newer
            # state comes with an event of its own, so this one needs no read of the object.
            return None
        services = context.services()
        current = _current(metadata)
        if current is None or current["metadata"].get("deletionTimestamp"):
            return None
        pipeline = parse_pipeline(current)
        essence = (pipeline.generation, pipeline.rotate_request)
        if skip_repeat and repeats_last_run(context.last_handled(pipeline.uid), essence):
            LOG.debug("%s/%s repeats its last run; skipped", pipeline.namespace, pipeline.name)
            return None
        context.record_full_check(pipeline.uid, time.monotonic())
        result = services.reconciler.reconcile(pipeline)
        _write_status(pipeline, result.status)
        clean = result.transient_failure is None
        context.record_handled(pipeline.uid, Handled(essence) if clean else None)
    emit(body, result.notes)
    _measure(pipeline, result)
    return result.transient_failure


def _measure(pipeline: PipelineObject, result: Reconciled) -> None:
    """The reconciliation's failed parts and its credentials' timestamps, as metrics."""
    metrics.PIPELINES.reconciled(
        f"{pipeline.namespace}/{pipeline.name}",
        result.failures,
        [
            (p.name, parse_iso(p.rotated_at), parse_iso(p.next_rotation_at))
            for p in result.status.principals
            if p.rotated_at and p.next_rotation_at
        ],
    )


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def reconcile_on_change(*, body: kopf.Body, reason: str, retry: int, **_: Any) -> None:
    """Reconcile; a transient failure (a broker or Airflow briefly unreachable) is retried with
    backoff from about 1 s up to about 60 s instead of waiting for the periodic resync.

    A resumed pipeline (the controller started, the object unchanged since it was last handled) is
    checked like a drift check, from the brokers' per-period listings: a restart at 10,000
    pipelines would otherwise read every topic, user and ACL one by one, about 50,000 rate-limited
    admin calls (over 16 minutes at 50 calls/s) before the controller could take a new pipeline
    in its stride. Its retries read fresh, as every retry does."""
    metrics.HANDLER_RUNS.labels(str(reason)).inc()
    with drift_reads(context.RESYNC_SECONDS if reason == kopf.Reason.RESUME and retry == 0 else None):
        failure = reconcile(body, skip_repeat=True)
    if failure is not None:
        raise kopf.TemporaryError(f"will retry: {failure}", delay=context.transient_backoff(retry))


@kopf.on.delete(*RESOURCE)
def finalize(*, body: kopf.Body, retry: int, **_: Any) -> None:
    """Remove what the pipeline's claims record; retried with backoff until everything is gone."""
    pipeline = parse_pipeline(dict(body))
    try:
        with context.object_lock(pipeline.uid):
            notes = context.services().reconciler.finalize(pipeline)
    except AdapterError as error:
        delay = context.delete_backoff(retry)
        # Reported like every run: the status written when it changed, under the object's lock.
        with context.object_lock(pipeline.uid):
            _write_status(pipeline, context.services().reconciler.pending_cleanup(pipeline, str(error)))
        message = f"cleanup attempt {retry + 1} failed, retrying in {delay:.0f}s: {error}"
        _emit(body, [Note("Warning", "CleanupPending", message)])
        raise kopf.TemporaryError(f"cleanup failed, will retry: {error}", delay=delay) from error
    _emit(body, notes)
    context.forget(pipeline.uid)
    COPIES.forget(pipeline.uid)
    metrics.PIPELINES.forget(f"{pipeline.namespace}/{pipeline.name}")
