"""A new pipeline's ownership claims: each taken once, already holding what the operator records
about its object, with the same safety as a take followed by a save."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from eventpipeline.adapters.errors import UnavailableError
from eventpipeline.planning import naming
from tests.unit.reconciler.fakes import StoredSecret
from tests.unit.reconciler.world import World, spec


def _new(world: World, name: str = "orders", namespace: str = "shop", **overrides: Any) -> None:
    world.apply(namespace, name, spec(**overrides))
    world.reconcile(namespace, name)


def test_a_new_pipeline_writes_each_claim_once_holding_its_final_content() -> None:
    world = World()
    _new(world)
    assert world.condition("shop", "orders") == ("True", "Reconciled")
    assert sorted(world.claims.writes) == [
        ("create", "AirflowConnection"),
        ("create", "DeadLetterTopic"),
        ("create", "Principal"),
        ("create", "Principal"),
        ("create", "Topic"),
    ]
    assert [topic.partitions for topic in world.claims.specs("Topic")] == [1]
    assert all(connection.fingerprint for connection in world.claims.specs("AirflowConnection"))
    assert set(world.broker.credentials) == world.usernames_in_claims()
    world.claims.writes.clear()
    world.reconcile("shop", "orders")
    assert world.claims.writes == []


def test_a_new_credential_is_recorded_before_the_broker_issues_it() -> None:
    world = World()
    world.apply("shop", "orders", spec())
    recorded_first: list[bool] = []
    issue = world.broker.issue_credentials

    def observed(usernames: Sequence[str], now: datetime, lifetime: tuple[timedelta, timedelta]) -> Any:
        recorded_first.append(bool(usernames) and set(usernames) <= world.usernames_in_claims())
        return issue(usernames, now, lifetime)

    world.broker.issue_credentials = observed  # type: ignore[method-assign]
    world.reconcile("shop", "orders")
    assert recorded_first == [True]


def test_a_credential_the_broker_failed_to_issue_is_issued_by_the_next_run() -> None:
    world = World()
    world.apply("shop", "orders", spec())
    issue = world.broker.issue_credentials

    def failing(*args: object) -> dict[str, SecretStr]:
        raise UnavailableError("broker gone")

    world.broker.issue_credentials = failing  # type: ignore[method-assign,assignment]
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "CredentialsReady") == ("False", "BackendUnavailable")
    assert world.broker.credentials == {}
    assert len(world.usernames_in_claims()) == 2  # recorded, hence owned, though never created
    world.broker.issue_credentials = issue  # type: ignore[method-assign]
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("True", "Reconciled")
    assert set(world.broker.credentials) == world.usernames_in_claims()
    assert {spec.credential.generation for spec in world.claims.specs("Principal") if spec.credential} == {1}


def test_a_run_stopped_by_a_secret_conflict_records_no_generation() -> None:
    world = World()
    name = naming.secret_name("orders", "listener")
    world.cluster.secrets[("shop", name)] = StoredSecret({"password": "theirs"}, {}, {"someone-else"})
    _new(world)
    assert world.condition("shop", "orders") == ("False", "SecretConflict")
    assert world.claims.specs("Principal") == []
    assert world.broker.credentials == {}


def test_a_pipeline_refused_by_the_quota_records_no_partitions_and_is_checked_again() -> None:
    world = World()
    for index in range(4):  # 4 x 64 partitions: exactly the default namespace quota of 256
        _new(world, f"big{index}", topic={"partitions": 64, "deletionPolicy": "Delete"})
    _new(world, "more")
    assert world.condition("shop", "more") == ("False", "QuotaExceeded")
    assert [s.partitions for s in world.claims.specs("Topic") if s.pipeline.name == "more"] == [None]
    world.reconcile("shop", "more")
    assert world.condition("shop", "more") == ("False", "QuotaExceeded")
    assert "shop.more" not in world.broker.topics
    world.delete("shop", "big0")
    world.reconcile("shop", "more")
    assert world.condition("shop", "more") == ("True", "Reconciled")


def test_a_pipeline_created_again_is_not_counted_twice_for_its_retained_topic() -> None:
    world = World()
    for index in range(4):
        _new(world, f"big{index}", topic={"partitions": 64})
    world.delete("shop", "big0")  # Retain: the topic stays, and its claim records 64 partitions
    _new(world, "big0", topic={"partitions": 64})
    assert world.condition("shop", "big0") == ("True", "Reconciled")
    assert world.broker.topics["shop.big0"] == 64


def test_an_airflow_connection_whose_write_failed_is_written_by_the_next_run() -> None:
    world = World()
    world.apply("shop", "orders", spec())
    put = world.connections.put

    def failing(payload: dict[str, Any]) -> None:
        raise UnavailableError("Airflow gone")

    world.connections.put = failing  # type: ignore[method-assign]
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "AirflowConnectionReady") == ("False", "BackendUnavailable")
    assert world.connections.items == {}
    world.connections.put = put  # type: ignore[method-assign]
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("True", "Reconciled")
    listener = world.secret("shop", "orders", "listener")
    assert world.connections.items["shop.orders"]["login"] == listener["username"]
