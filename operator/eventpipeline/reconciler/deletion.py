"""Deletion: remove exactly what the pipeline's claims record, never a recomputed guess.

Each object is removed before its claim is released, so a deletion interrupted at any point
resumes with what is left. A topic with `deletionPolicy: Retain` keeps its claim: the record
that it exists (a pipeline created again under the same name adopts it).
"""

from __future__ import annotations

from eventpipeline.adapters.claims import StoredClaim
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL
from eventpipeline.planning import naming
from eventpipeline.reconciler.backends import Ownership
from eventpipeline.reconciler.claims import ClaimBook
from eventpipeline.reconciler.ports import Resolver
from eventpipeline.reconciler.run import Note, PipelineObject


def finalize(pipeline: PipelineObject, claims: ClaimBook, resolver: Resolver) -> list[Note]:
    """Remove the Airflow connection, access, topics per deletionPolicy, then credentials.

    Raises AdapterError when a system does not answer; the caller retries with backoff and
    reports what is still pending.
    """
    notes: list[Note] = []
    for claim in claims.owned("AirflowConnection"):
        resolver.airflow_by_key(claim.spec.system).connections.delete(claim.spec.name)
        claims.release(claim)
        notes.append(Note("Normal", "AirflowConnectionDeleted", f"deleted Airflow connection {claim.spec.name}"))
    principals = claims.owned("Principal")
    topics = claims.owned("Topic", "DeadLetterTopic")
    for claim in topics:
        _remove_topic(pipeline, claim=claim, principals=principals, claims=claims, resolver=resolver, notes=notes)
    for claim in principals:
        backend = resolver.broker_by_key(claim.spec.system).backend
        record = claim.spec.credential
        for username in record.valid_usernames() if record is not None else []:
            backend.revoke_credential(username)
        claims.release(claim)
    if principals:
        notes.append(Note("Normal", "CredentialsRevoked", f"{len(principals)} principal(s) revoked"))
    return notes


def _remove_topic(
    pipeline: PipelineObject,
    *,
    claim: StoredClaim,
    principals: list[StoredClaim],
    claims: ClaimBook,
    resolver: Resolver,
    notes: list[Note],
) -> None:
    backend = resolver.broker_by_key(claim.spec.system).backend
    usernames = {
        username
        for principal in principals
        if principal.spec.system == claim.spec.system and principal.spec.credential is not None
        for username in principal.spec.credential.valid_usernames()
    }
    groups = [
        naming.consumer_group(pipeline.namespace, pipeline.name, principal.spec.principal or LISTENER_PRINCIPAL)
        for principal in principals
    ] + [
        naming.external_consumer_group(pipeline.namespace, pipeline.name, external) for external in claim.spec.externals
    ]
    backend.remove_access(
        claim.spec.name, groups, Ownership(frozenset(usernames), frozenset(claim.spec.externals)), None
    )
    if pipeline.spec.topic.deletion_policy == "Delete":
        backend.delete_topic(claim.spec.name)
        claims.release(claim)
        notes.append(Note("Normal", "TopicDeleted", f"deleted topic {claim.spec.name} (deletionPolicy Delete)"))
    else:
        notes.append(Note("Normal", "TopicRetained", f"kept topic {claim.spec.name} (deletionPolicy Retain)"))
