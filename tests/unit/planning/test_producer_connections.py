"""Airflow as a producer, the pure part: connection ids, desired connections, and what an
undeliverable credential means for the credential plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eventpipeline.api.pipeline import EventPipelineSpec
from eventpipeline.planning import naming
from eventpipeline.planning.credentials import (
    IssueCredential,
    ObservedCredential,
    RevokeCredential,
    RotationPolicy,
    plan_credential,
)
from eventpipeline.planning.producer_connections import connection_holds, desired_connections, to_withdraw

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
POLICY = RotationPolicy(timedelta(hours=24), timedelta(hours=1))
INSTANCE = {"kind": "ClusterAirflowInstance", "name": "main"}


def pipeline_spec(*producers: dict[str, Any], airflow: dict[str, Any] | None = None) -> EventPipelineSpec:
    body: dict[str, Any] = {"brokerRef": {"kind": "ClusterBroker", "name": "kafka"}, "producers": list(producers)}
    if airflow is not None:
        body["airflow"] = airflow
    return EventPipelineSpec.model_validate(body)


def test_default_producer_connection_ids_collide_with_no_other_default() -> None:
    ids = {
        naming.producer_connection_id("shop", "orders", "results", None),
        naming.producer_connection_id("shop", "orders-results", "x", None),
        naming.producer_connection_id("shop-orders", "results", "x", None),
        naming.producer_connection_id("shop", "orders.results", "x", None),
        naming.connection_id("shop", "orders", None),
        naming.connection_id("shop", "orders.results", None),
    }
    assert len(ids) == 6  # Kubernetes names hold no `_`: no listener default has the producer separator
    assert naming.producer_connection_id("shop", "orders", "results", None) == "shop.orders__results"


def test_a_producer_connection_id_cannot_take_another_namespaces_prefix() -> None:
    assert naming.producer_connection_id("shop", "orders", "results", "shop.results") == "shop.results"
    assert naming.producer_connection_id("shop", "orders", "results", "results") == "results"
    with pytest.raises(naming.NamingError, match="prefix of namespace 'payments'"):
        naming.producer_connection_id("shop", "orders", "results", "payments.ledger")


def test_a_default_id_longer_than_airflow_allows_asks_for_an_explicit_one() -> None:
    with pytest.raises(naming.NamingError, match="set producers"):
        naming.producer_connection_id("shop", "o" * 240, "results", None)


def test_desired_connections_are_the_producers_with_an_airflow_connection() -> None:
    spec = pipeline_spec(
        {"name": "app"},
        {"name": "results", "airflowConnection": {"instanceRef": INSTANCE}, "secret": False},
    )
    [wanted] = desired_connections(spec, "shop", "orders")
    assert (wanted.producer, wanted.connection_id, wanted.secret) == ("results", "shop.orders__results", False)
    assert wanted.key == ("ClusterAirflowInstance//main", "shop.orders__results")


def test_a_producer_connection_may_not_be_the_listeners() -> None:
    spec = pipeline_spec(
        {"name": "results", "airflowConnection": {"instanceRef": INSTANCE, "connectionId": "shop.orders"}},
        airflow={"instanceRef": INSTANCE},
    )
    with pytest.raises(naming.NamingError, match="the listener's connection"):
        desired_connections(spec, "shop", "orders")


def test_the_same_id_on_another_instance_is_another_connection() -> None:
    other = {"kind": "ClusterAirflowInstance", "name": "other"}
    spec = pipeline_spec(
        {"name": "results", "airflowConnection": {"instanceRef": other, "connectionId": "shop.orders"}},
        airflow={"instanceRef": INSTANCE},
    )
    assert [c.connection_id for c in desired_connections(spec, "shop", "orders")] == ["shop.orders"]


def test_connections_no_longer_wanted_are_withdrawn() -> None:
    spec = pipeline_spec({"name": "results", "airflowConnection": {"instanceRef": INSTANCE}})
    wanted = desired_connections(spec, "shop", "orders")
    recorded = [("ClusterAirflowInstance//main", "shop.orders__results"), ("ClusterAirflowInstance//main", "old")]
    assert to_withdraw(wanted, recorded) == [("ClusterAirflowInstance//main", "old")]


def test_a_connection_holds_the_credential_only_if_it_exists_with_the_current_generation() -> None:
    assert connection_holds("u-g2", True, "u-g2")
    assert not connection_holds("u-g1", True, "u-g2")
    assert not connection_holds("u-g2", False, "u-g2")
    assert not connection_holds(None, True, "u-g2")


def _plan(record: Any, *, deliverable: bool, observed: ObservedCredential | None = None) -> Any:
    return plan_credential(
        username_base="ep.shop.orders.results.1234abcd",
        role="producer",
        record=record,
        observed=observed,
        now=NOW,
        policy=POLICY,
        rotate_request=None,
        deliverable=deliverable,
    )


def test_a_credential_with_nowhere_to_go_is_never_issued() -> None:
    plan = _plan(None, deliverable=False)
    assert plan.actions == () and plan.record is None


def test_a_credential_that_lost_its_only_delivery_is_revoked_then_comes_back_as_a_new_generation() -> None:
    issued = _plan(None, deliverable=True).record
    assert issued is not None
    withdrawn = _plan(issued, deliverable=False)
    assert withdrawn.actions == (RevokeCredential(issued.username, "access-withdrawn"),)
    assert withdrawn.record is not None and withdrawn.record.withdrawn
    assert _plan(withdrawn.record, deliverable=False).actions == ()
    again = _plan(withdrawn.record, deliverable=True)
    assert again.actions == (IssueCredential("ep.shop.orders.results.1234abcd-g2", "issue"),)


def test_a_connection_that_does_not_hold_the_current_generation_is_repaired() -> None:
    issued = _plan(None, deliverable=True).record
    assert issued is not None
    stale = ObservedCredential(secret_intact=False, on_broker=True)
    assert _plan(issued, deliverable=True, observed=stale).actions == (IssueCredential(issued.username, "repair"),)
