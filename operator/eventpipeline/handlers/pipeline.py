"""Handlers of EventPipeline: reconcile on change and on a timer, clean up on deletion."""

from __future__ import annotations

import time
from typing import Any

import kopf

from eventpipeline.adapters import metrics
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.api.common import GROUP, VERSION, wire
from eventpipeline.api.resources import EVENT_PIPELINE
from eventpipeline.handlers import context
from eventpipeline.planning.clock import parse_iso, utcnow
from eventpipeline.planning.credentials import next_due
from eventpipeline.planning.readiness import listener_changed
from eventpipeline.reconciler.pipeline import Note, PipelineObject, Reconciled, parse_pipeline

RESOURCE = (GROUP, VERSION, EVENT_PIPELINE.plural)


def _emit(body: kopf.Body, notes: list[Note]) -> None:
    for note in notes:
        kopf.event(body, type=note.type, reason=note.reason, message=note.message[:1000])


def _reconcile(body: kopf.Body) -> str | None:
    """Reconcile from the object as it is now, and write its status before letting go of it.

    kopf's `body` can predate the status the previous run wrote (a timer and a change handler
    may hold the same old snapshot), and kopf applies handler patches only after the handler
    returns; reading fresh and writing status under the object's lock keeps runs in sequence.
    """
    services = context.services()
    metadata = body["metadata"]
    with context.object_lock(metadata["uid"]):
        current = services.kube.get_custom(EVENT_PIPELINE.plural, metadata["name"], metadata["namespace"])
        if current is None or current["metadata"].get("deletionTimestamp"):
            return None
        pipeline = parse_pipeline(current)
        context.record_full_check(pipeline.uid, time.monotonic())
        result = services.reconciler.reconcile(pipeline)
        # status.listener belongs to the trigger listener; the controller never writes it.
        old = {key: value for key, value in wire(pipeline.status).items() if key != "listener"}
        new = {key: value for key, value in wire(result.status).items() if key != "listener"}
        if new != old:
            # A merge patch keeps keys it is not told to remove: null out what disappeared.
            services.kube.patch_status(
                EVENT_PIPELINE.plural,
                pipeline.name,
                pipeline.namespace,
                {**{key: None for key in old if key not in new}, **new},
            )
    _emit(body, result.notes)
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
def reconcile_on_change(*, body: kopf.Body, retry: int, **_: Any) -> None:
    """Reconcile; a transient failure (a broker or Airflow briefly unreachable) is retried with
    backoff from about 1 s up to about 60 s instead of waiting for the periodic resync."""
    failure = _reconcile(body)
    if failure is not None:
        raise kopf.TemporaryError(f"will retry: {failure}", delay=context.transient_backoff(retry))


def _looks_due(pipeline: PipelineObject) -> bool:
    """A hint from the status report that a credential step or a listener change is due.

    Only a hint: what is done is decided from the claims, and the periodic full check runs
    regardless, so an edited status can at most delay a step until the next full check.
    """
    now = utcnow()
    due = next_due(m for p in pipeline.status.principals for m in (p.next_rotation_at, p.previous_revoke_at))
    requested = pipeline.rotate_request is not None and pipeline.rotate_request != pipeline.status.rotate_request
    status = pipeline.status
    return (
        (due is not None and now >= due)
        or requested
        or listener_changed(pipeline.spec, status.listener, status.conditions, now)
    )


@kopf.timer(*RESOURCE, interval=context.DUE_CHECK_SECONDS, initial_delay=context.DUE_CHECK_SECONDS, idle=5)
def reconcile_periodically(*, body: kopf.Body, **_: Any) -> None:
    """Performs rotations and revocations as they fall due, and every RESYNC_SECONDS repairs drift
    (ACLs, grants, Secrets, connections). Between those, a look costs no I/O."""
    pipeline = parse_pipeline(dict(body))
    if _looks_due(pipeline) or context.full_check_due(pipeline.uid, time.monotonic()):
        _reconcile(body)


@kopf.on.delete(*RESOURCE)
def finalize(*, body: kopf.Body, retry: int, **_: Any) -> None:
    """Remove what the pipeline's claims record; retried with backoff until everything is gone."""
    pipeline = parse_pipeline(dict(body))
    try:
        with context.object_lock(pipeline.uid):
            notes = context.services().reconciler.finalize(pipeline)
    except AdapterError as error:
        delay = context.delete_backoff(retry)
        services = context.services()
        pending = services.reconciler.pending_cleanup(pipeline, str(error))
        conditions = [wire(condition) for condition in pending.conditions]
        services.kube.patch_status(EVENT_PIPELINE.plural, pipeline.name, pipeline.namespace, {"conditions": conditions})
        kopf.event(
            body,
            type="Warning",
            reason="CleanupPending",
            message=f"cleanup attempt {retry + 1} failed, retrying in {delay:.0f}s: {error}"[:1000],
        )
        raise kopf.TemporaryError(f"cleanup failed, will retry: {error}", delay=delay) from error
    _emit(body, notes)
    context.forget(pipeline.uid)
    metrics.PIPELINES.forget(f"{pipeline.namespace}/{pipeline.name}")
