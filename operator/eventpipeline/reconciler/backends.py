"""Kafka and Pulsar behind one interface: what a pipeline's reconciliation asks of a broker.

Each backend combines an adapter (I/O) with the pure planning of `planning/` so the pipeline
reconciler never branches on the broker type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import SecretStr

from eventpipeline.adapters.errors import UnavailableError
from eventpipeline.adapters.kafka import KafkaAdmin, new_password
from eventpipeline.adapters.pulsar import PulsarAdmin, PulsarTopic, mint_token, token_expiry
from eventpipeline.planning import access, secrets
from eventpipeline.planning.principals import Grantee
from eventpipeline.planning.templates import NAMESPACE_PLACEHOLDER
from eventpipeline.planning.topic import DesiredTopic, plan_topic


@dataclass(frozen=True)
class TopicResult:
    name: str
    partitions: int
    created: bool = False
    grown_from: int | None = None
    config_changed: tuple[str, ...] = ()
    shrink_refused_from: int | None = None


@dataclass(frozen=True)
class AccessResult:
    added: int = 0
    removed: int = 0
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ownership:
    """What on the broker belongs to one pipeline, from its ownership claims: exact names only.

    `principals` are the user names / roles of its credential generations (valid ones and those
    being revoked in this run); `externals` the external principals it granted. ACLs and grants
    of anyone else on its topics are never touched.
    """

    principals: frozenset[str]
    externals: frozenset[str]

    def owns(self, principal: str) -> bool:
        bare = principal.removeprefix("User:")
        return bare in self.principals or principal in self.externals


class BrokerBackend(Protocol):
    """The broker operations of one reconciliation."""

    type: str

    def ping(self) -> None: ...

    def locate(self, topic: str, namespace: str) -> str:
        """The full name of a pipeline's topic on this broker (what is claimed and recorded)."""
        ...

    def ensure_topic(self, desired: DesiredTopic, *, seen_absent: bool = False) -> TopicResult:
        """Create or converge the topic `desired.name` (a full name from `locate`).

        `seen_absent`: this run has just read that the topic does not exist (its claim check), so
        a backend may create it without reading it again.
        """
        ...

    def topic_exists(self, topic: str) -> bool: ...

    def delete_topic(self, topic: str) -> None: ...

    def credential_exists(self, username: str) -> bool: ...

    def issue_credentials(
        self, usernames: Sequence[str], now: datetime, lifetime: tuple[timedelta, timedelta]
    ) -> dict[str, SecretStr]:
        """A new credential for each user name (one broker call for all where the broker allows)."""
        ...

    def revoke_credential(self, username: str) -> None: ...

    def sync_access(
        self, topic: str, grantees: Sequence[Grantee], ownership: Ownership, dead_letter: str | None
    ) -> AccessResult: ...

    def remove_access(
        self, topic: str, groups: Sequence[str], ownership: Ownership, dead_letter: str | None
    ) -> None: ...

    def secret_data(self, username: str, credential: SecretStr) -> dict[str, str]: ...

    def connection_payload(
        self, connection_id: str, username: str, credential: SecretStr, group: str | None
    ) -> dict[str, Any]: ...


