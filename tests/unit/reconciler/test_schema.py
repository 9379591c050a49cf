"""The schema part on in-memory fakes: registration, compatibility before any change, drift,
ownership, the listener's hand-off, producer Secrets and deletion."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import SecretStr

from eventpipeline.adapters.errors import SchemaIncompatibleError, UnavailableError
from eventpipeline.adapters.schema_registry import ConfluentRegistry, RegistrySettings
from eventpipeline.api.pipeline import SCHEMA_DEFINITION_MAX_LENGTH
from eventpipeline.planning import naming
from eventpipeline.planning.schema import DesiredSchema, ObservedSchemas, RegisteredVersion
from eventpipeline.reconciler.pipeline import PipelineReconciler
from tests.unit.reconciler.fakes import FakeBroker, FakeBrokerTarget, FakeCluster, FakeDags, FakeResolver
from tests.unit.reconciler.world import World, spec

SUBJECT = "shop.orders-value"
V1 = '{"type":"record","name":"O","fields":[{"name":"id","type":"int"}]}'
V2 = '{"type":"record","name":"O","fields":[{"name":"id","type":"int"},{"name":"n","type":"int","default":0}]}'
BAD = '{"type":"record","name":"O","fields":[{"name":"id","type":"string"}]}'
OPERATOR = "operator-only-secret"  # the registry password the operator manages subjects with


@dataclass
class FakeRegistry:
    """A Confluent-like registry: subjects of numbered versions with global ids; `BAD` is incompatible."""

    subjects: dict[str, dict[int, tuple[int, str]]] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    next_id: int = 1
    removes_single_versions: bool = True

    def subject_for(self, topic: str) -> str:
        return f"{topic}-value"

    def client_settings(self) -> dict[str, str]:
        return {"schema.registry.url": "http://registry"}

    def observe(self, subject: str, desired: DesiredSchema) -> ObservedSchemas:
        held = self.subjects.get(subject, {})
        versions = tuple(RegisteredVersion(v, i, "AVRO", text) for v, (i, text) in sorted(held.items()))
        match = next((v for v, (_, text) in held.items() if text == desired.definition), None)
        return ObservedSchemas(versions, match, self.config.get(subject))

    def set_compatibility(self, subject: str, level: str) -> None:
        self.config[subject] = level

    def enforce(self, subject: str) -> None:
        """Nothing to enforce in a Confluent-like registry."""

    def check(self, subject: str, desired: DesiredSchema) -> str | None:
        return "reader type: STRING not compatible with writer type: INT" if desired.definition == BAD else None

    def register(self, subject: str, desired: DesiredSchema) -> RegisteredVersion:
        if self.subjects.get(subject) and self.check(subject, desired):
            raise SchemaIncompatibleError("incompatible")
        held = self.subjects.setdefault(subject, {})
        version = max(held, default=0) + 1
        held[version] = (self.next_id, desired.definition)
        self.next_id += 1
        return RegisteredVersion(version, held[version][0], "AVRO", desired.definition)

    def remove_versions(self, subject: str, versions: tuple[int, ...]) -> None:
        for version in versions:
            self.subjects[subject].pop(version, None)

    def clear(self, subject: str) -> None:
        self.subjects.pop(subject, None)


@dataclass(frozen=True)
class SchemaBrokerTarget(FakeBrokerTarget):
    schemas: FakeRegistry | None = None


@dataclass
class VersionedDags(FakeDags):
    version: int = 3

    def current_version(self, dag_id: str) -> int | None:
        return self.version if dag_id in self.tags_by_dag else None


@dataclass
class SchemaResolver(FakeResolver):
    registry: FakeRegistry | None = field(default_factory=FakeRegistry)

    def _target(self) -> FakeBrokerTarget:
        plain = super()._target()
        return SchemaBrokerTarget(plain.key, plain.spec, plain.backend, self.registry)


class ConfigMapCluster(FakeCluster):
    def __init__(self) -> None:
        super().__init__()
        self.config_maps: dict[tuple[str, str], dict[str, str]] = {}

    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.config_maps.get((namespace, name))


def _world(registry: FakeRegistry | None = None) -> tuple[World, FakeRegistry]:
    world = World()
    world.cluster = ConfigMapCluster()
    resolver = SchemaResolver(broker_backend=FakeBroker(), dags=VersionedDags(), registry=registry or FakeRegistry())
    world.resolver, world.broker, world.connections = resolver, resolver.broker_backend, resolver.connections
    world.reconciler = PipelineReconciler(world.cluster, world.claims, resolver, clock=lambda: world.now)
    assert resolver.registry is not None
    return world, resolver.registry


def _with_schema(definition: str, compatibility: str = "BACKWARD") -> dict[str, object]:
    return spec(schema={"type": "AVRO", "definition": definition, "compatibility": compatibility})


def _handed(world: World) -> list[dict[str, object]]:
    data = world.cluster.data(naming.DEFAULT_LISTENER_NAMESPACE, naming.listener_secret_name("shop", "orders"))
    return list(json.loads(data.get("schemas.json", "[]")))


def test_a_schema_is_registered_reported_and_handed_over() -> None:
    world, registry = _world()
    world.apply("shop", "orders", _with_schema(V1))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "SchemaReady") == ("True", "SchemaRegistered")
    assert world.condition("shop", "orders") == ("True", "Reconciled")
    assert registry.subjects[SUBJECT] == {1: (1, V1)} and registry.config[SUBJECT] == "BACKWARD"
    status = world.objects[("shop", "orders")].status.schema_
    assert status is not None and (status.version, status.id, status.subject) == (1, 1, SUBJECT)
    assert status.history[0].dag_version == 3
    assert [(entry["version"], entry["id"]) for entry in _handed(world)] == [(1, 1)]
    assert world.secret("shop", "orders", "app")["schema.registry.url"] == "http://registry"
    assert [spec.name for spec in world.claims.specs("Schema")] == [SUBJECT]


def test_a_second_reconcile_changes_nothing() -> None:
    world, registry = _world()
    world.apply("shop", "orders", _with_schema(V1))
    world.reconcile("shop", "orders")
    before = (json.dumps(registry.subjects), dict(world.claims.items))
    assert world.reconcile("shop", "orders").notes == []
    assert (json.dumps(registry.subjects), dict(world.claims.items)) == before


def test_a_compatible_change_becomes_the_next_version_with_the_dag_version_of_then() -> None:
    world, registry = _world()
    world.apply("shop", "orders", _with_schema(V1))
    world.reconcile("shop", "orders")
    dags = world.resolver.dags
    assert isinstance(dags, VersionedDags)
    dags.version = 4
    world.apply("shop", "orders", _with_schema(V2))
    result = world.reconcile("shop", "orders")
    assert sorted(registry.subjects[SUBJECT]) == [1, 2]
    status = world.objects[("shop", "orders")].status.schema_
    assert status is not None and status.version == 2
    assert [(h.version, h.dag_version) for h in status.history] == [(1, 3), (2, 4)]
    assert [entry["version"] for entry in _handed(world)] == [1, 2]
    assert any(note.reason == "SchemaRegistered" for note in result.notes)


def test_an_incompatible_change_is_refused_and_nothing_else_stops() -> None:
    world, registry = _world()
    world.apply("shop", "orders", _with_schema(V1))
    world.reconcile("shop", "orders")
    world.apply("shop", "orders", _with_schema(BAD))
    result = world.reconcile("shop", "orders")
    assert registry.subjects[SUBJECT] == {1: (1, V1)}
    assert world.condition("shop", "orders") == ("False", "SchemaIncompatible")
    message = next(c.message for c in world.objects[("shop", "orders")].status.conditions if c.type == "Ready")
    assert "STRING not compatible" in message and "not BACKWARD-compatible" in message
    assert world.condition("shop", "orders", "CredentialsReady") == ("True", "CredentialsIssued")
    assert any(note.reason == "SchemaIncompatible" and note.type == "Warning" for note in result.notes)
    status = world.objects[("shop", "orders")].status.schema_
    assert status is not None and status.version == 1


def test_a_version_registered_by_hand_is_removed_and_a_deleted_subject_registered_again() -> None:
    world, registry = _world()
    world.apply("shop", "orders", _with_schema(V1))
    world.reconcile("shop", "orders")
    registry.subjects[SUBJECT][2] = (99, V2)
    result = world.reconcile("shop", "orders")
    assert registry.subjects[SUBJECT] == {1: (1, V1)}
    assert any(note.reason == "SchemaDriftRepaired" for note in result.notes)
    registry.clear(SUBJECT)
    world.reconcile("shop", "orders")
    assert list(registry.subjects[SUBJECT].values()) == [(2, V1)]
    status = world.objects[("shop", "orders")].status.schema_
    assert status is not None and [h.version for h in status.history] == [1]


def test_a_subject_registered_outside_the_operator_is_a_conflict_and_left_alone() -> None:
    world, registry = _world()
    registry.subjects[SUBJECT] = {1: (7, V2)}
    world.apply("shop", "orders", _with_schema(V1))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "SchemaReady") == ("False", "SchemaConflict")
    assert registry.subjects[SUBJECT] == {1: (7, V2)}


def test_a_kafka_broker_without_a_registry_is_reported() -> None:
    world = World()
    world.apply("shop", "orders", _with_schema(V1))
    resolver = SchemaResolver(registry=None)
    world.resolver = resolver
    world.reconciler = PipelineReconciler(world.cluster, world.claims, resolver, clock=lambda: world.now)
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "SchemaReady") == ("False", "SchemaRegistryMissing")


def test_deletion_removes_the_subject_with_deletion_policy_delete() -> None:
    world, registry = _world()
    body = _with_schema(V1)
    body["topic"] = {"deletionPolicy": "Delete"}
    world.apply("shop", "orders", body)
    world.reconcile("shop", "orders")
    notes = world.delete("shop", "orders")
    assert SUBJECT not in registry.subjects
    assert any(note.reason == "SchemaDeleted" for note in notes)
    assert world.claims.specs("Schema") == []


def test_a_definition_from_a_config_map_is_registered_once_the_config_map_exists() -> None:
    world, registry = _world()
    body = spec(schema={"type": "AVRO", "configMapRef": {"name": "order-schema", "key": "order.avsc"}})
    world.apply("shop", "orders", body)
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "SchemaReady") == ("False", "SchemaDefinitionMissing")
    assert SUBJECT not in registry.subjects
    cluster = world.cluster
    assert isinstance(cluster, ConfigMapCluster)
    cluster.config_maps[("shop", "order-schema")] = {"order.avsc": V1}
    world.reconcile("shop", "orders")
    assert registry.subjects[SUBJECT] == {1: (1, V1)}


def test_a_config_map_definition_longer_than_an_inline_one_may_be_is_refused_and_the_registered_one_stays() -> None:
    world, registry = _world()
    body = spec(schema={"type": "AVRO", "configMapRef": {"name": "order-schema", "key": "order.avsc"}})
    cluster = world.cluster
    assert isinstance(cluster, ConfigMapCluster)
    cluster.config_maps[("shop", "order-schema")] = {"order.avsc": V1}
    world.apply("shop", "orders", body)
    world.reconcile("shop", "orders")
    padded = V1[:-1] + ',"doc":"' + "x" * SCHEMA_DEFINITION_MAX_LENGTH + '"}'
    cluster.config_maps[("shop", "order-schema")] = {"order.avsc": padded}
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "SchemaReady") == ("False", "SchemaDefinitionTooLong")
    assert registry.subjects[SUBJECT] == {1: (1, V1)}


def test_a_rotated_listener_credential_keeps_the_schemas_handed_over_while_the_registry_is_down() -> None:
    world, registry = _world()
    world.apply("shop", "orders", _with_schema(V1))
    world.reconcile("shop", "orders")
    handoff = (naming.DEFAULT_LISTENER_NAMESPACE, naming.listener_secret_name("shop", "orders"))
    first = world.cluster.data(*handoff)["username"]

    def unavailable(subject: str, desired: DesiredSchema) -> ObservedSchemas:
        raise UnavailableError("the schema registry did not answer")

    registry.observe = unavailable  # type: ignore[method-assign]
    world.advance(hours=25)
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "SchemaReady") == ("False", "BackendUnavailable")
    assert world.cluster.data(*handoff)["username"] != first  # the listener's credential rotated
    # The listener keeps decoding with the versions registered: the new credential did not drop them.
    assert [(entry["version"], entry["id"]) for entry in _handed(world)] == [(1, 1)]


def test_an_airflow_producer_connection_names_the_registry_as_producer_secrets_do() -> None:
    world, _ = _world()
    producer = {"name": "results", "secret": False,
                "airflowConnection": {"instanceRef": {"kind": "ClusterAirflowInstance", "name": "main"}}}  # fmt: skip
    schema = {"type": "AVRO", "definition": V1, "compatibility": "BACKWARD"}
    world.apply("shop", "orders", spec(producers=[producer], schema=schema))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "ProducerConnectionsReady") == ("True", "ConnectionsInSync")
    connection = world.connections.items["shop.orders__results"]
    assert json.loads(connection["extra"])["schema.registry.url"] == "http://registry"
    # Without a schema the connection is the broker's alone.
    world.apply("shop", "plain", spec(producers=[producer]))
    world.reconcile("shop", "plain")
    assert "extra" not in world.connections.items["shop.plain__results"]


@dataclass
class CredentialedRegistry(FakeRegistry):
    """A registry the operator reaches with its own credential, whose producers get what the real
    adapter hands out (the broker's clientCredentialsSecretRef or nothing)."""

    client: ConfluentRegistry = field(
        default_factory=lambda: ConfluentRegistry(RegistrySettings("http://registry", "operator", SecretStr(OPERATOR)))
    )

    def client_settings(self) -> dict[str, str]:
        return self.client.client_settings()


def _schema_pipeline_with_an_airflow_producer(registry: FakeRegistry) -> tuple[dict[str, str], dict[str, object]]:
    world, _ = _world(registry)
    producer = {"name": "results",
                "airflowConnection": {"instanceRef": {"kind": "ClusterAirflowInstance", "name": "main"}}}  # fmt: skip
    world.apply("shop", "orders", spec(producers=[producer], schema={"type": "AVRO", "definition": V1}))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "ProducerConnectionsReady") == ("True", "ConnectionsInSync")
    extra = json.loads(world.connections.items["shop.orders__results"]["extra"])
    return world.secret("shop", "orders", "results"), extra


