"""One reconciliation of an EventPipeline: spec + observed state → broker, Secrets, Airflow, status.

Level-based and idempotent: every run reads what exists, plans with `planning/`, applies the
difference through a backend, and returns the new status and the Events worth emitting. The kopf
handlers only call this and write what it returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import SecretStr

from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.kube import (
    FINGERPRINT_ANNOTATION,
    PIPELINE_LABEL,
    PRINCIPAL_LABEL,
    Kube,
    Owner,
    fingerprint,
)
from eventpipeline.api.common import API_VERSION, GROUP, parse_duration
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL, EventPipelineSpec, EventPipelineStatus, PrincipalStatus
from eventpipeline.planning import conditions, naming
from eventpipeline.planning import secrets as secret_formats
from eventpipeline.planning.conditions import Outcome
from eventpipeline.planning.credentials import iso, parse_iso, plan_credential, status_after, valid_usernames
from eventpipeline.planning.principals import grantees, managed_principals
from eventpipeline.planning.topic import DesiredTopic
from eventpipeline.reconciler.backends import BrokerBackend, Ownership
from eventpipeline.reconciler.references import References, ResolvedBroker

ROTATE_ANNOTATION = f"{GROUP}/rotate"

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Note:
    """An Event to emit on the pipeline."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class PipelineObject:
    """The parts of an EventPipeline object a reconciliation needs, parsed once."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    created: str
    annotations: dict[str, str]
    spec: EventPipelineSpec
    status: EventPipelineStatus

    @property
    def owner(self) -> Owner:
        return Owner(API_VERSION, "EventPipeline", self.name, self.uid)

    @property
    def ownership(self) -> Ownership:
        return Ownership(
            naming.pipeline_principal_prefix(self.namespace, self.name), frozenset(self.status.external_principals)
        )


@dataclass(frozen=True)
class TopicClaim:
    pipeline: str  # namespace/name
    created: str
    broker: str


# Finds the pipelines that have resolved a topic on a broker (from the kopf index).
ClaimLookup = Callable[[str, str], list[TopicClaim]]


@dataclass
class Reconciled:
    status: EventPipelineStatus
    notes: list[Note] = field(default_factory=list)


class StepFailedError(Exception):
    """A step ended the reconciliation early; its outcome is already recorded."""


@dataclass
class _Run:
    """The mutable record of one reconciliation: outcomes, notes, the status being built."""

    pipeline: PipelineObject
    now: datetime
    status: EventPipelineStatus
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def ok(self, condition: str, reason: str, message: str) -> None:
        self.outcomes.append(Outcome(condition, "True", reason, message))

    def fail(self, condition: str, reason: str, message: str) -> StepFailedError:
        self.outcomes.append(Outcome(condition, "False", reason, message))
        return StepFailedError(message)

    def note(self, type_: EventType, reason: str, message: str) -> None:
        self.notes.append(Note(type_, reason, message))


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class PipelineReconciler:
    def __init__(self, kube: Kube, references: References, clock: Callable[[], datetime] = utcnow) -> None:
        self._kube = kube
        self._references = references
        self._clock = clock

    # -- reconcile ------------------------------------------------------------------------

    def reconcile(self, pipeline: PipelineObject, claims: ClaimLookup) -> Reconciled:
        run = _Run(pipeline, self._clock(), pipeline.status.model_copy(deep=True))
        if pipeline.spec.suspend:
            run.outcomes.append(Outcome("Ready", "False", "Suspended", "spec.suspend is true; nothing is changed"))
            return self._finish(run, summarise=False)
        try:
            broker = self._resolve_broker(run)
            topic = self._topic(run, broker, claims)
            secrets_to_write = self._credentials(run, broker.backend)
            self._access(run, broker.backend, topic)
            self._write_secrets(run, secrets_to_write)
            self._revoke_leftovers(run, broker.backend)
            self._airflow(run, broker.backend, topic)
        except StepFailedError:
            pass
        return self._finish(run)

    def _finish(self, run: _Run, summarise: bool = True) -> Reconciled:
        parts = [outcome for outcome in run.outcomes if outcome.type != "Ready"]
        if summarise:
            reached = {outcome.type for outcome in parts}
            expected = ["TopicReady", "CredentialsReady", "AccessReady"]
            if run.pipeline.spec.airflow is not None:
                expected.append("AirflowConnectionReady")
            blocked = next((outcome for outcome in parts if outcome.status != "True"), None)
            for missing in (condition for condition in expected if condition not in reached):
                waiting = f"waiting for {blocked.type}" if blocked else "not reached"
                parts.append(Outcome(missing, "Unknown", "Waiting", waiting))
            outcomes = [conditions.ready_summary(parts), *parts]
            listener = listener_outcome(run.pipeline, run.now)
            if listener is not None:
                outcomes.append(listener)
                if listener.status == "False" and outcomes[0].status == "True":
                    outcomes[0] = Outcome("Ready", "False", listener.reason, listener.message)
        else:
            outcomes = run.outcomes
        before = run.pipeline.status.conditions
        now = iso(run.now)
        run.status.conditions = conditions.merge_conditions(before, outcomes, run.pipeline.generation, now)
        run.status.observed_generation = run.pipeline.generation
        for condition in conditions.changed(before, run.status.conditions):
            if condition.type == "Ready" or condition.status != "True":
                level: EventType = "Normal" if condition.status == "True" else "Warning"
                run.note(level, condition.reason, f"{condition.type}={condition.status}: {condition.message}")
        return Reconciled(run.status, run.notes)

    def _resolve_broker(self, run: _Run) -> ResolvedBroker:
        try:
            broker = self._references.broker(run.pipeline.spec.broker_ref, run.pipeline.namespace)
        except AdapterError as error:
            raise run.fail("TopicReady", error.reason, str(error)) from error
        run.status.broker_type = broker.spec.type
        return broker

    def _topic(self, run: _Run, broker: ResolvedBroker, claims: ClaimLookup) -> str:
        pipeline = run.pipeline
        spec = pipeline.spec.topic
        try:
            topic = naming.topic_name(broker.spec.topic_template, pipeline.namespace, pipeline.name, spec.name)
        except naming.NamingError as error:
            raise run.fail("TopicReady", "TopicNameNotAllowed", str(error)) from error
        full_name = broker.backend.full_topic(topic, pipeline.namespace)
        me = f"{pipeline.namespace}/{pipeline.name}"
        rivals = [claim for claim in claims(broker.key, full_name) if claim.pipeline != me]
        # A pipeline that already holds the topic keeps it; only when two hold it (they raced
        # on creation) does the older one win.
        holds = pipeline.status.topic == full_name
        contenders = rivals if not holds else [c for c in rivals if (c.created, c.pipeline) < (pipeline.created, me)]
        if contenders:
            owner = min(contenders, key=lambda claim: (claim.created, claim.pipeline)).pipeline
            self._withdraw_access(run, broker.backend, topic)
            raise run.fail(
                "TopicReady",
                "TopicConflict",
                f"topic {full_name} is owned by pipeline {owner}; pick another topic.name",
            )
        desired = DesiredTopic(topic, spec.partitions, spec.replication_factor, spec.config)
        try:
            result = broker.backend.ensure_topic(desired, pipeline.namespace)
            if dead_letter_topic(run.pipeline.spec, topic):
                broker.backend.ensure_topic(
                    DesiredTopic(naming.dead_letter_topic(topic), 1, spec.replication_factor, {}), pipeline.namespace
                )
        except AdapterError as error:
            raise run.fail("TopicReady", error.reason, str(error)) from error
        run.status.topic = result.name
        run.status.partitions = result.partitions
        if result.created:
            run.note("Normal", "TopicCreated", f"created topic {result.name} with {result.partitions} partition(s)")
        if result.grown_from is not None:
            run.note(
                "Normal",
                "PartitionsGrown",
                f"topic {result.name}: {result.grown_from} → {result.partitions} partitions",
            )
        if result.config_changed:
            run.note("Normal", "TopicConfigured", f"topic {result.name}: set {', '.join(result.config_changed)}")
        if result.shrink_refused_from is not None:
            message = (
                f"topic {result.name} has {result.shrink_refused_from} partitions and cannot shrink to "
                f"{spec.partitions}; set topic.partitions to at least {result.shrink_refused_from}"
            )
            raise run.fail("TopicReady", "PartitionsCannotShrink", message)
        run.ok("TopicReady", "TopicReady", f"topic {result.name} has {result.partitions} partition(s)")
        return topic

    def _credentials(self, run: _Run, backend: BrokerBackend) -> dict[str, tuple[str, dict[str, str]]]:
        """Issue, rotate or repair each principal's credential on the broker; returns Secrets to write."""
        pipeline = run.pipeline
        credentials = pipeline.spec.credentials
        rotate_every, grace = parse_duration(credentials.rotate_every), parse_duration(credentials.grace_period)
        requested = pipeline.annotations.get(ROTATE_ANNOTATION)
        rotate_requested = requested is not None and requested != pipeline.status.rotate_request
        previous = {principal.name: principal for principal in pipeline.status.principals}
        to_write: dict[str, tuple[str, dict[str, str]]] = {}
        statuses: list[PrincipalStatus] = []
        rotated = False
        try:
            for principal in managed_principals(pipeline.spec):
                base = naming.principal_base(pipeline.namespace, pipeline.name, principal.name)
                current = previous.get(principal.name)
                plan = plan_credential(base, current, run.now, rotate_requested)
                secret_name = naming.secret_name(pipeline.name, principal.name)
                rotated = rotated or plan.step == "rotate"
                if plan.step in ("issue", "rotate"):
                    credential = backend.issue_credential(plan.username, run.now, (rotate_every, grace))
                    to_write[principal.name] = (secret_name, backend.secret_data(plan.username, credential))
                    verb = "issued" if plan.step == "issue" else "rotated to"
                    run.note(
                        "Normal",
                        "CredentialIssued" if plan.step == "issue" else "CredentialRotated",
                        f"{principal.role} {principal.name}: {verb} generation {plan.generation} ({plan.username})",
                    )
                elif current is not None and not self._credential_intact(run, backend, secret_name, current):
                    credential = backend.issue_credential(current.username, run.now, (rotate_every, grace))
                    to_write[principal.name] = (secret_name, backend.secret_data(current.username, credential))
                    run.note(
                        "Warning",
                        "CredentialRepaired",
                        f"{principal.role} {principal.name}: Secret {secret_name} or broker credential was changed "
                        "or removed outside the operator; issued a new one",
                    )
                statuses.append(
                    status_after(
                        plan,
                        current,
                        name=principal.name,
                        role=principal.role,
                        secret_name=secret_name,
                        now=run.now,
                        rotate_every=rotate_every,
                        grace_period=grace,
                    )
                )
        except AdapterError as error:
            raise run.fail("CredentialsReady", error.reason, str(error)) from error
        run.status.principals = statuses
        if rotate_requested and (rotated or not any(p.previous_username for p in statuses)):
            # A request made mid-grace waits for the revocation, then rotates on a later run.
            run.status.rotate_request = requested
        run.ok("CredentialsReady", "CredentialsIssued", f"{len(statuses)} principal(s) have a current credential")
        return to_write

    def _credential_intact(self, run: _Run, backend: BrokerBackend, secret_name: str, current: PrincipalStatus) -> bool:
        found = self._kube.read_secret(run.pipeline.namespace, secret_name)
        if found is None:
            return False
        data, annotations = found
        if annotations.get(FINGERPRINT_ANNOTATION) != fingerprint(data):
            return False
        if data.get("username", data.get("role")) != current.username:
            return False
        return backend.credential_exists(current.username)

    def _access(self, run: _Run, backend: BrokerBackend, topic: str) -> None:
        pipeline = run.pipeline
        usernames = {principal.name: valid_usernames(principal) for principal in run.status.principals}
        wanted = grantees(pipeline.spec, pipeline.namespace, pipeline.name, usernames)
        externals = sorted({external.principal for external in pipeline.spec.external_principals})
        ownership = Ownership(
            pipeline.ownership.principal_prefix, frozenset(pipeline.status.external_principals) | set(externals)
        )
        try:
            result = backend.sync_access(
                topic, pipeline.namespace, wanted, ownership, dead_letter_topic(run.pipeline.spec, topic)
            )
        except AdapterError as error:
            raise run.fail("AccessReady", error.reason, str(error)) from error
        run.status.external_principals = externals
        if result.added or result.removed:
            first_time = not any(c.type == "AccessReady" and c.status == "True" for c in pipeline.status.conditions)
            reason = "AccessGranted" if first_time else "AccessRepaired"
            run.note(
                "Normal" if first_time else "Warning",
                reason,
                f"{result.added} grant(s) added, {result.removed} removed: {'; '.join(result.details[:10])}",
            )
        run.ok("AccessReady", "AccessReady", f"{len(wanted)} principal(s) have exactly their access, nothing more")

    def _write_secrets(self, run: _Run, to_write: dict[str, tuple[str, dict[str, str]]]) -> None:
        pipeline = run.pipeline
        try:
            for principal, (secret_name, data) in to_write.items():
                labels = {PIPELINE_LABEL: pipeline.name, PRINCIPAL_LABEL: principal}
                self._kube.write_secret(pipeline.namespace, secret_name, data, pipeline.owner, labels)
        except AdapterError as error:
            raise run.fail("CredentialsReady", error.reason, str(error)) from error

    def _revoke_leftovers(self, run: _Run, backend: BrokerBackend) -> None:
        """Revoke the previous generation after its grace period, and principals no longer in the spec."""
        pipeline = run.pipeline
        kept = {principal.name: principal for principal in run.status.principals}
        try:
            for old in pipeline.status.principals:
                new = kept.get(old.name)
                if new is None:
                    for username in valid_usernames(old):
                        backend.revoke_credential(username)
                    self._kube.delete_secret(pipeline.namespace, old.secret_name)
                    run.note(
                        "Normal", "PrincipalRemoved", f"{old.role} {old.name}: credentials revoked, Secret deleted"
                    )
                elif old.previous_username and new.previous_username is None:
                    backend.revoke_credential(old.previous_username)
                    run.note(
                        "Normal",
                        "CredentialRevoked",
                        f"{old.role} {old.name}: previous generation {old.previous_username} revoked",
                    )
        except AdapterError as error:
            raise run.fail("CredentialsReady", error.reason, str(error)) from error

    def _airflow(self, run: _Run, backend: BrokerBackend, topic: str) -> None:
        pipeline = run.pipeline
        airflow = pipeline.spec.airflow
        if airflow is None:
            return
        connection_id = naming.connection_id(topic, airflow.connection_id)
        listener = next(p for p in run.status.principals if p.name == LISTENER_PRINCIPAL)
        try:
            resolved = self._references.airflow(airflow.instance_ref, pipeline.namespace)
            found = self._kube.read_secret(pipeline.namespace, listener.secret_name)
            if found is None:
                raise run.fail(
                    "AirflowConnectionReady", "CredentialMissing", f"Secret {listener.secret_name} is missing"
                )
            data = found[0]
            credential = SecretStr(data.get("password") or data.get("token") or "")
            group = naming.consumer_group(pipeline.namespace, pipeline.name, LISTENER_PRINCIPAL)
            payload = backend.connection_payload(connection_id, listener.username, credential, group)
            wanted_hash = secret_formats.fingerprint(payload)
            current = (
                run.status.airflow_connection_hash == wanted_hash and run.status.airflow_connection == connection_id
            )
            if not current or not resolved.connections.exists(connection_id):
                resolved.connections.put(payload)
                reason = (
                    "AirflowConnectionWritten"
                    if run.status.airflow_connection_hash is None
                    else "AirflowConnectionUpdated"
                )
                if current:
                    reason = "AirflowConnectionRepaired"
                run.note("Warning" if current else "Normal", reason, f"Airflow connection {connection_id} written")
            if run.status.airflow_connection and run.status.airflow_connection != connection_id:
                resolved.connections.delete(run.status.airflow_connection)
        except AdapterError as error:
            raise run.fail("AirflowConnectionReady", error.reason, str(error)) from error
        run.status.airflow_connection = connection_id
        run.status.airflow_connection_hash = wanted_hash
        run.ok(
            "AirflowConnectionReady",
            "ConnectionInSync",
            f"Airflow connection {connection_id} matches the listener's credential",
        )

    def _withdraw_access(self, run: _Run, backend: BrokerBackend, topic: str) -> None:
        """On a topic conflict, take back whatever this pipeline may have been granted on it."""
        # The conflict condition is the news; the next run retries a withdrawal that failed.
        with contextlib.suppress(AdapterError):
            backend.sync_access(topic, run.pipeline.namespace, [], run.pipeline.ownership, None)

    # -- deletion -------------------------------------------------------------------------

    def finalize(self, pipeline: PipelineObject) -> list[Note]:
        """Remove credentials, access and the Airflow connection; the topic per deletionPolicy.

        Raises AdapterError when a system does not answer, so the caller can retry a bounded
        number of times before giving up.
        """
        notes: list[Note] = []
        try:
            broker = self._references.broker(pipeline.spec.broker_ref, pipeline.namespace)
        except AdapterError as error:
            if error.transient:
                raise
            notes.append(Note("Warning", error.reason, f"broker unusable, nothing removed on it: {error}"))
            return notes
        backend = broker.backend
        topic = None
        if pipeline.status.topic:
            template = broker.spec.topic_template
            topic = naming.topic_name(template, pipeline.namespace, pipeline.name, pipeline.spec.topic.name)
            groups = [
                naming.consumer_group(pipeline.namespace, pipeline.name, p.name) for p in pipeline.status.principals
            ]
            groups += [
                naming.external_consumer_group(pipeline.namespace, pipeline.name, external)
                for external in pipeline.status.external_principals
            ]
            dead_letter = dead_letter_topic(pipeline.spec, topic)
            backend.remove_access(topic, pipeline.namespace, groups, pipeline.ownership, dead_letter)
        for principal in pipeline.status.principals:
            for username in valid_usernames(principal):
                backend.revoke_credential(username)
        notes.append(Note("Normal", "CredentialsRevoked", f"{len(pipeline.status.principals)} principal(s) revoked"))
        if pipeline.spec.airflow is not None and pipeline.status.airflow_connection:
            resolved = self._references.airflow(pipeline.spec.airflow.instance_ref, pipeline.namespace)
            resolved.connections.delete(pipeline.status.airflow_connection)
            notes.append(Note("Normal", "AirflowConnectionDeleted", f"deleted {pipeline.status.airflow_connection}"))
        if topic is not None and pipeline.spec.topic.deletion_policy == "Delete":
            backend.delete_topic(topic, pipeline.namespace)
            dead_letter = dead_letter_topic(pipeline.spec, topic)
            if dead_letter is not None:
                backend.delete_topic(dead_letter, pipeline.namespace)
            notes.append(
                Note("Normal", "TopicDeleted", f"deleted topic {pipeline.status.topic} (deletionPolicy Delete)")
            )
        elif topic is not None:
            notes.append(Note("Normal", "TopicRetained", f"kept topic {pipeline.status.topic} (deletionPolicy Retain)"))
        return notes