class KafkaBackend:
    """Topics, SCRAM users and literal ACLs on a Kafka cluster."""

    type = "Kafka"

    def __init__(self, admin: KafkaAdmin, endpoint: secrets.KafkaEndpoint, default_replication: int) -> None:
        self._admin = admin
        self._endpoint = endpoint
        self._default_replication = default_replication

    def ping(self) -> None:
        self._admin.ping()

    def locate(self, topic: str, namespace: str) -> str:
        return topic

    def ensure_topic(self, desired: DesiredTopic, *, seen_absent: bool = False) -> TopicResult:
        if desired.replication_factor is None:
            desired = replace(desired, replication_factor=self._default_replication)
        # A new pipeline's topic was read absent a moment ago: create it straight away (one admin
        # call instead of two); if someone made it meanwhile, read it and converge as usual.
        if seen_absent and self._admin.create_topic(desired):
            return TopicResult(desired.name, desired.partitions, created=True)
        observed = self._admin.describe_topic(desired.name)
        changes = plan_topic(desired, observed, desired.managed_keys)
        if changes.create and self._admin.create_topic(desired):
            return TopicResult(desired.name, desired.partitions, created=True)
        if observed is None:  # created by someone else since it was read: read it again
            observed = self._admin.describe_topic(desired.name)
            changes = plan_topic(desired, observed, desired.managed_keys)
        if observed is None:
            raise UnavailableError(f"Kafka: topic {desired.name} exists and cannot be read yet; retrying")
        if changes.grow_partitions_to is not None:
            self._admin.grow_partitions(desired.name, changes.grow_partitions_to)
        if changes.set_config or changes.reset_config:
            self._admin.set_topic_config(desired.name, changes.set_config, changes.reset_config)
        return TopicResult(
            desired.name,
            changes.grow_partitions_to or observed.partitions,
            grown_from=observed.partitions if changes.grow_partitions_to else None,
            config_changed=tuple(sorted({*changes.set_config, *changes.reset_config})),
            shrink_refused_from=changes.shrink_refused_from,
        )

    def topic_exists(self, topic: str) -> bool:
        return self._admin.describe_topic(topic) is not None

    def delete_topic(self, topic: str) -> None:
        self._admin.delete_topic(topic)

    def credential_exists(self, username: str) -> bool:
        return username in self._admin.scram_users([username])

    def issue_credentials(
        self, usernames: Sequence[str], now: datetime, lifetime: tuple[timedelta, timedelta]
    ) -> dict[str, SecretStr]:
        passwords = {username: new_password() for username in usernames}
        if passwords:
            self._admin.upsert_scram_user(passwords)
        return passwords

    def revoke_credential(self, username: str) -> None:
        self._admin.delete_scram_user(username)

    def sync_access(
        self, topic: str, grantees: Sequence[Grantee], ownership: Ownership, dead_letter: str | None
    ) -> AccessResult:
        desired = access.desired_kafka_acls(topic, grantees, dead_letter)
        resources = {(acl.resource_type, acl.resource_name) for acl in desired}
        resources.add(("TOPIC", topic))
        if dead_letter:
            resources.add(("TOPIC", dead_letter))
        actual = self._admin.acls_on(sorted(resources))
        owned = {acl for acl in actual if ownership.owns(acl.principal)}
        diff = access.diff_owned(desired, actual, owned)
        if diff.to_add:
            self._admin.create_acls(diff.to_add)
        if diff.to_remove:
            self._admin.delete_acls(diff.to_remove)
        return AccessResult(
            len(diff.to_add),
            len(diff.to_remove),
            [f"+{_describe(acl)}" for acl in sorted(diff.to_add)]
            + [f"-{_describe(acl)}" for acl in sorted(diff.to_remove)],
        )

    def remove_access(self, topic: str, groups: Sequence[str], ownership: Ownership, dead_letter: str | None) -> None:
        """On deletion: every owned ACL on the topics and on the pipeline's consumer groups."""
        resources = [("TOPIC", topic)] + [("GROUP", group) for group in groups]
        if dead_letter:
            resources.append(("TOPIC", dead_letter))
        owned = {acl for acl in self._admin.acls_on(resources) if ownership.owns(acl.principal)}
        if owned:
            self._admin.delete_acls(owned)

    def secret_data(self, username: str, credential: SecretStr) -> dict[str, str]:
        return secrets.kafka_secret_data(self._endpoint, username, credential)

    def connection_payload(
        self, connection_id: str, username: str, credential: SecretStr, group: str | None
    ) -> dict[str, Any]:
        return secrets.kafka_connection(connection_id, self._endpoint, username, credential, group)


def _describe(acl: access.KafkaAcl) -> str:
    return f"{acl.principal} {acl.operation} {acl.resource_type.lower()} {acl.resource_name}"


