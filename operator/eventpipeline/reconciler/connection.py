"""The Airflow connection part: the pipeline's connection, claimed, holding the listener's credential.

observe: the claim and whether the connection exists; plan: compare the fingerprint of the
wanted payload with the one recorded in the claim (Airflow hides passwords on read);
apply: write it, and remove connections this pipeline no longer wants; outcome:
`AirflowConnectionReady`.
"""

from __future__ import annotations

from eventpipeline.adapters.claims import StoredClaim
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.references import UnresolvedReferenceError
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL
from eventpipeline.planning import naming
from eventpipeline.planning.secrets import fingerprint, secret_credential
from eventpipeline.reconciler.claims import ClaimBook, ClaimTakenError
from eventpipeline.reconciler.credentials import CredentialsStep, PrincipalPlan
from eventpipeline.reconciler.ports import AirflowTarget, BrokerTarget, ConnectionStore, Resolver
from eventpipeline.reconciler.run import Run
from eventpipeline.reconciler.withdrawal import withdraw_connections

CONDITION = "AirflowConnectionReady"


def reconcile_connection(
    run: Run,
    *,
    claims: ClaimBook,
    resolver: Resolver,
    broker: BrokerTarget,
    credentials: CredentialsStep,
    plans: list[PrincipalPlan],
) -> None:
    pipeline = run.pipeline
    airflow = pipeline.spec.airflow
    if airflow is None:
        _withdraw(run, claims, resolver, keep=None)
        return
    try:
        connection_id = naming.connection_id(pipeline.namespace, pipeline.name, airflow.connection_id)
    except naming.NamingError as error:
        raise run.fail(CONDITION, "ConnectionIdNotAllowed", str(error)) from error
    listener = next(item for item in plans if item.principal is not None and item.principal.name == LISTENER_PRINCIPAL)
    try:
        try:
            target = resolver.airflow(airflow.instance_ref, pipeline.namespace)
        except UnresolvedReferenceError:
            _withdraw(run, claims, resolver, keep=None)  # the namespace may no longer use the instance
            raise
        data = credentials.listener_credential(listener.secret_name)
        payload = None
        if data is not None and listener.plan.record is not None:
            group = naming.consumer_group(pipeline.namespace, pipeline.name, LISTENER_PRINCIPAL)
            username = listener.plan.record.username
            payload = broker.backend.connection_payload(connection_id, username, secret_credential(data), group)
        wanted = None if payload is None else fingerprint(payload)
        claim, seen_absent = _claim(run, claims, target, connection_id, wanted)
        if payload is None or wanted is None:
            raise run.fail(CONDITION, "CredentialMissing", f"Secret {listener.secret_name} is missing")
        # A connection just read absent is written now, and its claim was taken holding `wanted`.
        recorded = None if seen_absent else claim.spec.fingerprint
        if seen_absent or recorded != wanted or not target.connections.exists(connection_id):
            target.connections.put(payload)
            claims.save(claim, claim.spec.model_copy(update={"fingerprint": wanted}))
            reason = "AirflowConnectionWritten" if recorded is None else "AirflowConnectionUpdated"
            if recorded == wanted:
                reason = "AirflowConnectionRepaired"
            run.note(
                "Warning" if recorded == wanted else "Normal", reason, f"Airflow connection {connection_id} written"
            )
        _withdraw(run, claims, resolver, keep=(target.key, connection_id))
    except AdapterError as error:
        raise run.fail(CONDITION, error.reason, str(error)) from error
    run.report.airflow_connection = connection_id
    run.ok(CONDITION, "ConnectionInSync", f"Airflow connection {connection_id} matches the listener's credential")


def _claim(
    run: Run, claims: ClaimBook, target: AirflowTarget, connection_id: str, wanted: str | None
) -> tuple[StoredClaim, bool]:
    try:
        return claim_connection(
            claims, target.key, target.connections, connection_id, field="airflow.connectionId", fingerprint=wanted
        )
    except ConnectionConflictError as conflict:
        raise run.fail(CONDITION, "ConnectionConflict", str(conflict)) from conflict


class ConnectionConflictError(Exception):
    """An Airflow connection the pipeline may not take: made by hand, or held by another pipeline."""


def claim_connection(
    claims: ClaimBook,
    system: str,
    connections: ConnectionStore,
    connection_id: str,
    *,
    field: str,
    principal: str | None = None,
    fingerprint: str | None = None,
) -> tuple[StoredClaim, bool]:
    """The pipeline's claim on an Airflow connection of instance `system`, taken if nobody holds it,
    and whether the connection was just read absent (then the caller writes it).

    A connection that exists with no pipeline's claim was made by hand and is left alone. Raises
    ConnectionConflictError, whose message says to set `field` to another id.

    `fingerprint`, of what the caller is about to write, is recorded in a claim taken for a
    connection read absent: one claim write instead of two. Should the write fail, the
    connection stays absent, and absence is what every run checks (Airflow hides passwords,
    so the fingerprint never stood for more than what the operator sent). It is not recorded
    when the connection exists (a deleted pipeline's, adopted): that one must be rewritten.
    """
    claim = claims.find("AirflowConnection", system, connection_id)
    if claim is not None:
        return claim, False
    exists = connections.exists(connection_id)
    if exists and not claims.exists_anywhere("AirflowConnection", system, connection_id):
        raise ConnectionConflictError(
            f"Airflow connection {connection_id} already exists and was not created for a pipeline; it was left "
            f"untouched. Set {field} to another id"
        )
    facts = {"fingerprint": fingerprint} if fingerprint is not None and not exists else None
    try:
        return claims.take("AirflowConnection", system, connection_id, principal=principal, facts=facts), not exists
    except ClaimTakenError as taken:
        raise ConnectionConflictError(
            f"Airflow connection {connection_id} is owned by pipeline {taken.owner}; set {field} to another id"
        ) from taken


def _withdraw(run: Run, claims: ClaimBook, resolver: Resolver, keep: tuple[str, str] | None) -> None:
    """Delete the listener connections this pipeline wrote but may no longer have or no longer wants
    (producers' connections are `producer_connections`' business)."""
    run.notes.extend(withdraw_connections(claims, resolver, () if keep is None else (keep,), producers=False))
