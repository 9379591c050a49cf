"""One reconciliation of an EventPipeline: each part observes, plans (in `planning/`), applies,
and reports an outcome; this module runs the parts in order and builds the status report.

Level-based and idempotent. What the pipeline owns outside itself comes from its ownership
claims (`api/claim.py`), never from its status: status is a report the run writes, not an input.
The kopf handlers only call this and write what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.kube import Owner, SecretView
from eventpipeline.adapters.references import UnresolvedReferenceError
from eventpipeline.api.common import AirflowInstanceRef, BrokerRef
from eventpipeline.api.pipeline import EventPipelineStatus, PrincipalStatus
from eventpipeline.planning import conditions, handoff, naming
from eventpipeline.planning.clock import iso, utcnow
from eventpipeline.planning.conditions import Outcome
from eventpipeline.planning.readiness import listener_outcome, summarise
from eventpipeline.planning.reference_policy import NAMESPACED_REFERENCES_DISABLED, namespaced_reference_refusal
from eventpipeline.reconciler.access import reconcile_access
from eventpipeline.reconciler.claims import ClaimBook
from eventpipeline.reconciler.connection import reconcile_connection
from eventpipeline.reconciler.credentials import CredentialsStep
from eventpipeline.reconciler.deletion import finalize
from eventpipeline.reconciler.ports import AirflowTarget, BrokerTarget, ClaimStore, ClusterState, Resolver
from eventpipeline.reconciler.producer_connections import ProducerConnectionsStep
from eventpipeline.reconciler.run import (
    EventType,
    Note,
    PipelineObject,
    Run,
    StepFailedError,
    parse_pipeline,
    provisioned,
)
from eventpipeline.reconciler.schema import SchemaStep
from eventpipeline.reconciler.topic import reconcile_topic
from eventpipeline.reconciler.trigger import reconcile_trigger
from eventpipeline.reconciler.withdrawal import revoke_expired, withdraw_broker_access, withdraw_connections

# Reference failures that mean the namespace may no longer use a broker (a misconfigured broker,
# e.g. its admin Secret missing, withdraws nothing).
WITHDRAWING_REASONS = frozenset({"NamespaceNotAllowed", "ClusterBrokerNotFound", "BrokerNotFound"})

__all__ = ["Note", "PipelineObject", "PipelineReconciler", "Reconciled", "parse_pipeline"]


# Reasons of failures that go away by themselves: retried with backoff, not at the next resync.
TRANSIENT_REASONS = frozenset({"BackendUnavailable", "BackendError", "ClaimChanged"})


@dataclass
class Reconciled:
    status: EventPipelineStatus
    notes: list[Note] = field(default_factory=list)
    # (condition, reason) of each part this run found failing (for metrics; the status says more)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def transient_failure(self) -> str | None:
        """The message of a failure worth retrying soon (a system briefly unreachable), if any."""
        failed = (c for c in self.status.conditions if c.status == "False" and c.reason in TRANSIENT_REASONS)
        first = next(failed, None)
        return None if first is None else f"{first.type}: {first.message}"


class ResolvedOnce:
    """One run's resolver: each reference is read (fresh) at its first use in the run and reused by
    the run's later parts; a creation used the same Airflow instance and its Secret three times."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._brokers: dict[tuple[str, str, str | None], BrokerTarget] = {}
        self._airflows: dict[tuple[str, str, str], AirflowTarget] = {}

    def broker(self, ref: BrokerRef, namespace: str | None) -> BrokerTarget:
        key = (ref.kind, ref.name, namespace)
        if key not in self._brokers:
            self._brokers[key] = self._resolver.broker(ref, namespace)
        return self._brokers[key]

    def airflow(self, ref: AirflowInstanceRef, namespace: str) -> AirflowTarget:
        key = (ref.kind, ref.name, namespace)
        if key not in self._airflows:
            self._airflows[key] = self._resolver.airflow(ref, namespace)
        return self._airflows[key]

    def broker_by_key(self, key: str) -> BrokerTarget:
        return self._resolver.broker_by_key(key)

    def airflow_by_key(self, key: str) -> AirflowTarget:
        return self._resolver.airflow_by_key(key)


