"""Kafka administration through confluent-kafka's AdminClient: topics, SCRAM users, ACLs.

Calls are batched where the AdminClient allows (one request for many ACLs or users) and every
wait is bounded. Broker errors are translated into the typed errors of `adapters.errors`.
"""

from __future__ import annotations

import secrets
from collections.abc import Hashable, Iterable, Iterator, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from eventpipeline.adapters.drift import Cached, Listing, Snapshot
from eventpipeline.adapters.errors import (
    AdapterError,
    ConflictError,
    InvalidRequestError,
    NotAuthorizedError,
    UnavailableError,
)
from eventpipeline.adapters.metrics import counted
from eventpipeline.adapters.ratelimit import RateLimiter
from eventpipeline.planning.access import KafkaAcl
from eventpipeline.planning.topic import DesiredTopic, ObservedTopic

SCRAM_ITERATIONS = 8192
# Users asked for in one request of the drift listing (librdkafka parses no answer of more than ~10,000).
SCRAM_DESCRIBE_BATCH = 2000
# Topics per DescribeConfigs request of the drift check's topic listing.
CONFIG_BATCH = 1000
_AUTH_CODES = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
}
_INVALID_CODES = {
    KafkaError.INVALID_REPLICATION_FACTOR,
    KafkaError.INVALID_CONFIG,
    KafkaError.POLICY_VIOLATION,
    KafkaError.INVALID_PARTITIONS,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.INVALID_REQUEST,
}


@dataclass(frozen=True)
class KafkaAdminSettings:
    bootstrap_servers: str
    security_protocol: str
    sasl_mechanism: str
    username: str
    password: SecretStr
    ca_pem: str | None = None  # the brokers' CA (PEM), verified on SASL_SSL
    timeout_seconds: float = 15.0
    max_calls_per_second: float = 50.0

    def client_config(self) -> dict[str, str | int | float | bool]:
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.username,
            "sasl.password": self.password.get_secret_value(),
            "socket.timeout.ms": int(self.timeout_seconds * 1000),
        }
        if self.ca_pem and self.security_protocol == "SASL_SSL":
            config["ssl.ca.pem"] = self.ca_pem
        return config


def translate(error: BaseException, action: str) -> AdapterError:
    """A typed adapter error for a Kafka exception, with what was being done."""
    kafka_error = error.args[0] if isinstance(error, KafkaException) and error.args else None
    if not isinstance(kafka_error, KafkaError):
        return UnavailableError(f"Kafka: {action} failed: {error}")
    code = kafka_error.code()
    text = f"Kafka: {action} failed: {kafka_error.str()}"
    if code in _AUTH_CODES:
        return NotAuthorizedError(text + "; check the broker's admin Secret and that the user may administer")
    if code in _INVALID_CODES:
        return InvalidRequestError(text)
    if code == KafkaError.TOPIC_ALREADY_EXISTS:
        return ConflictError(text)
    return UnavailableError(text)


def _error_code(error: BaseException) -> int | None:
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return int(error.args[0].code())
    return None


