"""Handlers of EventPipeline: reconcile on change and on a timer, clean up on deletion."""

from __future__ import annotations

from typing import Any

import kopf

from eventpipeline.adapters.errors import AdapterError
from eventpipeline.api.common import GROUP, VERSION, wire
from eventpipeline.handlers import context
from eventpipeline.reconciler.pipeline import Note, TopicClaim, parse_pipeline

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


def _reconcile(body: kopf.Body, patch: kopf.Patch, topic_claims: kopf.Index[str, TopicClaim]) -> None:
    pipeline = parse_pipeline(dict(body))
    services = context.services()
    with context.object_lock(pipeline.uid):
        result = services.reconciler.reconcile(
            pipeline, lambda broker, topic: list(topic_claims.get(f"{broker}|{topic}", []))
        )
    # status.listener belongs to the trigger listener; the controller never writes it.
    old = {key: value for key, value in wire(pipeline.status).items() if key != "listener"}
    new = {key: value for key, value in wire(result.status).items() if key != "listener"}
    if new != old:
        # A merge patch keeps keys it is not told to remove: null out what disappeared.
        patch.status.update({key: None for key in old if key not in new})
        patch.status.update(new)
    _emit(body, result.notes)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def reconcile_on_change(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
    _reconcile(body, patch, kwargs["topic_claims"])


@kopf.timer(*RESOURCE, interval=context.RESYNC_SECONDS, initial_delay=context.RESYNC_SECONDS, idle=5)
def reconcile_periodically(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
    """Repairs drift (ACLs, grants, Secrets, connections) and performs due rotations."""
    _reconcile(body, patch, kwargs["topic_claims"])


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