class SecretsReadOnce:
    """One run's view of the cluster: each Secret is read at most once, then known from the run's
    own writes and deletes (a new pipeline's run read its listener's hand-off twice, a run with a
    schema its producers' Secrets twice). The next run reads afresh."""

    def __init__(self, cluster: ClusterState) -> None:
        self._cluster = cluster
        self._secrets: dict[tuple[str, str], SecretView | None] = {}

    def read_secret(self, namespace: str, name: str) -> SecretView | None:
        key = (namespace, name)
        if key not in self._secrets:
            self._secrets[key] = self._cluster.read_secret(namespace, name)
        return self._secrets[key]

    def write_secret(
        self, namespace: str, name: str, data: dict[str, str], owner: Owner | None, labels: dict[str, str]
    ) -> None:
        key = (namespace, name)
        self._secrets.pop(key, None)  # a write that fails leaves it unknown: read again if asked
        self._cluster.write_secret(namespace, name, data, owner, labels)
        self._secrets[key] = SecretView.written(data, owner)

    def delete_secret(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._secrets.pop(key, None)
        self._cluster.delete_secret(namespace, name)
        self._secrets[key] = None

    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        return self._cluster.read_config_map(namespace, name)

    def pipeline_uid(self, namespace: str, name: str) -> str | None:
        return self._cluster.pipeline_uid(namespace, name)


class PipelineReconciler:
    def __init__(
        self,
        cluster: ClusterState,
        claims: ClaimStore,
        resolver: Resolver,
        clock: Callable[[], datetime] = utcnow,
        *,
        allow_namespaced_references: bool = False,
        listener_namespace: str = naming.DEFAULT_LISTENER_NAMESPACE,
    ) -> None:
        self._cluster = cluster
        self._claims = claims
        self._resolver = resolver
        self._clock = clock
        self._allow_namespaced = allow_namespaced_references
        self._listener_namespace = listener_namespace

    def reconcile(self, pipeline: PipelineObject) -> Reconciled:
        run = Run(pipeline, self._clock(), pipeline.status.model_copy(deep=True))
        resolver = ResolvedOnce(self._resolver)
        cluster = SecretsReadOnce(self._cluster)
        if pipeline.spec.suspend:
            run.outcomes.append(
                Outcome("Ready", "False", "Suspended", "spec.suspend is true; only expired credentials are revoked")
            )
            self._revoke_expired(run, resolver, cluster)
            return self._finish(run, summarise_parts=False)
        claims: ClaimBook | None = None
        try:
            self._check_reference_kinds(run)
            claims = self._claim_book(run, cluster)
            broker = self._resolve_broker(run, claims, resolver, cluster)
            self._run_parts(run, claims, broker, resolver, cluster)
        except StepFailedError:
            self._revoke_expired(run, resolver, cluster, claims)
        if claims is not None:
            self._report_principals(run, claims)
        return self._finish(run)

    def _revoke_expired(
        self, run: Run, resolver: Resolver, cluster: ClusterState, claims: ClaimBook | None = None
    ) -> None:
        """Expired generations are revoked on time even when the rest of the run cannot proceed."""
        try:
            claims = claims or ClaimBook(self._claims, cluster, run.pipeline.identity)
            run.notes.extend(revoke_expired(run.pipeline, claims, resolver, run.now))
        except AdapterError as error:
            run.note("Warning", "RevocationPending", f"could not revoke an expired credential yet: {error}")

    def _run_parts(
        self, run: Run, claims: ClaimBook, broker: BrokerTarget, resolver: Resolver, cluster: ClusterState
    ) -> None:
        topic = reconcile_topic(run, claims, broker)
        connections = ProducerConnectionsStep(run, claims, resolver, broker, allow_namespaced=self._allow_namespaced)
        pulsar = broker.spec.pulsar
        description = handoff.describe(
            topic.name,
            topic.dead_letter,
            broker.spec.type,
            self._airflow_access(run, resolver),
            pulsar_admin_url=pulsar.admin_url if pulsar is not None else None,
        )
        credentials = CredentialsStep(
            run,
            claims,
            broker,
            cluster,
            listener_namespace=self._listener_namespace,
            deliveries=connections,
            handoff_description=description,
        )
        plans = credentials.plan()
        credentials.record_new_generations(plans)
        credentials.issue(plans)
        reconcile_access(run, claims, broker, topic, plans)
        credentials.write_secrets(plans)
        connections.apply(credentials, plans)  # before revoking: a connection never holds only a revoked name
        credentials.revoke(plans)
        SchemaStep(run, claims, broker, cluster, resolver, handoff=credentials.listener_handoff).reconcile(topic)
        run.ok(
            "CredentialsReady",
            "CredentialsIssued",
            f"{sum(1 for item in plans if item.principal is not None)} principal(s) have a current credential",
        )
        reconcile_connection(run, claims=claims, resolver=resolver, broker=broker, credentials=credentials, plans=plans)
        reconcile_trigger(run, resolver)

    def _airflow_access(self, run: Run, resolver: Resolver) -> handoff.AirflowAccess | None:
        """The Airflow API and credential the listener triggers with, while this pipeline may use them.

        A reference that does not resolve hands over none; the connection step reports why.
        """
        airflow = run.pipeline.spec.airflow
        if airflow is None or airflow.trigger is None:
            return None
        try:
            settings = resolver.airflow(airflow.instance_ref, run.pipeline.namespace).settings
        except AdapterError:
            return None
        return handoff.AirflowAccess(settings.api_url, settings.username, settings.password)

    def _check_reference_kinds(self, run: Run) -> None:
        """Namespaced Brokers / AirflowInstances only where a cluster admin switched them on."""
        spec = run.pipeline.spec
        refs: list[tuple[str, str, str]] = [("TopicReady", spec.broker_ref.kind, spec.broker_ref.name)]
        if spec.airflow is not None:
            refs.append(("AirflowConnectionReady", spec.airflow.instance_ref.kind, spec.airflow.instance_ref.name))
        for condition, kind, name in refs:
            message = namespaced_reference_refusal(kind, name, self._allow_namespaced)
            if message is not None:
                raise run.fail(condition, NAMESPACED_REFERENCES_DISABLED, message)

    def _claim_book(self, run: Run, cluster: ClusterState) -> ClaimBook:
        try:
            return ClaimBook(self._claims, cluster, run.pipeline.identity)
        except AdapterError as error:
            raise run.fail("TopicReady", error.reason, str(error)) from error

    def _resolve_broker(self, run: Run, claims: ClaimBook, resolver: Resolver, cluster: ClusterState) -> BrokerTarget:
        try:
            broker = resolver.broker(run.pipeline.spec.broker_ref, run.pipeline.namespace)
        except UnresolvedReferenceError as error:
            if error.reason in WITHDRAWING_REASONS:
                # The namespace may no longer use the broker (or it is gone): take back what it was given.
                pending = self._withdraw(run, claims, cluster)
                if pending is not None:
                    # A condition, not an Event per attempt: an Event only when what is pending changes.
                    raise run.fail(
                        "TopicReady",
                        "AccessWithdrawalPending",
                        f"{error}; taking back what the pipeline was given is pending and retried: {pending}",
                    ) from error
            raise run.fail("TopicReady", error.reason, str(error)) from error
        except AdapterError as error:
            raise run.fail("TopicReady", error.reason, str(error)) from error
        run.report.broker_type = broker.spec.type
        return broker

    def _withdraw(self, run: Run, claims: ClaimBook, cluster: ClusterState) -> str | None:
        """Withdraw what the pipeline holds: the listener's hand-off, access on every broker it holds
        principals on, its Airflow connections; each on its own, so a broker gone for good keeps
        nothing else back. Returns what is still pending, or None."""
        pipeline = run.pipeline

        def drop_handoff() -> list[Note]:
            cluster.delete_secret(
                self._listener_namespace, naming.listener_secret_name(pipeline.namespace, pipeline.name)
            )
            return []

        steps: list[tuple[str, Callable[[], list[Note]]]] = [("the listener's hand-off", drop_handoff)]
        for system in sorted({claim.spec.system for claim in claims.owned("Principal")}):
            withdraw = partial(withdraw_broker_access, pipeline, claims, self._resolver, cluster, system)
            steps.append((f"access on {system}", withdraw))
        steps.append(("Airflow connections", partial(withdraw_connections, claims, self._resolver)))
        pending = []
        for what, step in steps:
            try:
                run.notes.extend(step())
            except AdapterError as error:
                pending.append(f"{what}: {error}")
        return "; ".join(pending) or None

    def _report_principals(self, run: Run, claims: ClaimBook) -> None:
        """status.principals: a copy of the claims' records, for people and dashboards."""
        reported = []
        for claim in claims.owned("Principal"):
            record = claim.spec.credential
            if record is None or claim.spec.principal is None:
                continue
            reported.append(
                PrincipalStatus(
                    name=claim.spec.principal,
                    role=record.role,
                    secret_name=naming.secret_name(run.pipeline.name, claim.spec.principal),
                    username=record.username,
                    generation=record.generation,
                    rotated_at=record.rotated_at,
                    next_rotation_at=record.next_rotation_at,
                    previous_username=record.previous_username,
                    previous_revoke_at=record.previous_revoke_at,
                )
            )
        spec = run.pipeline.spec
        no_secret = {producer.name for producer in spec.producers if not producer.secret}
        connections = {
            claim.spec.principal: claim.spec.name
            for claim in claims.owned("AirflowConnection")
            if claim.spec.principal is not None and claim.spec.holds is not None
        }
        for principal in reported:
            if principal.name in no_secret:
                principal.secret_name = None
            principal.airflow_connection = connections.get(principal.name)
        run.report.principals = reported
        requests = [
            claim.spec.credential.rotate_request for claim in claims.owned("Principal") if claim.spec.credential
        ]
        run.report.rotate_request = next((request for request in requests if request), None)

    def _finish(self, run: Run, summarise_parts: bool = True) -> Reconciled:
        pipeline = run.pipeline
        if summarise_parts:
            parts = [outcome for outcome in run.outcomes if outcome.type != "Ready"]
            outcomes = summarise(
                pipeline.spec, parts, listener_outcome(pipeline.spec, pipeline.status.listener, run.now)
            )
        else:
            outcomes = run.outcomes
        before = pipeline.status.conditions
        if not before:  # the pipeline's first run: what it set up is one Event
            run.notes = provisioned(run.notes)
        run.report.conditions = conditions.merge_conditions(before, outcomes, pipeline.generation, iso(run.now))
        run.report.observed_generation = pipeline.generation
        for condition in conditions.changed(before, run.report.conditions):
            if condition.type == "Ready" or condition.status != "True":
                level: EventType = "Normal" if condition.status == "True" else "Warning"
                run.note(level, condition.reason, f"{condition.type}={condition.status}: {condition.message}")
        failures = [(outcome.type, outcome.reason) for outcome in run.outcomes if outcome.status == "False"]
        return Reconciled(run.report, run.notes, failures)

    def pending_cleanup(self, pipeline: PipelineObject, error: str) -> EventPipelineStatus:
        """The status to show while deletion waits: what is still recorded, and why it is not gone yet."""
        try:
            claims = ClaimBook(self._claims, self._cluster, pipeline.identity).owned()
            left = ", ".join(f"{claim.spec.kind} {claim.spec.name}" for claim in claims) or "nothing recorded"
        except AdapterError:
            left = "unknown (the ownership claims could not be read)"
        outcome = Outcome("Ready", "False", "CleanupPending", f"deleting; still to remove: {left}; last error: {error}")
        status = pipeline.status.model_copy(deep=True)
        status.conditions = conditions.merge_conditions(
            pipeline.status.conditions, [outcome], pipeline.generation, iso(self._clock())
        )
        return status

    def finalize(self, pipeline: PipelineObject) -> list[Note]:
        """Remove what the pipeline's claims record; raises AdapterError for the caller to retry."""
        notes = finalize(pipeline, ClaimBook(self._claims, self._cluster, pipeline.identity), self._resolver)
        self._cluster.delete_secret(
            self._listener_namespace, naming.listener_secret_name(pipeline.namespace, pipeline.name)
        )
        return notes