class KafkaAdminCalls:
    """One AdminClient per broker resource; thread-safe, reused across reconciliations.

    Every method is one counted (and rate-limited) call to the broker; `KafkaAdmin` adds the
    drift-check snapshot on top.
    """

    def __init__(self, settings: KafkaAdminSettings) -> None:
        self._settings = settings
        self._timeout = settings.timeout_seconds
        self._client = AdminClient(settings.client_config())
        self.rate_limiter = RateLimiter(settings.max_calls_per_second)

    def _wait(self, future: Future[Any], action: str, tolerated: int | None = None) -> Any:
        """The future's result; a Kafka error whose code is `tolerated` counts as done (None)."""
        try:
            return future.result(timeout=self._timeout)
        except TimeoutError:
            raise UnavailableError(f"Kafka: {action} timed out after {self._timeout:.0f}s") from None
        except KafkaException as error:
            if tolerated is not None and _error_code(error) == tolerated:
                return None
            raise translate(error, action) from error

    @counted("kafka")
    def ping(self) -> None:
        """Cheap authenticated round trip: proves the broker answers and the admin may log in."""
        try:
            self._client.list_topics(timeout=self._timeout)
        except KafkaException as error:
            raise translate(error, "connecting") from error

    # -- topics ---------------------------------------------------------------------------

    @counted("kafka")
    def describe_topic(self, name: str) -> ObservedTopic | None:
        """Partitions and the topic's own (non-default) configuration, or None if it is absent."""
        try:
            metadata = self._client.list_topics(topic=name, timeout=self._timeout)
        except KafkaException as error:
            raise translate(error, f"describing topic {name}") from error
        topic = metadata.topics.get(name)
        if topic is None or (topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return None
        if topic.error is not None:
            raise translate(KafkaException(topic.error), f"describing topic {name}")
        resource = ConfigResource(ResourceType.TOPIC, name)
        entries = self._wait(self._client.describe_configs([resource])[resource], f"reading config of {name}")
        config = {
            key: entry.value for key, entry in entries.items() if _is_topic_override(entry) and entry.value is not None
        }
        return ObservedTopic(name=name, partitions=len(topic.partitions), config=config)

    @counted("kafka")
    def list_topics(self) -> Listing[dict[str, ObservedTopic]]:
        """Every topic with its partitions and own configuration: one metadata request and one
        configuration request per `CONFIG_BATCH` topics (the drift check's listing)."""
        try:
            metadata = self._client.list_topics(timeout=self._timeout)
        except KafkaException as error:
            raise translate(error, "listing topics") from error
        partitions = {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None and not name.startswith("__")
        }
        unknown: set[Hashable] = {("topic", name) for name, topic in metadata.topics.items() if topic.error}
        topics: dict[str, ObservedTopic] = {}
        names = sorted(partitions)
        for start in range(0, len(names), CONFIG_BATCH):
            resources = [ConfigResource(ResourceType.TOPIC, name) for name in names[start : start + CONFIG_BATCH]]
            futures = self._client.describe_configs(resources)
            # One deadline for the whole batch, not one per topic (a slow answer would hold the
            # listing, and every drift check waiting for it, for a timeout per topic).
            done, _ = wait(list(futures.values()), timeout=self._timeout)
            if not done:
                raise UnavailableError(f"Kafka: reading topic configs timed out after {self._timeout:.0f}s")
            for resource, future in futures.items():
                try:
                    entries = future.result(timeout=0) if future in done else None
                except KafkaException:
                    entries = None
                if entries is None:
                    unknown.add(("topic", resource.name))  # read fresh when a pipeline asks
                    continue
                config = {
                    key: entry.value
                    for key, entry in entries.items()
                    if _is_topic_override(entry) and entry.value is not None
                }
                topics[resource.name] = ObservedTopic(resource.name, partitions[resource.name], config)
        return Listing(topics, frozenset(unknown))

    @counted("kafka")
    def create_topic(self, topic: DesiredTopic) -> bool:
        """Create the topic; False when it exists already (made meanwhile by someone else)."""
        new = NewTopic(
            topic.name,
            num_partitions=topic.partitions,
            replication_factor=topic.replication_factor or -1,
            config=dict(topic.config),
        )
        future = self._client.create_topics([new], request_timeout=self._timeout)[topic.name]
        try:
            future.result(timeout=self._timeout)
        except TimeoutError:
            raise UnavailableError(f"Kafka: creating topic {topic.name} timed out after {self._timeout:.0f}s") from None
        except KafkaException as error:
            if _error_code(error) == KafkaError.TOPIC_ALREADY_EXISTS:
                return False  # a concurrent create (another run, another replica): the caller looks again
            raise translate(error, f"creating topic {topic.name}") from error
        return True

    @counted("kafka")
    def grow_partitions(self, name: str, total: int) -> None:
        future = self._client.create_partitions([NewPartitions(name, total)])[name]
        self._wait(future, f"growing {name} to {total} partitions")

    @counted("kafka")
    def set_topic_config(self, name: str, changes: Mapping[str, str], reset: Iterable[str] = ()) -> None:
        """Set `changes` on the topic and return the keys in `reset` to the broker's default, in one call."""
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in changes.items()
        ]
        # DELETE removes the topic's own value, so the broker default applies again.
        entries += [ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE) for key in sorted(reset)]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        self._wait(self._client.incremental_alter_configs([resource])[resource], f"configuring {name}")

    @counted("kafka")
    def delete_topic(self, name: str) -> None:
        future = self._client.delete_topics([name], operation_timeout=self._timeout)[name]
        self._wait(future, f"deleting topic {name}", tolerated=KafkaError.UNKNOWN_TOPIC_OR_PART)

    # -- SCRAM users ----------------------------------------------------------------------

    @counted("kafka")
    def scram_users(self, usernames: Iterable[str]) -> set[str]:
        """Which of these users have a SCRAM-SHA-512 credential."""
        return self._described_scram_users(list(usernames))

    @counted("kafka")
    def list_scram_users(self, usernames: list[str]) -> set[str]:
        """One batch of the drift check's listing: which of these users have a credential."""
        return self._described_scram_users(usernames)

    def _described_scram_users(self, wanted: list[str]) -> set[str]:
        if not wanted:
            return set()
        futures = self._client.describe_user_scram_credentials(wanted, request_timeout=self._timeout)
        assert isinstance(futures, dict)  # a list of users gives one future per user
        present: set[str] = set()
        for user, future in futures.items():
            description = self._wait(future, f"describing SCRAM user {user}", tolerated=KafkaError.RESOURCE_NOT_FOUND)
            if description is not None and any(
                info.mechanism == ScramMechanism.SCRAM_SHA_512 for info in description.scram_credential_infos
            ):
                present.add(user)
        return present

    @counted("kafka")
    def upsert_scram_user(self, passwords: Mapping[str, SecretStr]) -> None:
        """Set the SCRAM-SHA-512 credential of each user, in one request (named for one user, as the
        dashboards and docs count credential issues by this operation)."""
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(username, info, password.get_secret_value().encode())
            for username, password in passwords.items()
        ]
        futures = self._client.alter_user_scram_credentials(upserts, request_timeout=self._timeout)
        for username, future in futures.items():
            self._wait(future, f"setting the SCRAM credential of {username}")

    @counted("kafka")
    def delete_scram_user(self, username: str) -> None:
        deletion = UserScramCredentialDeletion(username, ScramMechanism.SCRAM_SHA_512)
        future = self._client.alter_user_scram_credentials([deletion], request_timeout=self._timeout)[username]
        self._wait(future, f"deleting the SCRAM credential of {username}", tolerated=KafkaError.RESOURCE_NOT_FOUND)

    # -- ACLs -----------------------------------------------------------------------------

    @counted("kafka")
    def acls_on(self, resources: Iterable[tuple[str, str]]) -> set[KafkaAcl]:
        """Every literal ALLOW ACL on these (resource type, name) pairs, whoever it is for."""
        filters = [
            AclBindingFilter(
                ResourceType[resource_type],
                name,
                ResourcePatternType.LITERAL,
                None,  # type: ignore[arg-type]  # None matches any principal / host
                None,  # type: ignore[arg-type]
                AclOperation.ANY,
                AclPermissionType.ANY,
            )
            for resource_type, name in resources
        ]
        futures = [
            (acl_filter, self._client.describe_acls(acl_filter, request_timeout=self._timeout))
            for acl_filter in filters
        ]
        found: set[KafkaAcl] = set()
        for acl_filter, future in futures:
            found |= _managed_kinds(self._wait(future, f"listing ACLs of {acl_filter.name}"))
        return found

    @counted("kafka")
    def list_acls(self) -> set[KafkaAcl]:
        """Every literal ALLOW ACL on the cluster, in one request (the drift check's listing)."""
        acl_filter = AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]  # None matches any name / principal / host
            ResourcePatternType.LITERAL,
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        return _managed_kinds(
            self._wait(self._client.describe_acls(acl_filter, request_timeout=self._timeout), "listing ACLs")
        )

    @counted("kafka")
    def create_acls(self, acls: Iterable[KafkaAcl]) -> None:
        bindings = [_binding(acl) for acl in acls]
        if bindings:
            for future in self._client.create_acls(bindings, request_timeout=self._timeout).values():
                self._wait(future, "creating ACLs")

    @counted("kafka")
    def delete_acls(self, acls: Iterable[KafkaAcl]) -> None:
        filters = [_binding_filter(acl) for acl in acls]
        if filters:
            for future in self._client.delete_acls(filters, request_timeout=self._timeout).values():
                self._wait(future, "deleting ACLs")


