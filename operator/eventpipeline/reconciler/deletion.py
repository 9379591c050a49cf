"""Deletion: remove exactly what the pipeline's claims record, never a recomputed guess.

Each object is removed before its claim is released, so a deletion interrupted at any point
resumes with what is left. A topic with `deletionPolicy: Retain` keeps its claim: the record
that it exists (a pipeline created again under the same name adopts it).
"""

from __future__ import annotations

from eventpipeline.reconciler.claims import ClaimBook
from eventpipeline.reconciler.ports import Resolver
from eventpipeline.reconciler.run import Note, PipelineObject
from eventpipeline.reconciler.withdrawal import remove_topic_access, withdraw_connections


def finalize(pipeline: PipelineObject, claims: ClaimBook, resolver: Resolver) -> list[Note]:
    """Remove the Airflow connection, access, topics and schemas per deletionPolicy, then credentials.

    Raises AdapterError when a system does not answer; the caller retries with backoff and
    reports what is still pending.
    """
    notes = withdraw_connections(claims, resolver)
    notes += _remove_schemas(pipeline, claims, resolver)
    principals = claims.owned("Principal")
    for topic in claims.owned("Topic", "DeadLetterTopic"):
        backend = resolver.broker_by_key(topic.spec.system).backend
        remove_topic_access(pipeline, topic, principals, backend)
        if pipeline.spec.topic.deletion_policy == "Delete":
            backend.delete_topic(topic.spec.name)
            claims.release(topic)
            notes.append(Note("Normal", "TopicDeleted", f"deleted topic {topic.spec.name} (deletionPolicy Delete)"))
        else:
            notes.append(Note("Normal", "TopicRetained", f"kept topic {topic.spec.name} (deletionPolicy Retain)"))
    for claim in principals:
        backend = resolver.broker_by_key(claim.spec.system).backend
        record = claim.spec.credential
        for username in record.valid_usernames() if record is not None else []:
            backend.revoke_credential(username)
        claims.release(claim)
    if principals:
        notes.append(Note("Normal", "CredentialsRevoked", f"{len(principals)} principal(s) revoked"))
    return notes


def _remove_schemas(pipeline: PipelineObject, claims: ClaimBook, resolver: Resolver) -> list[Note]:
    """Schemas follow the topic's deletionPolicy: deleted with it, or kept (with their claim) with it."""
    notes = []
    for claim in claims.owned("Schema"):
        if pipeline.spec.topic.deletion_policy != "Delete":
            notes.append(
                Note("Normal", "SchemaRetained", f"kept the schemas of {claim.spec.name} (deletionPolicy Retain)")
            )
            continue
        store = resolver.broker_by_key(claim.spec.system).schemas
        if store is not None:
            store.clear(claim.spec.name)
        claims.release(claim)
        notes.append(
            Note("Normal", "SchemaDeleted", f"deleted the schemas of {claim.spec.name} (deletionPolicy Delete)")
        )
    return notes