# A listener that has not reported for this long is considered gone.
LISTENER_STALE_AFTER = timedelta(minutes=2)


def listener_outcome(pipeline: PipelineObject, now: datetime) -> Outcome | None:
    """ListenerReady from what the listener reports in status.listener (the listener writes only that).

    Before any listener has reported, the condition is Unknown and does not hold `Ready` back:
    the controller can be ready before the data plane is deployed.
    """
    airflow = pipeline.spec.airflow
    if airflow is None or airflow.trigger is None:
        return None
    reported = pipeline.status.listener
    if reported is None or reported.updated_at is None:
        return Outcome(
            "ListenerReady", "Unknown", "WaitingForListener", "no listener has reported for this pipeline yet"
        )
    if reported.error:
        return Outcome("ListenerReady", "False", "ListenerError", reported.error)
    if now - parse_iso(reported.updated_at) > LISTENER_STALE_AFTER:
        return Outcome(
            "ListenerReady",
            "False",
            "ListenerSilent",
            f"listener {reported.replica or ''} last reported at {reported.updated_at}; check that it runs",
        )
    return Outcome("ListenerReady", "True", "Listening", f"served by listener {reported.replica or ''}".strip())


def rotation_pending(pipeline: PipelineObject) -> bool:
    """Whether the rotate annotation asks for a rotation not yet performed."""
    requested = pipeline.annotations.get(ROTATE_ANNOTATION)
    return requested is not None and requested != pipeline.status.rotate_request


