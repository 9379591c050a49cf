"""Least-privilege access as sets: Kafka ACLs and Pulsar grants, desired vs. actual.

Producer: WRITE + DESCRIBE on the topic. Reader: READ + DESCRIBE on the topic and READ on its
own consumer group. Literal resource patterns only; nothing else, no wildcards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from eventpipeline.planning.principals import Grantee

T = TypeVar("T")

KafkaResource = Literal["TOPIC", "GROUP"]
KafkaOperation = Literal["READ", "WRITE", "DESCRIBE"]


@dataclass(frozen=True, order=True)
class KafkaAcl:
    """One ALLOW ACL with a LITERAL pattern, for any host."""

    principal: str  # "User:<name>" or an external principal as given
    resource_type: KafkaResource
    resource_name: str
    operation: KafkaOperation


# A Kafka principal as the authorizer reads it: `<type>:<name>` (User:alice, Group:ops).
KAFKA_PRINCIPAL = re.compile(r"[A-Za-z][A-Za-z0-9]*:[^*]+")


def kafka_principal(grantee: Grantee) -> str:
    """Kafka principal string; external principals are given whole (e.g. User:alice)."""
    return grantee.principal if grantee.external else f"User:{grantee.principal}"


def untyped_kafka_principals(principals: Iterable[str]) -> list[str]:
    """The external principals Kafka could not match to anyone: those without a `<type>:` prefix.

    An ACL for `alice` (no `User:`) names no identity Kafka authenticates; it is refused, never created.
    """
    return sorted({principal for principal in principals if not KAFKA_PRINCIPAL.fullmatch(principal)})


def desired_kafka_acls(topic: str, grantees: Iterable[Grantee], dead_letter: str | None = None) -> set[KafkaAcl]:
    """The exact ACL set the pipeline's topics and groups should have.

    With a dead-letter topic, the listener may also WRITE + DESCRIBE it, and nobody else gets
    anything there.
    """
    acls: set[KafkaAcl] = set()
    for grantee in grantees:
        principal = kafka_principal(grantee)
        if dead_letter is not None and grantee.writes_dead_letter:
            acls.add(KafkaAcl(principal, "TOPIC", dead_letter, "WRITE"))
            acls.add(KafkaAcl(principal, "TOPIC", dead_letter, "DESCRIBE"))
        if grantee.access == "Produce":
            acls.add(KafkaAcl(principal, "TOPIC", topic, "WRITE"))
            acls.add(KafkaAcl(principal, "TOPIC", topic, "DESCRIBE"))
        else:
            acls.add(KafkaAcl(principal, "TOPIC", topic, "READ"))
            acls.add(KafkaAcl(principal, "TOPIC", topic, "DESCRIBE"))
            if grantee.group is not None:
                acls.add(KafkaAcl(principal, "GROUP", grantee.group, "READ"))
    return acls


@dataclass(frozen=True)
class SetDiff(Generic[T]):
    """What to add and what to remove to turn `actual` into `desired`."""

    to_add: frozenset[T]
    to_remove: frozenset[T]


def diff_owned(desired: set[T], actual: set[T], owned: set[T]) -> SetDiff[T]:
    """Add what is missing; remove only what the operator owns and no longer wants.

    `owned` is the part of `actual` the operator is responsible for; anything else that
    happens to sit on the same resources (ACLs added by hand, by another tool) is left alone.
    """
    return SetDiff(frozenset(desired - actual), frozenset((actual & owned) - desired))


PulsarAction = Literal["produce", "consume"]


def desired_pulsar_grants(
    grantees: Iterable[Grantee], dead_letter_topic: bool = False
) -> dict[str, frozenset[PulsarAction]]:
    """Role → actions on one topic. On the dead-letter topic only the listener may produce.

    Pulsar grants `consume` per topic, not per subscription, so the one-group-per-reader rule
    of Kafka has no Pulsar counterpart at the grant level.
    """
    grants: dict[str, set[PulsarAction]] = {}
    for grantee in grantees:
        if dead_letter_topic:
            if grantee.writes_dead_letter:
                grants.setdefault(grantee.principal, set()).add("produce")
            continue
        grants.setdefault(grantee.principal, set()).add("produce" if grantee.access == "Produce" else "consume")
    return {role: frozenset(actions) for role, actions in grants.items()}


def diff_pulsar_grants(
    desired: dict[str, frozenset[PulsarAction]],
    actual: dict[str, frozenset[str]],
    owned_roles: set[str],
) -> tuple[dict[str, frozenset[PulsarAction]], set[str]]:
    """Roles to (re)grant with their actions, and owned roles to revoke entirely."""
    to_grant = {role: actions for role, actions in desired.items() if actual.get(role) != actions}
    to_revoke = {role for role in actual if role in owned_roles and role not in desired}
    return to_grant, to_revoke
