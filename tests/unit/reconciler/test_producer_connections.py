"""Airflow as a producer, on in-memory fakes: the producer's credential in an Airflow connection,
rotated, repaired, claimed and withdrawn like any other principal's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventpipeline.adapters.references import UnresolvedReferenceError
from eventpipeline.api.common import AirflowInstanceRef
from eventpipeline.planning import naming
from tests.unit.reconciler.fakes import FakeAirflowTarget, FakeResolver
from tests.unit.reconciler.world import World, spec

TOPIC = "shop.orders"
RESULTS = "shop.orders__results"  # the default id of producer `results`
CONDITION = "ProducerConnectionsReady"


@dataclass
class AirflowGate(FakeResolver):
    """The fake resolver, with the Airflow instance's own allowlist (and existence)."""

    airflow_allowed: set[str] = field(default_factory=lambda: {"shop", "payments"})
    airflow_exists: bool = True

    def airflow(self, ref: AirflowInstanceRef, namespace: str) -> FakeAirflowTarget:
        if not self.airflow_exists:
            raise UnresolvedReferenceError(
                "ClusterAirflowInstanceNotFound", "ClusterAirflowInstance main does not exist"
            )
        if namespace not in self.airflow_allowed:
            raise UnresolvedReferenceError("NamespaceNotAllowed", f"Airflow main does not allow {namespace}")
        return super().airflow(ref, namespace)

    def airflow_by_key(self, key: str) -> FakeAirflowTarget:
        if not self.airflow_exists:
            raise UnresolvedReferenceError(
                "ClusterAirflowInstanceNotFound", "ClusterAirflowInstance main does not exist"
            )
        return super().airflow_by_key(key)


def airflow_producer(secret: bool = True, connection_id: str | None = None) -> dict[str, Any]:
    connection: dict[str, Any] = {"instanceRef": {"kind": "ClusterAirflowInstance", "name": "main"}}
    if connection_id is not None:
        connection["connectionId"] = connection_id
    return {"name": "results", "airflowConnection": connection, "secret": secret}


def world_with(*producers: dict[str, Any], **overrides: Any) -> World:
    world = World()
    world.resolver = AirflowGate(world.broker, world.connections, world.resolver.dags)
    world.reconciler._resolver = world.resolver
    world.apply("shop", "orders", spec(producers=list(producers), **overrides))
    world.reconcile("shop", "orders")
    return world


def results_username(world: World) -> str:
    return str(world.connections.items[RESULTS]["login"])


def test_an_airflow_producer_gets_its_credential_in_a_connection_with_producer_access_only() -> None:
    world = world_with(airflow_producer(secret=False))
    assert world.condition("shop", "orders") == ("True", "Reconciled")
    assert world.condition("shop", "orders", CONDITION) == ("True", "ConnectionsInSync")
    username = results_username(world)
    assert world.broker.can(username, TOPIC, "produce")
    assert not world.broker.can(username, TOPIC, "consume")
    assert not world.broker.can(username, f"{TOPIC}.dlq", "produce")
    assert ("shop", naming.secret_name("orders", "results")) not in world.cluster.secrets
    # The listener's connection is untouched and separate.
    assert world.connections.items["shop.orders"]["login"] != username
    status = next(p for p in world.objects[("shop", "orders")].status.principals if p.name == "results")
    assert (status.airflow_connection, status.secret_name, status.username) == (RESULTS, None, username)


def test_with_a_secret_too_both_hold_the_same_generation() -> None:
    world = world_with(airflow_producer(secret=True))
    secret = world.secret("shop", "orders", "results")
    assert secret["username"] == results_username(world)
    assert secret["password"] == world.connections.items[RESULTS]["password"]


def test_rotation_updates_the_connection_and_keeps_the_old_generation_valid_for_the_grace_period() -> None:
    world = world_with(airflow_producer(secret=False))
    first = results_username(world)
    world.advance(hours=24)
    world.reconcile("shop", "orders")
    second = results_username(world)
    assert second != first
    assert world.broker.can(first, TOPIC, "produce") and world.broker.can(second, TOPIC, "produce")
    world.advance(hours=1)
    world.reconcile("shop", "orders")
    assert not world.broker.can(first, TOPIC, "produce") and first not in world.broker.credentials
    assert results_username(world) == second and world.broker.can(second, TOPIC, "produce")


def test_a_connection_deleted_in_airflow_gets_a_freshly_issued_credential() -> None:
    world = world_with(airflow_producer(secret=False))
    username = results_username(world)
    del world.connections.items[RESULTS]
    result = world.reconcile("shop", "orders")
    assert results_username(world) == username  # same generation, new password
    assert world.broker.credentials[username] == world.connections.items[RESULTS]["password"]
    assert any(note.reason == "CredentialRepaired" for note in result.notes)


