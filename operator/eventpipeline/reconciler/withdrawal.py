"""Taking back what a pipeline was granted: on deletion, and whenever its namespace may no longer
use a broker or an Airflow instance (removed from `allowedNamespaces`, the reference changed).

Works from the ownership claims alone, and through the recorded broker or instance without
the namespace check, since the point is to remove what the namespace may no longer have.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from eventpipeline.adapters.claims import StoredClaim
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL
from eventpipeline.planning import naming
from eventpipeline.planning.clock import parse_iso
from eventpipeline.planning.credentials import plan_removal
from eventpipeline.reconciler.backends import BrokerBackend, Ownership
from eventpipeline.reconciler.claims import ClaimBook
from eventpipeline.reconciler.ports import ClusterState, Resolver
from eventpipeline.reconciler.run import Note, PipelineObject


def remove_topic_access(
    pipeline: PipelineObject, topic: StoredClaim, principals: list[StoredClaim], backend: BrokerBackend
) -> None:
    """Every ACL / grant the pipeline's principals and externals hold on one recorded topic."""
    usernames = {
        username
        for principal in principals
        if principal.spec.system == topic.spec.system and principal.spec.credential is not None
        for username in (*principal.spec.credential.valid_usernames(), principal.spec.credential.username)
    }
    groups = [
        naming.consumer_group(pipeline.namespace, pipeline.name, principal.spec.principal or LISTENER_PRINCIPAL)
        for principal in principals
    ] + [naming.external_consumer_group(pipeline.namespace, pipeline.name, name) for name in topic.spec.externals]
    backend.remove_access(
        topic.spec.name, groups, Ownership(frozenset(usernames), frozenset(topic.spec.externals)), None
    )


def withdraw_broker_access(
    pipeline: PipelineObject, claims: ClaimBook, resolver: Resolver, cluster: ClusterState, system: str
) -> list[Note]:
    """Revoke every credential and grant the pipeline holds on one broker; the topic stays.

    The principals' records stay too, marked withdrawn: if access comes back, each principal
    starts a new generation, so no revoked name is ever valid again. Raises AdapterError when
    the broker does not answer (the caller reports it and the next run tries again).
    """
    principals = [claim for claim in claims.owned("Principal") if claim.spec.system == system]
    live = [claim for claim in principals if claim.spec.credential and not claim.spec.credential.withdrawn]
    if not live:
        return []
    backend = resolver.broker_by_key(system).backend
    for topic in claims.owned("Topic", "DeadLetterTopic"):
        if topic.spec.system == system:
            remove_topic_access(pipeline, topic, principals, backend)
    for claim in live:
        assert claim.spec.credential is not None
        plan = plan_removal(claim.spec.credential, "access-withdrawn")
        for username in plan.revoked:
            backend.revoke_credential(username)
        secret_name = naming.secret_name(pipeline.name, claim.spec.principal or "")
        found = cluster.read_secret(pipeline.namespace, secret_name)
        if found is not None and found.owned_by(pipeline.uid):
            cluster.delete_secret(pipeline.namespace, secret_name)
        claims.save(claim, claim.spec.model_copy(update={"credential": plan.record}))
    return [Note("Warning", "AccessWithdrawn", f"{len(live)} principal(s) revoked on {system}; their Secrets deleted")]


def withdraw_connections(
    claims: ClaimBook,
    resolver: Resolver,
    keep: Collection[tuple[str, str]] = (),
    *,
    producers: bool | None = None,
) -> list[Note]:
    """Delete the Airflow connections the pipeline wrote (all but those in `keep`), then forget them.

    `producers` narrows it: True, only producers' connections (their claims name the producer);
    False, only the listener's; None, all.
    """
    notes = []
    for claim in claims.owned("AirflowConnection"):
        if (claim.spec.system, claim.spec.name) in keep:
            continue
        if producers is not None and (claim.spec.principal is not None) != producers:
            continue
        resolver.airflow_by_key(claim.spec.system).connections.delete(claim.spec.name)
        claims.release(claim)
        notes.append(Note("Normal", "AirflowConnectionDeleted", f"deleted Airflow connection {claim.spec.name}"))
    return notes


def revoke_expired(pipeline: PipelineObject, claims: ClaimBook, resolver: Resolver, now: datetime) -> list[Note]:
    """Revoke previous generations whose grace period is over, whatever else fails or is suspended.

    The normal path revokes them inside a full reconciliation; this one runs when that cannot
    (spec.suspend, or an earlier part failed), so a credential is never valid past its time.
    """
    notes = []
    for claim in claims.owned("Principal"):
        record = claim.spec.credential
        if record is None or record.withdrawn or not record.previous_username or not record.previous_revoke_at:
            continue
        if now < parse_iso(record.previous_revoke_at):
            continue
        backend = resolver.broker_by_key(claim.spec.system).backend
        expired = Ownership(frozenset({record.previous_username}), frozenset())
        for topic in claims.owned("Topic", "DeadLetterTopic"):
            if topic.spec.system == claim.spec.system:
                backend.remove_access(topic.spec.name, [], expired, None)
        backend.revoke_credential(record.previous_username)
        cleared = record.model_copy(update={"previous_username": None, "previous_revoke_at": None})
        claims.save(claim, claim.spec.model_copy(update={"credential": cleared}))
        notes.append(
            Note(
                "Normal",
                "CredentialRevoked",
                f"principal {claim.spec.principal}: previous generation {record.previous_username} revoked",
            )
        )
    return notes