def test_producers_of_a_schema_pipeline_never_get_the_operators_registry_credential() -> None:
    secret, extra = _schema_pipeline_with_an_airflow_producer(CredentialedRegistry())
    for given in (secret, extra):
        assert given["schema.registry.url"] == "http://registry"
        assert (given["auto.register.schemas"], given["use.latest.version"]) == ("false", "true")
        assert not any(key.startswith("basic.auth.") for key in given)
        assert not any(OPERATOR in str(value) or "operator:" in str(value) for value in given.values())


def test_producers_of_a_schema_pipeline_get_the_brokers_client_credential() -> None:
    settings = RegistrySettings(
        "http://registry", "operator", SecretStr(OPERATOR), client_username="reader", client_password=SecretStr("ro")
    )
    secret, extra = _schema_pipeline_with_an_airflow_producer(CredentialedRegistry(client=ConfluentRegistry(settings)))
    for given in (secret, extra):
        assert given["basic.auth.user.info"] == "reader:ro"
        assert not any(OPERATOR in str(value) for value in given.values())


def test_a_registry_credential_a_producer_secret_holds_from_before_is_removed() -> None:
    # As an operator that still gave producers its own registry credential wrote the Secret.
    before = RegistrySettings("http://registry", client_username="operator", client_password=SecretStr(OPERATOR))
    registry = CredentialedRegistry(client=ConfluentRegistry(before))
    world, _ = _world(registry)
    world.apply("shop", "orders", _with_schema(V1))
    world.reconcile("shop", "orders")
    assert world.secret("shop", "orders", "app")["basic.auth.user.info"] == f"operator:{OPERATOR}"

    registry.client = ConfluentRegistry(RegistrySettings("http://registry", "operator", SecretStr(OPERATOR)))
    world.reconcile("shop", "orders")
    secret = world.secret("shop", "orders", "app")
    assert not any(key.startswith("basic.auth.") for key in secret)
    assert secret["schema.registry.url"] == "http://registry" and "password" in secret  # the rest kept


