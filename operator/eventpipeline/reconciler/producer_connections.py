"""Airflow as a producer: producers' credentials in Airflow connections, claimed, rotated, withdrawn.

observe: per producer with `airflowConnection`, whether its instance may be used from the
namespace and whether the connection holds the current generation (`delivery`, read by the
credentials part so that `planning.credentials` decides issue, repair and revocation);
plan: `planning.producer_connections`; apply: write a connection only with a credential issued
in this run (the operator keeps no copy of a producer's password), or update all but the
credential of one that holds the current generation with other settings (a schema added), delete
connections the spec no longer asks for or the namespace may no longer have; outcome:
`ProducerConnectionsReady`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from eventpipeline.adapters.claims import StoredClaim
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.references import UnresolvedReferenceError
from eventpipeline.api.common import AirflowInstanceRef
from eventpipeline.planning import naming
from eventpipeline.planning.producer_connections import (
    CONDITION,
    Delivery,
    ProducerConnection,
    airflow_producers,
    connection_holds,
    desired_connections,
    to_withdraw,
)
from eventpipeline.planning.reference_policy import NAMESPACED_REFERENCES_DISABLED, namespaced_reference_refusal
from eventpipeline.planning.secrets import (
    AIRFLOW_MASK,
    fingerprint,
    masked_connection,
    secret_credential,
    with_registry,
)
from eventpipeline.reconciler.claims import ClaimBook
from eventpipeline.reconciler.connection import ConnectionConflictError, claim_connection
from eventpipeline.reconciler.credentials import CredentialsStep, PrincipalPlan
from eventpipeline.reconciler.ports import AirflowTarget, BrokerTarget, Resolver
from eventpipeline.reconciler.run import Note, Run
from eventpipeline.reconciler.withdrawal import withdraw_connections

# Reference failures after which the namespace may no longer have the connection (a misconfigured
# instance, e.g. its admin Secret missing, withdraws nothing).
WITHDRAWING_REASONS = frozenset(
    {"NamespaceNotAllowed", "ClusterAirflowInstanceNotFound", "AirflowInstanceNotFound", NAMESPACED_REFERENCES_DISABLED}
)


@dataclass(frozen=True)
class _Failure:
    reason: str
    message: str


class ProducerConnectionsStep:
    """Observe each producer connection for the credentials part, then write and withdraw them."""

    def __init__(
        self, run: Run, claims: ClaimBook, resolver: Resolver, broker: BrokerTarget, *, allow_namespaced: bool
    ) -> None:
        self._run = run
        self._claims = claims
        self._resolver = resolver
        self._broker = broker
        self._allow_namespaced = allow_namespaced
        pipeline = run.pipeline
        self._failures: list[_Failure] = []
        try:
            self.wanted = desired_connections(pipeline.spec, pipeline.namespace, pipeline.name)
        except naming.NamingError as error:
            self.wanted = []
            self._failures.append(_Failure("ConnectionIdNotAllowed", str(error)))
        self._by_producer = {connection.producer: connection for connection in self.wanted}
        self._targets: dict[str, AirflowTarget | UnresolvedReferenceError] = {}

    # -- observe -------------------------------------------------------------------------

    def _target(self, connection: ProducerConnection) -> AirflowTarget | UnresolvedReferenceError:
        if connection.producer not in self._targets:
            refusal = namespaced_reference_refusal(
                connection.instance_kind, connection.instance_name, self._allow_namespaced
            )
            try:
                if refusal is not None:
                    raise UnresolvedReferenceError(NAMESPACED_REFERENCES_DISABLED, refusal)
                ref = AirflowInstanceRef.model_validate(
                    {"kind": connection.instance_kind, "name": connection.instance_name}
                )
                self._targets[connection.producer] = self._resolver.airflow(ref, self._run.pipeline.namespace)
            except UnresolvedReferenceError as error:
                self._targets[connection.producer] = error
        return self._targets[connection.producer]

    def delivery(self, producer: str, username: str | None) -> Delivery | None:
        """The producer's Airflow connection as observed; None when the producer has none.

        A reference that fails for a reason other than the namespace losing the instance (say,
        its admin Secret missing) keeps the credential: nothing is withdrawn for a misconfiguration.
        """
        connection = self._by_producer.get(producer)
        if connection is None:
            wants = any(p.name == producer for p in airflow_producers(self._run.pipeline.spec))
            return Delivery(available=False, intact=None) if wants else None
        target = self._target(connection)
        if isinstance(target, UnresolvedReferenceError):
            return Delivery(available=target.reason not in WITHDRAWING_REASONS, intact=None)
        if username is None:
            return Delivery(available=True, intact=None)
        claim = self._claims.find("AirflowConnection", connection.instance_key, connection.connection_id)
        holder = claim.spec.holds if claim is not None and claim.spec.principal == producer else None
        try:
            exists = target.connections.exists(connection.connection_id)
        except AdapterError:
            return Delivery(available=True, intact=None)  # reported when the connection is written
        return Delivery(available=True, intact=connection_holds(holder, exists, username))

    # -- apply ---------------------------------------------------------------------------

    def apply(self, credentials: CredentialsStep, plans: list[PrincipalPlan]) -> None:
        """Write each producer's connection, withdraw the others, record the outcome (never raises)."""
        by_name = {item.principal.name: item for item in plans if item.principal is not None}
        written: dict[str, str] = {}
        for connection in self.wanted:
            item = by_name.get(connection.producer)
            try:
                if self._write(connection, item, credentials):
                    written[connection.producer] = connection.connection_id
            except AdapterError as error:
                self._failures.append(_Failure(error.reason, f"producer {connection.producer}: {error}"))
        self._withdraw_unwanted(written)
        self._outcome(written)

    def _write(self, connection: ProducerConnection, item: PrincipalPlan | None, credentials: CredentialsStep) -> bool:
        target = self._target(connection)
        if isinstance(target, UnresolvedReferenceError):
            self._failures.append(_Failure(target.reason, f"producer {connection.producer}: {target}"))
            return False
        record = item.plan.record if item is not None else None
        if item is None or record is None or record.withdrawn:
            return False  # not issued (yet): the credentials part says why
        claim = self._claim(connection, target)
        if claim is None:
            return False
        issued = credentials.issued_data(item.secret_name)
        if issued is not None:
            payload = self._payload(connection, record.username, secret_credential(issued))
            target.connections.put(payload)
            first = claim.spec.holds is None
            self._claims.save(
                claim,
                claim.spec.model_copy(
                    update={"fingerprint": fingerprint(masked_connection(payload)), "holds": record.username}
                ),
            )
            self._run.note(
                "Normal",
                "ProducerConnectionWritten",
                f"producer {connection.producer}: Airflow connection {connection.connection_id} "
                f"{'written' if first else 'updated'} with generation {record.generation} ({record.username})",
            )
            return True
        if connection_holds(claim.spec.holds, target.connections.exists(connection.connection_id), record.username):
            self._update_settings(connection, target, claim, record.username, record.generation)
            return True
        self._failures.append(
            _Failure(
                "ProducerConnectionStale",
                f"producer {connection.producer}: Airflow connection {connection.connection_id} does not hold the "
                "current credential; a new one is issued into it on the next reconciliation",
            )
        )
        return False

    def _payload(self, connection: ProducerConnection, username: str, credential: SecretStr) -> dict[str, Any]:
        return with_registry(
            self._broker.backend.connection_payload(connection.connection_id, username, credential, None),
            self._registry_settings(),
        )

    def _update_settings(
        self, connection: ProducerConnection, target: AirflowTarget, claim: StoredClaim, username: str, generation: int
    ) -> None:
        """A connection holding the current generation whose settings are not the wanted ones (a
        schema added or removed, the broker's addresses changed): update all but the credential at
        once, sending it masked so that Airflow keeps the stored one, instead of waiting for the next
        generation. The claim's fingerprint is of the masked payload, so it needs no password."""
        wanted = masked_connection(self._payload(connection, username, SecretStr(AIRFLOW_MASK)))
        if claim.spec.fingerprint == fingerprint(wanted):
            return
        fields = sorted({name for name in wanted if name not in ("connection_id", "password")} | {"extra"})
        if not target.connections.update(wanted, fields):
            return  # deleted meanwhile: the next reconciliation issues a credential into a new one
        self._claims.save(claim, claim.spec.model_copy(update={"fingerprint": fingerprint(wanted)}))
        self._run.note(
            "Normal",
            "ProducerConnectionSettingsUpdated",
            f"producer {connection.producer}: Airflow connection {connection.connection_id} updated "
            f"({', '.join(fields)}) keeping generation {generation} ({username})",
        )

    def _registry_settings(self) -> dict[str, str]:
        """A pipeline with a schema on Kafka: where the registry is, as producer Secrets say it (a
        Pulsar client asks the broker itself: nothing). A schema added or removed later reaches an
        existing connection at once (`_update_settings`)."""
        if self._run.pipeline.spec.schema_ is None:
            return {}
        schemas = self._broker.schemas
        return schemas.client_settings() if schemas is not None else {}

    def _claim(self, connection: ProducerConnection, target: AirflowTarget) -> StoredClaim | None:
        try:
            claim, _ = claim_connection(
                self._claims,
                connection.instance_key,
                target.connections,
                connection.connection_id,
                field="airflowConnection.connectionId",
                principal=connection.producer,
            )
        except ConnectionConflictError as conflict:
            self._failures.append(_Failure("ConnectionConflict", f"producer {connection.producer}: {conflict}"))
            return None
        if claim.spec.principal != connection.producer:  # the id moved from another of the pipeline's producers
            claim = self._claims.save(
                claim, claim.spec.model_copy(update={"principal": connection.producer, "holds": None})
            )
        return claim

    def _withdraw_unwanted(self, written: dict[str, str]) -> None:
        """Delete producer connections no longer wanted, or on an instance the namespace lost."""
        keep = [
            connection.key
            for connection in self.wanted
            if not isinstance(self._target(connection), UnresolvedReferenceError)
            or self._target_reason(connection) not in WITHDRAWING_REASONS
        ]
        recorded = [
            (claim.spec.system, claim.spec.name)
            for claim in self._claims.owned("AirflowConnection")
            if claim.spec.principal is not None  # the listener's connection is not this part's
        ]
        gone = to_withdraw([c for c in self.wanted if c.key in keep], recorded)
        if not gone:
            return
        try:
            notes = withdraw_connections(self._claims, self._resolver, keep=keep, producers=True)
        except UnresolvedReferenceError as error:
            notes = [Note("Warning", "AirflowConnectionPending", f"could not delete a producer connection: {error}")]
        except AdapterError as error:
            self._failures.append(_Failure(error.reason, f"could not delete a producer connection yet: {error}"))
            return
        self._run.notes.extend(notes)

    def _target_reason(self, connection: ProducerConnection) -> str | None:
        target = self._target(connection)
        return target.reason if isinstance(target, UnresolvedReferenceError) else None

    def _outcome(self, written: dict[str, str]) -> None:
        if self._failures:
            first = self._failures[0]
            self._run.fail(CONDITION, first.reason, "; ".join(failure.message for failure in self._failures))
        elif self.wanted:
            ids = ", ".join(sorted(written.values()))
            self._run.ok(
                CONDITION, "ConnectionsInSync", f"Airflow connection(s) {ids} hold their producers' current credentials"
            )
        elif any(condition.type == CONDITION for condition in self._run.pipeline.status.conditions):
            self._run.ok(CONDITION, "NoProducerConnections", "no producer has an airflowConnection")
