"""The credentials part: one ownership claim per principal, its credential planned from the claim.

observe: the claims, each principal's Secret and broker credential;
plan: `planning.credentials` — the only place that decides issue, rotate, repair and revoke;
apply: in an order that never leaves a client without a valid credential and never forgets a
name to revoke: a new generation is recorded before it exists on the broker, and a revoked one
is forgotten only after it is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from eventpipeline.adapters.claims import StoredClaim
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.kube import (
    PIPELINE_LABEL,
    PRINCIPAL_LABEL,
    SecretView,
)
from eventpipeline.api.claim import CredentialRecord
from eventpipeline.api.common import parse_duration
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL
from eventpipeline.planning import handoff, naming
from eventpipeline.planning.credentials import (
    CredentialPlan,
    ObservedCredential,
    RotationPolicy,
    plan_credential,
    plan_removal,
)
from eventpipeline.planning.principals import ManagedPrincipal, managed_principals
from eventpipeline.planning.producer_connections import Delivery
from eventpipeline.planning.schema_versions import SCHEMAS_KEY
from eventpipeline.reconciler.claims import ClaimBook, ClaimTakenError
from eventpipeline.reconciler.ports import BrokerTarget, ClusterState
from eventpipeline.reconciler.run import PipelineObject, Run

CONDITION = "CredentialsReady"


@dataclass(frozen=True)
class PrincipalPlan:
    """One principal's claim and plan; `principal` is None for a principal that left the spec."""

    claim: StoredClaim
    plan: CredentialPlan
    principal: ManagedPrincipal | None
    secret_name: str


class DeliveryObserver(Protocol):
    """Observes where else than its Secret a producer's credential goes (its Airflow connection)."""

    def delivery(self, producer: str, username: str | None) -> Delivery | None: ...