def test_a_schema_added_or_removed_reaches_an_airflow_producer_connection_at_once_with_its_credential_kept() -> None:
    world, _ = _world()
    producer = {"name": "results", "secret": False,
                "airflowConnection": {"instanceRef": {"kind": "ClusterAirflowInstance", "name": "main"}}}  # fmt: skip
    world.apply("shop", "orders", spec(producers=[producer]))
    world.reconcile("shop", "orders")
    before = dict(world.connections.items["shop.orders__results"])
    assert "extra" not in before

    world.apply("shop", "orders", spec(producers=[producer], schema={"type": "AVRO", "definition": V1}))
    result = world.reconcile("shop", "orders")
    connection = world.connections.items["shop.orders__results"]
    assert json.loads(connection["extra"])["schema.registry.url"] == "http://registry"
    # The same generation and password: only the settings changed, in place.
    assert (connection["login"], connection["password"]) == (before["login"], before["password"])
    assert [note.reason for note in result.notes if note.reason.startswith("ProducerConnection")] == [
        "ProducerConnectionSettingsUpdated"
    ]
    assert world.condition("shop", "orders", "ProducerConnectionsReady") == ("True", "ConnectionsInSync")
    assert world.connections.updates == [("shop.orders__results", ["extra", "login"])]
    world.reconcile("shop", "orders")
    assert len(world.connections.updates) == 1  # in sync: nothing more to update

    # A new generation keeps the registry, and the update that follows has nothing to do.
    world.advance(hours=24)
    world.reconcile("shop", "orders")
    world.reconcile("shop", "orders")
    rotated = world.connections.items["shop.orders__results"]
    assert rotated["login"] != before["login"] and "schema.registry.url" in json.loads(rotated["extra"])
    assert len(world.connections.updates) == 1

    world.apply("shop", "orders", spec(producers=[producer]))
    world.reconcile("shop", "orders")
    removed = world.connections.items["shop.orders__results"]
    assert removed.get("extra") is None and removed["password"] == rotated["password"]