@dataclass(frozen=True)
class KafkaState:
    """One listing of a Kafka cluster: what drift checks compare their plans with. Its ACLs by
    resource: a check looks up its pipeline's few resources instead of scanning every ACL of the
    cluster (7 per pipeline: a scan made a drift period cost O(pipelines²)).

    `users` holds which of `users_checked` (the principals the ACLs name) have a SCRAM-SHA-512
    credential; a user outside `users_checked` is not answered from the listing."""

    topics: dict[str, ObservedTopic]
    users: set[str]
    acls: dict[tuple[str, str], frozenset[KafkaAcl]]
    users_checked: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        topics: dict[str, ObservedTopic],
        users: set[str],
        acls: Iterable[KafkaAcl],
        users_checked: Iterable[str] | None = None,
    ) -> KafkaState:
        by_resource: dict[tuple[str, str], set[KafkaAcl]] = {}
        for acl in acls:
            by_resource.setdefault((acl.resource_type, acl.resource_name), set()).add(acl)
        checked = frozenset(users if users_checked is None else users_checked)
        return cls(topics, users, {resource: frozenset(found) for resource, found in by_resource.items()}, checked)

    def users_among(self, wanted: set[str]) -> set[str] | None:
        """Which of `wanted` have a credential, or None when the listing did not check them all."""
        return wanted & self.users if wanted <= self.users_checked else None

    def acls_on(self, resources: Iterable[tuple[str, str]]) -> set[KafkaAcl]:
        return {acl for resource in resources for acl in self.acls.get(resource, ())}


