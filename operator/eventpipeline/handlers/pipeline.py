"""Handlers of EventPipeline: reconcile on change and on a timer, clean up on deletion."""

from __future__ import annotations

import time
from typing import Any

import kopf

from eventpipeline.adapters.errors import AdapterError
from eventpipeline.api.common import GROUP, VERSION, wire
from eventpipeline.handlers import context
from eventpipeline.planning.credentials import next_due
from eventpipeline.reconciler.pipeline import (
    Note,
    TopicClaim,
    listener_changed,
    parse_pipeline,
    rotation_pending,
    utcnow,
)

RESOURCE = (GROUP, VERSION, "eventpipelines")


def broker_key(namespace: str, spec: kopf.Spec) -> str:
    ref = spec.get("brokerRef", {})
    kind = ref.get("kind", "ClusterBroker")
    return f"{kind}/{'' if kind.startswith('Cluster') else namespace}/{ref.get('name', '')}"


@kopf.index(*RESOURCE)
def topic_claims(
    *, namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any
) -> dict[str, TopicClaim] | None:
    """(broker, resolved topic) → the pipelines that hold it; used to refuse a second owner."""
    topic = status.get("topic")
    if not topic:
        return None
    key = broker_key(namespace or "", spec)
    return {f"{key}|{topic}": TopicClaim(f"{namespace}/{name}", str(meta.get("creationTimestamp", "")), key)}


def _emit(body: kopf.Body, notes: list[Note]) -> None:
    for note in notes:
        kopf.event(body, type=note.type, reason=note.reason, message=note.message[:1000])


def _reconcile(body: kopf.Body, topic_claims: kopf.Index[str, TopicClaim]) -> None:
    """Reconcile from the object as it is now, and write its status before letting go of it.

    kopf's `body` can predate the status the previous run wrote (a timer and a change handler
    may hold the same old snapshot), and kopf applies handler patches only after the handler
    returns; reading fresh and writing status under the object's lock keeps runs in sequence.
    """
    services = context.services()
    metadata = body["metadata"]
    with context.object_lock(metadata["uid"]):
        current = services.kube.get_custom("eventpipelines", metadata["name"], metadata["namespace"])
        if current is None or current["metadata"].get("deletionTimestamp"):
            return
        pipeline = parse_pipeline(current)
        context.record_full_check(pipeline.uid, time.monotonic())
        result = services.reconciler.reconcile(
            pipeline, lambda broker, topic: list(topic_claims.get(f"{broker}|{topic}", []))
        )
        # status.listener belongs to the trigger listener; the controller never writes it.
        old = {key: value for key, value in wire(pipeline.status).items() if key != "listener"}
        new = {key: value for key, value in wire(result.status).items() if key != "listener"}
        if new != old:
            # A merge patch keeps keys it is not told to remove: null out what disappeared.
            services.kube.patch_status(
                "eventpipelines",
                pipeline.name,
                pipeline.namespace,
                {**{key: None for key in old if key not in new}, **new},
            )
    _emit(body, result.notes)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def reconcile_on_change(*, body: kopf.Body, **kwargs: Any) -> None:
    _reconcile(body, kwargs["topic_claims"])


@kopf.timer(*RESOURCE, interval=context.DUE_CHECK_SECONDS, initial_delay=context.DUE_CHECK_SECONDS, idle=5)
def reconcile_periodically(*, body: kopf.Body, **kwargs: Any) -> None:
    """Performs rotations and revocations as they fall due, and every RESYNC_SECONDS repairs drift
    (ACLs, grants, Secrets, connections). Between those, a look costs no I/O."""
    pipeline = parse_pipeline(dict(body))
    now = utcnow()
    due = next_due(pipeline.status.principals)
    credential_due = (due is not None and now >= due) or rotation_pending(pipeline)
    if credential_due or listener_changed(pipeline, now) or context.full_check_due(pipeline.uid, time.monotonic()):
        _reconcile(body, kwargs["topic_claims"])


@kopf.on.delete(*RESOURCE)
def finalize(*, body: kopf.Body, retry: int, **_: Any) -> None:
    pipeline = parse_pipeline(dict(body))
    try:
        with context.object_lock(pipeline.uid):
            notes = context.services().reconciler.finalize(pipeline)
    except AdapterError as error:
        if retry + 1 < context.DELETE_ATTEMPTS:
            raise kopf.TemporaryError(
                f"cleanup failed, will retry: {error}", delay=context.DELETE_BACKOFF_SECONDS
            ) from error
        kopf.event(
            body,
            type="Warning",
            reason="CleanupAbandoned",
            message=f"gave up after {context.DELETE_ATTEMPTS} attempts, leaving broker-side leftovers: {error}"[:1000],
        )
        return
    _emit(body, notes)
    context.forget(pipeline.uid)