def test_airflow_down_leaves_the_credential_alone_and_reports_it() -> None:
    world = world_with(airflow_producer(secret=False))
    credentials = dict(world.broker.credentials)
    world.connections.down = True
    world.reconcile("shop", "orders")
    assert world.broker.credentials == credentials
    assert world.condition("shop", "orders", CONDITION) == ("False", "BackendUnavailable")
    world.connections.down = False
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", CONDITION) == ("True", "ConnectionsInSync")


def test_a_producer_removed_from_the_spec_loses_its_connection_and_credential() -> None:
    world = world_with(airflow_producer(secret=False))
    username = results_username(world)
    world.apply("shop", "orders", spec(producers=[]))
    world.reconcile("shop", "orders")
    assert RESULTS not in world.connections.items
    assert username not in world.broker.credentials
    assert "shop.orders" in world.connections.items  # the listener's stays
    assert world.condition("shop", "orders", CONDITION) == ("True", "NoProducerConnections")


def test_a_namespace_removed_from_the_instance_loses_the_connection_and_the_principal() -> None:
    world = world_with(airflow_producer(secret=False), airflow=None)
    username = results_username(world)
    assert isinstance(world.resolver, AirflowGate)
    world.resolver.airflow_allowed.discard("shop")
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", CONDITION) == ("False", "NamespaceNotAllowed")
    assert RESULTS not in world.connections.items
    assert username not in world.broker.credentials and not world.broker.can(username, TOPIC, "produce")
    # Allowed again: a new generation, never the revoked name.
    world.resolver.airflow_allowed.add("shop")
    world.reconcile("shop", "orders")
    again = results_username(world)
    assert again != username and again.endswith("-g2")
    assert world.condition("shop", "orders") == ("True", "Reconciled")


def test_with_a_secret_the_principal_outlives_the_withdrawn_connection() -> None:
    world = world_with(airflow_producer(secret=True), airflow=None)
    username = results_username(world)
    assert isinstance(world.resolver, AirflowGate)
    world.resolver.airflow_allowed.discard("shop")
    world.reconcile("shop", "orders")
    assert RESULTS not in world.connections.items
    assert world.broker.can(username, TOPIC, "produce")
    assert world.secret("shop", "orders", "results")["username"] == username


def test_a_deleted_instance_revokes_the_principal_and_keeps_the_claim_until_it_can_delete() -> None:
    world = world_with(airflow_producer(secret=False), airflow=None)
    username = results_username(world)
    assert isinstance(world.resolver, AirflowGate)
    world.resolver.airflow_exists = False
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", CONDITION) == ("False", "ClusterAirflowInstanceNotFound")
    assert username not in world.broker.credentials
    assert [claim.name for claim in world.claims.specs("AirflowConnection")] == [RESULTS]


def test_deleting_the_pipeline_deletes_the_producer_connection() -> None:
    world = world_with(airflow_producer(secret=False))
    username = results_username(world)
    world.delete("shop", "orders")
    assert world.connections.items == {}
    assert username not in world.broker.credentials
    assert world.claims.specs("AirflowConnection") == []


def test_a_connection_of_another_pipeline_or_of_nobody_is_never_overwritten() -> None:
    world = world_with(airflow_producer(secret=False, connection_id="shared"))
    owner_login = world.connections.items["shared"]["login"]
    world.apply("shop", "other", spec(producers=[airflow_producer(secret=False, connection_id="shared")]))
    world.reconcile("shop", "other")
    assert world.condition("shop", "other", CONDITION) == ("False", "ConnectionConflict")
    assert world.connections.items["shared"]["login"] == owner_login
    world.connections.items["by-hand"] = {"connection_id": "by-hand", "login": "someone"}
    world.apply("shop", "third", spec(producers=[airflow_producer(secret=False, connection_id="by-hand")]))
    world.reconcile("shop", "third")
    assert world.condition("shop", "third", CONDITION) == ("False", "ConnectionConflict")
    assert world.connections.items["by-hand"]["login"] == "someone"


def test_a_producer_connection_id_equal_to_the_listeners_is_refused() -> None:
    world = world_with(airflow_producer(secret=True, connection_id="shop.orders"))
    assert world.condition("shop", "orders", CONDITION) == ("False", "ConnectionIdNotAllowed")
    listener = world.secret("shop", "orders", "listener")
    assert world.connections.items["shop.orders"]["login"] == listener["username"]


def test_a_producer_cannot_take_another_namespaces_connection_id() -> None:
    world = world_with(airflow_producer(secret=True, connection_id="payments.ledger"))
    assert world.condition("shop", "orders", CONDITION) == ("False", "ConnectionIdNotAllowed")
    assert "payments.ledger" not in world.connections.items
