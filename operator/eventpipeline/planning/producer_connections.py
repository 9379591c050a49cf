"""Airflow as a producer: which Airflow connections hold which producer's credential.

Pure. A producer with `airflowConnection` gets its credential written into a connection of
that Airflow instance, besides (or, with `secret: false`, instead of) its Secret. Desired
connections are a list keyed by (instance, connection id), compared with what the pipeline's
ownership claims record, like `access.py` compares ACL sets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from eventpipeline.api.pipeline import EventPipelineSpec, ProducerSpec
from eventpipeline.planning import naming

CONDITION = "ProducerConnectionsReady"


@dataclass(frozen=True)
class Delivery:
    """A producer's Airflow connection as observed, for the credential plan."""

    available: bool  # the namespace may use the instance: the credential can be delivered there
    intact: bool | None  # holds the current generation; None when unknown (Airflow did not answer)


@dataclass(frozen=True)
class ProducerConnection:
    """One producer's Airflow connection: where it lives and its id."""

    producer: str
    instance_kind: str
    instance_name: str
    instance_key: str  # naming.reference_key of the instance: the claim's system
    connection_id: str
    secret: bool  # the producer's credential also goes to its Secret

    @property
    def key(self) -> tuple[str, str]:
        return (self.instance_key, self.connection_id)


def instance_key(kind: str, name: str, namespace: str) -> str:
    """The claim system of an Airflow instance reference made from `namespace`."""
    return naming.reference_key(kind, None if kind.startswith("Cluster") else namespace, name)


def airflow_producers(spec: EventPipelineSpec) -> list[ProducerSpec]:
    """The producers whose credential goes into an Airflow connection."""
    return [producer for producer in spec.producers if producer.airflow_connection is not None]


def desired_connections(spec: EventPipelineSpec, namespace: str, pipeline: str) -> list[ProducerConnection]:
    """Every producer connection the spec asks for.

    Raises NamingError when an id is not allowed (another namespace's prefix, too long) or when
    two connections of the pipeline would share one id on one instance — the producers' own, or
    the listener's (`airflow.connectionId`, or its default): one connection holds one credential.
    """
    taken: dict[tuple[str, str], str] = {}
    if spec.airflow is not None:
        ref = spec.airflow.instance_ref
        listener_id = naming.connection_id(namespace, pipeline, spec.airflow.connection_id)
        taken[(instance_key(ref.kind, ref.name, namespace), listener_id)] = "the listener's connection"
    wanted = []
    for producer in airflow_producers(spec):
        assert producer.airflow_connection is not None
        ref = producer.airflow_connection.instance_ref
        connection = ProducerConnection(
            producer=producer.name,
            instance_kind=ref.kind,
            instance_name=ref.name,
            instance_key=instance_key(ref.kind, ref.name, namespace),
            connection_id=naming.producer_connection_id(
                namespace, pipeline, producer.name, producer.airflow_connection.connection_id
            ),
            secret=producer.secret,
        )
        if connection.key in taken:
            raise naming.NamingError(
                f"producer {producer.name}'s Airflow connection {connection.connection_id} is also "
                f"{taken[connection.key]} on {ref.kind} {ref.name}; give it another connectionId"
            )
        taken[connection.key] = f"producer {producer.name}'s connection"
        wanted.append(connection)
    return wanted


def to_withdraw(wanted: Iterable[ProducerConnection], recorded: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Recorded producer connections (instance key, id) the spec no longer asks for: delete them."""
    keys = {connection.key for connection in wanted}
    return sorted(key for key in recorded if key not in keys)


def connection_holds(recorded_holder: str | None, exists: bool, username: str) -> bool:
    """Whether a producer's connection holds the credential of its current generation `username`."""
    return exists and recorded_holder == username