def listener_changed(pipeline: PipelineObject, now: datetime) -> bool:
    """Whether what the listener reports would change the ListenerReady condition (no I/O)."""
    outcome = listener_outcome(pipeline, now)
    current = next((c for c in pipeline.status.conditions if c.type == "ListenerReady"), None)
    if outcome is None or current is None:
        return outcome is not None or current is not None
    return (outcome.status, outcome.reason) != (current.status, current.reason)


def dead_letter_topic(spec: EventPipelineSpec, topic: str) -> str | None:
    """The dead-letter topic when the pipeline triggers Airflow with dead-lettering on."""
    trigger = spec.airflow.trigger if spec.airflow is not None else None
    if trigger is None or not trigger.dead_letter.enabled:
        return None
    return naming.dead_letter_topic(topic)


def parse_pipeline(body: dict[str, Any]) -> PipelineObject:
    """Parse a kopf body once, at the boundary."""
    metadata = body["metadata"]
    return PipelineObject(
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata["uid"],
        generation=metadata.get("generation"),
        created=metadata.get("creationTimestamp", ""),
        annotations=dict(metadata.get("annotations") or {}),
        spec=EventPipelineSpec.model_validate(body.get("spec") or {}),
        status=EventPipelineStatus.model_validate(_own_status(body.get("status") or {})),
    )


def _own_status(status: dict[str, Any]) -> dict[str, Any]:
    """Status fields of ours only (kopf or older versions may have left others)."""
    known = set(EventPipelineStatus.model_fields) | {
        field.alias for field in EventPipelineStatus.model_fields.values() if field.alias
    }
    return {key: value for key, value in status.items() if key in known}