class CredentialsStep:
    """Observe and plan every principal's credential, then apply in three phases around access."""

    def __init__(
        self,
        run: Run,
        claims: ClaimBook,
        broker: BrokerTarget,
        cluster: ClusterState,
        *,
        listener_namespace: str = naming.DEFAULT_LISTENER_NAMESPACE,
        deliveries: DeliveryObserver | None = None,
        handoff_description: dict[str, str] | None = None,
    ) -> None:
        self._run = run
        self._claims = claims
        self._broker = broker
        self._cluster = cluster
        self._deliveries = deliveries
        self._no_secret = {producer.name for producer in run.pipeline.spec.producers if not producer.secret}
        self._secret_data: dict[str, dict[str, str]] = {}
        self.listener_handoff = ListenerHandoff(cluster, run.pipeline, listener_namespace, handoff_description)

    # -- observe + plan ------------------------------------------------------------------

    def plan(self) -> list[PrincipalPlan]:
        """Plans of the spec's principals, then revocations of principals no longer in it."""
        run, pipeline = self._run, self._run.pipeline
        credentials = pipeline.spec.credentials
        policy = RotationPolicy(parse_duration(credentials.rotate_every), parse_duration(credentials.grace_period))
        plans: list[PrincipalPlan] = []
        try:
            planned = []
            for principal in managed_principals(pipeline.spec):
                secret_name = naming.secret_name(pipeline.name, principal.name)
                secret = self._own_secret(secret_name)
                held = self._claims.find("Principal", self._broker.key, self._identity(principal))
                record = held.spec.credential if held is not None else None
                planned.append((principal, held, self._plan_one(principal, record, secret, policy), secret_name))
            # A principal without a claim has no record: its plan (issue generation 1, or nothing
            # when it cannot be delivered) is known before its claim is taken, so the claim is
            # created holding it: recorded before the credential exists on the broker, as phase 1
            # would record it, in one write instead of two. Taken once every principal is
            # planned, so a run stopped by a Secret conflict records no generation.
            for principal, held, plan, secret_name in planned:
                claim = held if held is not None else self._take(principal, plan.record)
                plans.append(PrincipalPlan(claim, plan, principal, secret_name))
            wanted = {plan.claim.name for plan in plans}
            for claim in self._claims.owned("Principal"):
                credential = claim.spec.credential
                if claim.name not in wanted and credential is not None and not credential.withdrawn:
                    secret_name = naming.secret_name(pipeline.name, claim.spec.principal or "")
                    removal = plan_removal(credential, "principal-removed")
                    plans.append(PrincipalPlan(claim, removal, None, secret_name))
        except AdapterError as error:
            raise run.fail(CONDITION, error.reason, str(error)) from error
        return plans

    def _plan_one(
        self,
        principal: ManagedPrincipal,
        record: CredentialRecord | None,
        secret: SecretView | None,
        policy: RotationPolicy,
    ) -> CredentialPlan:
        pipeline = self._run.pipeline
        live = record is not None and not record.withdrawn
        delivery = self._delivery(principal, record.username if record is not None and live else None)
        wants_secret = principal.name not in self._no_secret
        return plan_credential(
            username_base=naming.username_base(pipeline.namespace, pipeline.name, pipeline.uid, principal.name),
            role=principal.role,
            record=record,
            observed=self._observe(principal, secret, record.username, delivery)
            if record is not None and live
            else None,
            now=self._run.now,
            policy=policy,
            rotate_request=pipeline.rotate_request,
            deliverable=wants_secret or (delivery is not None and delivery.available),
        )

    def _identity(self, principal: ManagedPrincipal) -> str:
        pipeline = self._run.pipeline
        return naming.principal_base(pipeline.namespace, pipeline.name, principal.name)

    def _take(self, principal: ManagedPrincipal, record: CredentialRecord | None) -> StoredClaim:
        identity = self._identity(principal)
        facts = None if record is None else {"credential": record}
        try:
            return self._claims.take("Principal", self._broker.key, identity, principal=principal.name, facts=facts)
        except ClaimTakenError as taken:
            raise self._run.fail(
                CONDITION, "PrincipalConflict", f"principal {identity} is owned by pipeline {taken.owner}"
            ) from taken

    def _own_secret(self, secret_name: str) -> SecretView | None:
        """The principal's Secret if it is this pipeline's; one that belongs to anything else stops the run."""
        pipeline = self._run.pipeline
        found = self._cluster.read_secret(pipeline.namespace, secret_name)
        if found is not None and not found.owned_by(pipeline.uid):
            raise self._run.fail(
                CONDITION,
                "SecretConflict",
                f"Secret {secret_name} exists and does not belong to this pipeline; it was left untouched. "
                "Delete or rename it, or rename the pipeline or principal",
            )
        return found

    def _delivery(self, principal: ManagedPrincipal, username: str | None) -> Delivery | None:
        if principal.role != "producer" or self._deliveries is None:
            return None
        return self._deliveries.delivery(principal.name, username)

    def _observe(
        self, principal: ManagedPrincipal, secret: SecretView | None, username: str, delivery: Delivery | None
    ) -> ObservedCredential:
        """Intact when every place the credential goes holds it: the Secret (unless the producer has
        `secret: false`) and the producer's Airflow connection (unless Airflow did not answer)."""
        intact = principal.name in self._no_secret or _holds(secret, username)
        if delivery is not None and delivery.intact is False:
            intact = False
        if principal.role == "listener":
            # The listener's own copy must hold it too: it is written only from freshly issued data.
            intact = intact and _holds(self.listener_handoff.read(), username)
        return ObservedCredential(secret_intact=intact, on_broker=self._broker.backend.credential_exists(username))

    # -- apply ---------------------------------------------------------------------------

    def record_new_generations(self, plans: list[PrincipalPlan]) -> None:
        """Phase 1: a new generation is recorded (hence owned) before it exists on the broker."""
        self._guarded(lambda: self._record_new(plans))

    def _record_new(self, plans: list[PrincipalPlan]) -> None:
        for item in plans:
            issue = item.plan.issue
            if issue is not None and issue.why in ("issue", "rotate"):
                self._claims.save(item.claim, item.claim.spec.model_copy(update={"credential": item.plan.record}))

    def issue(self, plans: list[PrincipalPlan]) -> None:
        """Phase 2: create the planned credentials on the broker (their Secrets are written after access)."""
        self._guarded(lambda: self._issue(plans))

    def _issue(self, plans: list[PrincipalPlan]) -> None:
        backend = self._broker.backend
        policy = self._run.pipeline.spec.credentials
        lifetime = (parse_duration(policy.rotate_every), parse_duration(policy.grace_period))
        to_issue = [item for item in plans if item.plan.issue is not None and item.principal is not None]
        # One broker call for all of the run's new credentials (a new pipeline has two or more).
        issued = backend.issue_credentials(
            [item.plan.issue.username for item in to_issue if item.plan.issue is not None], self._run.now, lifetime
        )
        for item in to_issue:
            issue = item.plan.issue
            if issue is None or item.principal is None:
                continue
            self._secret_data[item.secret_name] = backend.secret_data(issue.username, issued[issue.username])
            role, name = item.principal.role, item.principal.name
            if issue.why == "repair":
                self._run.note(
                    "Warning",
                    "CredentialRepaired",
                    f"{role} {name}: Secret {item.secret_name}, Airflow connection or broker credential was changed, "
                    "removed or not written yet; issued a new one",
                )
            else:
                generation = item.plan.record.generation if item.plan.record else 0
                verb = "issued" if issue.why == "issue" else "rotated to"
                self._run.note(
                    "Normal",
                    "CredentialIssued" if issue.why == "issue" else "CredentialRotated",
                    f"{role} {name}: {verb} generation {generation} ({issue.username})",
                )

    def write_secrets(self, plans: list[PrincipalPlan]) -> None:
        """After access is granted: clients see a new credential only once it can be used.

        The listener's hand-off is written with a new credential, else brought up to date when
        what it describes (topic, Airflow instance) changed.
        """
        pipeline = self._run.pipeline

        def write() -> None:
            handed_over = False
            for item in plans:
                data = self._secret_data.get(item.secret_name)
                if item.principal is not None and item.principal.name in self._no_secret:
                    self._delete_own_secret(item.secret_name)  # its credential lives in Airflow only
                elif data is not None and item.principal is not None:
                    labels = {PIPELINE_LABEL: pipeline.name, PRINCIPAL_LABEL: item.principal.name}
                    self._cluster.write_secret(pipeline.namespace, item.secret_name, data, pipeline.owner, labels)
                    if item.principal.role == "listener":
                        self.listener_handoff.write(data)
                        handed_over = True
            if not handed_over:
                self.listener_handoff.refresh()

        self._guarded(write)

    def _delete_own_secret(self, secret_name: str) -> None:
        pipeline = self._run.pipeline
        found = self._cluster.read_secret(pipeline.namespace, secret_name)
        if found is not None and found.owned_by(pipeline.uid):
            self._cluster.delete_secret(pipeline.namespace, secret_name)

    def issued_data(self, secret_name: str) -> dict[str, str] | None:
        """A credential issued in this run (the Secret's keys), for the other places it is delivered to."""
        return self._secret_data.get(secret_name)

    def revoke(self, plans: list[PrincipalPlan]) -> None:
        """Phase 3: revoke for real, then forget: a name leaves the record only once it is gone."""
        self._guarded(lambda: self._revoke(plans))

    def _revoke(self, plans: list[PrincipalPlan]) -> None:
        for item in plans:
            for username in item.plan.revoked:
                self._broker.backend.revoke_credential(username)
            if item.principal is None:
                self._delete_own_secret(item.secret_name)
                if item.claim.spec.credential is not None and item.claim.spec.credential.role == "listener":
                    self.listener_handoff.delete()
                self._run.note(
                    "Normal",
                    "PrincipalRemoved",
                    f"principal {item.claim.spec.principal}: credentials revoked, Secret deleted",
                )
            elif item.plan.revoked:
                self._run.note(
                    "Normal",
                    "CredentialRevoked",
                    f"principal {item.claim.spec.principal}: previous generation "
                    f"{', '.join(item.plan.revoked)} revoked",
                )
            current = self._claims.find("Principal", item.claim.spec.system, item.claim.spec.name) or item.claim
            self._claims.save(current, current.spec.model_copy(update={"credential": item.plan.record}))

    def listener_credential(self, secret_name: str) -> dict[str, str] | None:
        """The listener's credential after this run: just issued, or the listener's own copy —
        never the tenant's Secret, whose values its namespace can edit."""
        if secret_name in self._secret_data:
            return self._secret_data[secret_name]
        found = self.listener_handoff.read()
        return handoff.with_description(found.data, {}) if found is not None else None

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except AdapterError as error:
            raise self._run.fail(CONDITION, error.reason, str(error)) from error


