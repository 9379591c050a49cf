"""The principals a pipeline has: producers, consumers, the listener, and external identities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eventpipeline.api.pipeline import LISTENER_PRINCIPAL, EventPipelineSpec
from eventpipeline.planning import naming

Role = Literal["producer", "consumer", "listener"]
Access = Literal["Produce", "Consume"]


@dataclass(frozen=True)
class ManagedPrincipal:
    """A principal the operator creates a credential for."""

    name: str
    role: Role

    @property
    def access(self) -> Access:
        return "Produce" if self.role == "producer" else "Consume"


@dataclass(frozen=True)
class Grantee:
    """One broker identity that should hold access to the pipeline's topic."""

    principal: str  # Kafka user name (without "User:") or Pulsar role
    access: Access
    group: str | None  # consumer group / subscription for Consume access
    external: bool = False
    writes_dead_letter: bool = False  # the listener moves refused messages to <topic>.dlq


def managed_principals(spec: EventPipelineSpec) -> list[ManagedPrincipal]:
    """Producers, consumers, and the listener's own principal when the pipeline triggers Airflow."""
    principals = [ManagedPrincipal(p.name, "producer") for p in spec.producers]
    principals += [ManagedPrincipal(c.name, "consumer") for c in spec.consumers]
    if spec.airflow is not None:
        # The listener reads the topic; with only a connection, Airflow tasks read with it too.
        principals.append(ManagedPrincipal(LISTENER_PRINCIPAL, "listener"))
    return principals


def grantees(
    spec: EventPipelineSpec,
    namespace: str,
    pipeline: str,
    usernames: dict[str, list[str]],
) -> list[Grantee]:
    """Every identity that should have access now.

    `usernames` maps a managed principal to its valid credential generations' user names
    (one normally, two during a rotation's grace period).
    """
    result: list[Grantee] = []
    for principal in managed_principals(spec):
        group = naming.consumer_group(namespace, pipeline, principal.name) if principal.access == "Consume" else None
        for username in usernames.get(principal.name, []):
            result.append(Grantee(username, principal.access, group, writes_dead_letter=principal.role == "listener"))
    for external in spec.external_principals:
        group = (
            naming.external_consumer_group(namespace, pipeline, external.principal)
            if external.access == "Consume"
            else None
        )
        result.append(Grantee(external.principal, external.access, group, external=True))
    return result