def acl_users(acls: Iterable[KafkaAcl]) -> set[str]:
    """The user names the ACLs grant something to (`User:<name>` principals)."""
    return {acl.principal.removeprefix("User:") for acl in acls if acl.principal.startswith("User:")}


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in sorted(items):
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class KafkaAdmin(KafkaAdminCalls):
    """`KafkaAdminCalls` whose reads, inside `drift_reads()`, come from one listing of the cluster
    per period (3 listings instead of a dozen reads per pipeline); writes mark what they changed."""

    def __init__(self, settings: KafkaAdminSettings) -> None:
        super().__init__(settings)
        self.snapshot = Snapshot(self._list_cluster)

    def _list_cluster(self) -> Listing[KafkaState]:
        """Topics, ACLs, and the SCRAM credentials of the users the ACLs name, asked for by name in
        batches: librdkafka cannot parse an answer that lists every user once there are more than
        about 10,000 (measured: the listing failed from ~10,800 users on, at 5,400 pipelines)."""
        topics = self.list_topics()
        acls = self.list_acls()
        checked = acl_users(acls)
        users: set[str] = set()
        for batch in chunks(checked, SCRAM_DESCRIBE_BATCH):
            users |= self.list_scram_users(batch)
        return Listing(KafkaState.of(topics.state, users, acls, checked), topics.unknown)

    def describe_topic(self, name: str) -> ObservedTopic | None:
        cached = self.snapshot.lookup([("topic", name)], lambda state: state.topics.get(name))
        return cached.value if cached is not None else super().describe_topic(name)

    def scram_users(self, usernames: Iterable[str]) -> set[str]:
        wanted = set(usernames)
        cached: Cached[set[str] | None] | None = self.snapshot.lookup(
            [("user", user) for user in wanted], lambda state: state.users_among(wanted)
        )
        if cached is not None and cached.value is not None:
            return cached.value
        return super().scram_users(wanted)

    def acls_on(self, resources: Iterable[tuple[str, str]]) -> set[KafkaAcl]:
        wanted = set(resources)
        cached = self.snapshot.lookup(
            [("acl", *resource) for resource in wanted],
            lambda state: state.acls_on(wanted),
        )
        return cached.value if cached is not None else super().acls_on(wanted)

    def create_topic(self, topic: DesiredTopic) -> bool:
        try:
            return super().create_topic(topic)
        finally:
            self.snapshot.touched([("topic", topic.name)])

    def grow_partitions(self, name: str, total: int) -> None:
        try:
            super().grow_partitions(name, total)
        finally:
            self.snapshot.touched([("topic", name)])

    def set_topic_config(self, name: str, changes: Mapping[str, str], reset: Iterable[str] = ()) -> None:
        try:
            super().set_topic_config(name, changes, reset)
        finally:
            self.snapshot.touched([("topic", name)])

    def delete_topic(self, name: str) -> None:
        try:
            super().delete_topic(name)
        finally:
            self.snapshot.touched([("topic", name)])

    def upsert_scram_user(self, passwords: Mapping[str, SecretStr]) -> None:
        try:
            super().upsert_scram_user(passwords)
        finally:
            self.snapshot.touched([("user", username) for username in passwords])

    def delete_scram_user(self, username: str) -> None:
        try:
            super().delete_scram_user(username)
        finally:
            self.snapshot.touched([("user", username)])

    def create_acls(self, acls: Iterable[KafkaAcl]) -> None:
        acls = list(acls)
        try:
            super().create_acls(acls)
        finally:
            self.snapshot.touched({("acl", acl.resource_type, acl.resource_name) for acl in acls})

    def delete_acls(self, acls: Iterable[KafkaAcl]) -> None:
        acls = list(acls)
        try:
            super().delete_acls(acls)
        finally:
            self.snapshot.touched({("acl", acl.resource_type, acl.resource_name) for acl in acls})