def _holds(secret: SecretView | None, username: str) -> bool:
    """Whether a Secret is unedited (its data matches the fingerprint written with it) and holds `username`."""
    return secret is not None and secret.unedited() and secret.data.get("username", secret.data.get("role")) == username


class ListenerHandoff:
    """What the listener needs for a pipeline, in the listener's own namespace (`planning.handoff`):
    its credential, and the description — topic, dead-letter topic, broker type, Airflow API and
    credential.

    The listener reads and watches Secrets there only, and what it connects to (bootstrap
    servers, service URL, Airflow) comes from the operator's records and the referenced
    resources, never from status or a Secret a tenant can edit.
    """

    def __init__(
        self,
        cluster: ClusterState,
        pipeline: PipelineObject,
        namespace: str,
        description: dict[str, str] | None = None,
    ) -> None:
        self._cluster = cluster
        self._pipeline = pipeline
        self.namespace = namespace
        self.name = naming.listener_secret_name(pipeline.namespace, pipeline.name)
        # None: not known in this run (then a write keeps the one already handed over).
        self._description = description
        self._read: tuple[SecretView | None] | None = None  # read once per run; writes replace it

    def read(self) -> SecretView | None:
        if self._read is None:
            self._read = (self._cluster.read_secret(self.namespace, self.name),)
        return self._read[0]

    def write(self, credential: dict[str, str]) -> None:
        """Hand over a new credential, with the description of this run (or the one handed over).

        The schema versions handed over stay: they are the schema part's to change, and a run in
        which the registry does not answer must not leave the listener without them."""
        found = self.read()
        description = self._description
        if description is None:
            description = handoff.description_of(found.data) if found is not None else {}
        data = handoff.with_description(credential, description)
        if found is not None and SCHEMAS_KEY in found.data:
            data[SCHEMAS_KEY] = found.data[SCHEMAS_KEY]
        labels = {PIPELINE_LABEL: self._pipeline.name, PRINCIPAL_LABEL: LISTENER_PRINCIPAL}
        self._cluster.write_secret(self.namespace, self.name, data, None, labels)
        self._read = None

    def refresh(self) -> None:
        """Bring the description up to date, keeping the credential handed over (if any)."""
        found = self.read()
        if found is None or self._description is None or handoff.description_of(found.data) == self._description:
            return
        self.write(handoff.with_description(found.data, {}))

    def delete(self) -> None:
        self._cluster.delete_secret(self.namespace, self.name)
        self._read = (None,)