class PulsarBackend:
    """Partitioned topics, per-role grants and JWTs on a Pulsar cluster."""

    type = "Pulsar"

    def __init__(
        self,
        admin: PulsarAdmin,
        endpoint: secrets.PulsarEndpoint,
        signing_key: SecretStr,
        tenant: str,
        namespace_template: str,
    ) -> None:
        self._admin = admin
        self._endpoint = endpoint
        self._signing_key = signing_key
        self._tenant = tenant
        self._namespace_template = namespace_template

    def ping(self) -> None:
        self._admin.ping()

    def locate(self, topic: str, namespace: str) -> str:
        pulsar_namespace = self._namespace_template.replace(NAMESPACE_PLACEHOLDER, namespace)
        return PulsarTopic(self._tenant, pulsar_namespace, topic).full_name

    def ensure_topic(self, desired: DesiredTopic, *, seen_absent: bool = False) -> TopicResult:
        topic = PulsarTopic.parse(desired.name)
        self._admin.ensure_namespace(topic.tenant, topic.namespace)
        observed = self._admin.describe_topic(topic)
        changes = plan_topic(desired, observed)
        if changes.create:
            self._admin.create_topic(topic, desired)
            return TopicResult(topic.full_name, desired.partitions, created=True)
        assert observed is not None
        if changes.grow_partitions_to is not None:
            self._admin.grow_partitions(topic, changes.grow_partitions_to)
        return TopicResult(
            topic.full_name,
            changes.grow_partitions_to or observed.partitions,
            grown_from=observed.partitions if changes.grow_partitions_to else None,
            shrink_refused_from=changes.shrink_refused_from,
        )

    def topic_exists(self, topic: str) -> bool:
        return self._admin.describe_topic(PulsarTopic.parse(topic)) is not None

    def delete_topic(self, topic: str) -> None:
        self._admin.delete_topic(PulsarTopic.parse(topic))

    def credential_exists(self, username: str) -> bool:
        return True  # a token lives in its Secret only; validity is the role's grants

    def issue_credentials(
        self, usernames: Sequence[str], now: datetime, lifetime: tuple[timedelta, timedelta]
    ) -> dict[str, SecretStr]:
        rotate_every, grace_period = lifetime
        expiry = token_expiry(now, rotate_every, grace_period)
        return {username: mint_token(self._signing_key, username, expiry) for username in usernames}

    def revoke_credential(self, username: str) -> None:
        """Nothing to delete: sync_access already revoked the role's grants."""

    def sync_access(
        self, topic: str, grantees: Sequence[Grantee], ownership: Ownership, dead_letter: str | None
    ) -> AccessResult:
        details: list[str] = []
        added = removed = 0
        targets = [(topic, list(grantees))]
        if dead_letter:
            targets.append((dead_letter, [g for g in grantees if g.writes_dead_letter]))
        for name, wanted in targets:
            pulsar_topic = PulsarTopic.parse(name)
            desired = access.desired_pulsar_grants(wanted, dead_letter_topic=name == dead_letter)
            actual = self._admin.permissions(pulsar_topic)
            owned = {role for role in actual if ownership.owns(role)}
            to_grant, to_revoke = access.diff_pulsar_grants(desired, actual, owned)
            for role, actions in sorted(to_grant.items()):
                self._admin.grant(pulsar_topic, role, actions)
                details.append(f"+{role} {'+'.join(sorted(actions))} {name}")
            for role in sorted(to_revoke):
                self._admin.revoke(pulsar_topic, role)
                details.append(f"-{role} {name}")
            added += len(to_grant)
            removed += len(to_revoke)
        return AccessResult(added, removed, details)

    def remove_access(self, topic: str, groups: Sequence[str], ownership: Ownership, dead_letter: str | None) -> None:
        self.sync_access(topic, [], ownership, dead_letter)

    def secret_data(self, username: str, credential: SecretStr) -> dict[str, str]:
        return secrets.pulsar_secret_data(self._endpoint, username, credential)

    def connection_payload(
        self, connection_id: str, username: str, credential: SecretStr, group: str | None
    ) -> dict[str, Any]:
        return secrets.pulsar_connection(connection_id, self._endpoint, username, credential)
