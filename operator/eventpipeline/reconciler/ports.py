"""What the reconciler needs from the outside, as protocols: the real adapters satisfy them, and
unit tests drive the reconciler with in-memory fakes of the same shape."""

from __future__ import annotations

from typing import Any, Protocol

from eventpipeline.adapters.airflow import AirflowSettings
from eventpipeline.adapters.claims import StoredClaim, TopicShare
from eventpipeline.adapters.kube import Owner, SecretView
from eventpipeline.api.broker import BrokerSpec
from eventpipeline.api.claim import OwnershipClaimSpec
from eventpipeline.api.common import AirflowInstanceRef, BrokerRef
from eventpipeline.planning.schema import DesiredSchema, ObservedSchemas, RegisteredVersion
from eventpipeline.reconciler.backends import BrokerBackend


class ClaimStore(Protocol):
    def owned_by(self, pipeline_uid: str) -> list[StoredClaim]: ...

    def topics_in_namespace(self, namespace: str) -> list[TopicShare]: ...

    def get(self, name: str) -> StoredClaim | None: ...

    def create(self, name: str, spec: OwnershipClaimSpec) -> StoredClaim | None: ...

    def update(self, claim: StoredClaim) -> StoredClaim: ...

    def delete(self, name: str) -> None: ...


class ClusterState(Protocol):
    """The Kubernetes calls of a reconciliation: a pipeline's Secrets, and whether a pipeline exists."""

    def read_secret(self, namespace: str, name: str) -> SecretView | None: ...

    def write_secret(
        self, namespace: str, name: str, data: dict[str, str], owner: Owner | None, labels: dict[str, str]
    ) -> None: ...

    def delete_secret(self, namespace: str, name: str) -> None: ...

    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def pipeline_uid(self, namespace: str, name: str) -> str | None: ...


class ConnectionStore(Protocol):
    """Airflow connections of one instance."""

    def exists(self, connection_id: str) -> bool: ...

    def put(self, payload: dict[str, Any]) -> None: ...

    def update(self, payload: dict[str, Any], fields: list[str]) -> bool: ...

    def delete(self, connection_id: str) -> None: ...


class DagDirectory(Protocol):
    """What DAG authorization reads from Airflow."""

    def tags(self, dag_id: str) -> list[str] | None: ...

    def asset_consumers(self, asset_uri: str) -> list[tuple[str, list[str]]] | None: ...

    def current_version(self, dag_id: str) -> int | None: ...


class BrokerTarget(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def spec(self) -> BrokerSpec: ...

    @property
    def backend(self) -> BrokerBackend: ...

    @property
    def schemas(self) -> SchemaStore | None:
        """The broker's schema registry; None for a Kafka broker without `schemaRegistry`."""
        ...


class SchemaStore(Protocol):
    """A schema registry: Kafka's Confluent-compatible one (per subject), or Pulsar's (per topic)."""

    removes_single_versions: bool

    def subject_for(self, topic: str) -> str: ...

    def client_settings(self) -> dict[str, str]: ...

    def observe(self, subject: str, desired: DesiredSchema) -> ObservedSchemas: ...

    def set_compatibility(self, subject: str, level: str) -> None: ...

    def enforce(self, subject: str) -> None: ...

    def check(self, subject: str, desired: DesiredSchema) -> str | None:
        """None when the registry would accept `desired`; otherwise its explanation why not."""
        ...

    def register(self, subject: str, desired: DesiredSchema) -> RegisteredVersion: ...

    def remove_versions(self, subject: str, versions: tuple[int, ...]) -> None: ...

    def clear(self, subject: str) -> None: ...


class AirflowTarget(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def connections(self) -> ConnectionStore: ...

    @property
    def dags(self) -> DagDirectory: ...

    @property
    def settings(self) -> AirflowSettings:
        """The API URL and credential: handed over to the listener with each pipeline's hand-off."""
        ...


class Resolver(Protocol):
    """Resolves a pipeline's references, refusing what its namespace may not use."""

    def broker(self, ref: BrokerRef, namespace: str | None) -> BrokerTarget: ...

    def airflow(self, ref: AirflowInstanceRef, namespace: str) -> AirflowTarget: ...

    def broker_by_key(self, key: str) -> BrokerTarget:
        """A broker recorded in a claim, whoever may use it now: cleanup of what was created."""
        ...

    def airflow_by_key(self, key: str) -> AirflowTarget: ...