def _managed_kinds(bindings: Iterable[Any]) -> set[KafkaAcl]:
    """The ACLs of the kinds the operator manages: ALLOW, any host, READ / WRITE / DESCRIBE, on
    topics and groups (`bindings` are librdkafka's AclBinding objects)."""
    return {
        KafkaAcl(binding.principal, binding.restype.name, binding.name, binding.operation.name)
        for binding in bindings
        if binding.permission_type == AclPermissionType.ALLOW
        and binding.host == "*"
        and binding.restype.name in ("TOPIC", "GROUP")
        and binding.operation.name in ("READ", "WRITE", "DESCRIBE")
    }


def _is_topic_override(entry: ConfigEntry) -> bool:
    """Whether a config value was set on the topic itself (not inherited from the broker)."""
    source = getattr(entry.source, "value", entry.source)
    return bool(source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value)


def _binding_fields(acl: KafkaAcl) -> tuple[Any, ...]:
    """An ACL as librdkafka's binding and filter constructors both take it: LITERAL, any host, ALLOW."""
    return (
        ResourceType[acl.resource_type],
        acl.resource_name,
        ResourcePatternType.LITERAL,
        acl.principal,
        "*",
        AclOperation[acl.operation],
        AclPermissionType.ALLOW,
    )


def _binding(acl: KafkaAcl) -> AclBinding:
    return AclBinding(*_binding_fields(acl))


def _binding_filter(acl: KafkaAcl) -> AclBindingFilter:
    return AclBindingFilter(*_binding_fields(acl))


def new_password() -> SecretStr:
    """A fresh SCRAM password (no commas or quotes, which some tools split or escape)."""
    return SecretStr(secrets.token_urlsafe(32))
