"""Airflow connection ids chosen by a tenant, on the real stack (issues 11 and 14).

A tenant in namespace B names, as a producer's `airflowConnection.connectionId` and as its
listener's `airflow.connectionId`, the connections that a pipeline of namespace A owns — A's
defaults (`<ns-a>.out`, `<ns-a>.out__results`, refused for their form: the `<ns-a>.` prefix is
A's) and an undotted id A chose (first come, first served) — and a connection made by hand in
Airflow. Each attempt ends in a condition that says what to fix; no connection is written,
read back byte for byte from Airflow's database; deleting B's pipelines deletes none of them.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from eventpipeline_devenv.airflow_api import AirflowApi
from eventpipeline_devenv.postgres import find_bin_dir
from tests.integration.support import GROUP, VERSION, Kube, eventually, fresh_namespace

pytestmark = pytest.mark.integration
TIMEOUT = 180  # a loaded machine reconciles slowly


def pipeline_spec(**extra: Any) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "airflow": {"instanceRef": {"name": "local"}},
        **extra,
    }


def producer(name: str, connection_id: str | None = None) -> dict[str, Any]:
    connection: dict[str, Any] = {"instanceRef": {"name": "local"}}
    if connection_id is not None:
        connection["connectionId"] = connection_id
    return {"name": name, "airflowConnection": connection}


def stored_connection(exports: Mapping[str, str], connection_id: str) -> str:
    """The connection's row in Airflow's database as stored: password and extra are Fernet
    ciphertexts with a fresh IV per write, so an equal row means it was not written at all
    (the REST API masks the password and cannot show that)."""
    bin_dir = find_bin_dir()
    assert bin_dir is not None, "no PostgreSQL client binaries (the stack's Airflow runs on them)"
    query = (
        "SELECT conn_type, host, login, password, port, extra, is_encrypted, is_extra_encrypted "
        "FROM connection WHERE conn_id = :'id'"
    )
    result = subprocess.run(
        [str(bin_dir / "psql"), "--no-psqlrc", "-At", "-v", "ON_ERROR_STOP=1", "-v", f"id={connection_id}",
         exports["AIRFLOW_DATABASE_URL"]],
        input=query, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def victim_namespace(kube: Kube) -> Iterator[str]:
    with fresh_namespace(kube, "ns-a") as name:
        yield name


@pytest.fixture
def tenant_namespace(kube: Kube) -> Iterator[str]:
    with fresh_namespace(kube, "ns-b") as name:
        yield name


@pytest.fixture
def hand_made(stack: Any) -> Iterator[str]:
    """A connection made in Airflow by hand (as an Airflow admin would): the operator did not create it."""
    airflow = AirflowApi(stack.exports)
    connection_id = f"hostile_default_{uuid.uuid4().hex[:8]}"
    body = {
        "connection_id": connection_id,
        "conn_type": "kafka",
        "login": "hand",
        "password": "made-by-an-admin",
        "extra": '{"bootstrap.servers": "kafka.example:9092"}',
    }
    airflow.request("POST", "/api/v2/connections", json=body).raise_for_status()
    yield connection_id
    airflow.request("DELETE", f"/api/v2/connections/{connection_id}")


def claim_holders(kube: Kube, connection_id: str) -> list[str]:
    """Namespaces of the pipelines holding an ownership claim on the Airflow connection id."""
    claims = kube.custom.list_cluster_custom_object(GROUP, VERSION, "ownershipclaims")["items"]
    return sorted(
        claim["spec"]["pipeline"]["namespace"]
        for claim in claims
        if claim["spec"]["kind"] == "AirflowConnection" and claim["spec"]["name"] == connection_id
    )


@pytest.mark.usefixtures("operator")
def test_a_tenant_naming_another_namespaces_or_a_hand_made_connection_gets_a_condition_and_changes_nothing(
    stack: Any, kube: Kube, victim_namespace: str, tenant_namespace: str, hand_made: str
) -> None:
    a, b = victim_namespace, tenant_namespace
    chosen = f"shared_{uuid.uuid4().hex[:8]}"  # an undotted id A chose: first come, first served
    kube.create_pipeline(a, "out", pipeline_spec(producers=[producer("results"), producer("more", chosen)]))
    kube.wait_condition(a, "out", "Ready", "True", timeout=TIMEOUT)
    a_listener, a_results = f"{a}.out", f"{a}.out__results"
    victims = {a_listener: [a], a_results: [a], chosen: [a], hand_made: []}
    for connection_id, holders in victims.items():
        assert claim_holders(kube, connection_id) == holders, connection_id
    before = {connection_id: stored_connection(stack.exports, connection_id) for connection_id in victims}
    assert all(before.values()), before

    # Each attack is a pipeline of its own in namespace B: (spec, condition, reason, words of the message).
    producer_field = "airflowConnection.connectionId"
    attacks: dict[str, tuple[dict[str, Any], str, str, tuple[str, ...]]] = {
        "p-a-producer": (
            pipeline_spec(producers=[producer("app", a_results)]),
            "ProducerConnectionsReady", "ConnectionIdNotAllowed", (a_results, f"{a}.", f"{b}."),
        ),
        "p-a-listener": (
            pipeline_spec(producers=[producer("app", a_listener)]),
            "ProducerConnectionsReady", "ConnectionIdNotAllowed", (a_listener, f"{a}.", f"{b}."),
        ),
        "l-a-producer": (
            pipeline_spec(airflow={"instanceRef": {"name": "local"}, "connectionId": a_results}),
            "AirflowConnectionReady", "ConnectionIdNotAllowed", (a_results, f"{a}.", f"{b}."),
        ),
        "p-chosen": (
            pipeline_spec(producers=[producer("app", chosen)]),
            "ProducerConnectionsReady", "ConnectionConflict", (chosen, f"{a}/out", producer_field),
        ),
        "l-chosen": (
            pipeline_spec(airflow={"instanceRef": {"name": "local"}, "connectionId": chosen}),
            "AirflowConnectionReady", "ConnectionConflict", (chosen, f"{a}/out", "airflow.connectionId"),
        ),
        "p-hand-made": (
            pipeline_spec(producers=[producer("app", hand_made)]),
            "ProducerConnectionsReady", "ConnectionConflict", (hand_made, "not created for a pipeline", producer_field),
        ),
        "l-hand-made": (
            pipeline_spec(airflow={"instanceRef": {"name": "local"}, "connectionId": hand_made}),
            "AirflowConnectionReady", "ConnectionConflict", (hand_made, "not created for a pipeline"),
        ),
    }  # fmt: skip
    for name, (spec, _, _, _) in attacks.items():
        kube.create_pipeline(b, name, spec)
    for name, (_, condition_type, reason, words) in attacks.items():
        condition = kube.wait_condition(b, name, condition_type, "False", reason=reason, timeout=TIMEOUT)
        missing = [word for word in words if word not in condition["message"]]
        assert not missing, f"{name}: {missing} not in {condition['message']!r}"
        kube.wait_condition(b, name, "Ready", "False", reason=reason, timeout=TIMEOUT)

    # A few drift checks of every attacker later (the test operator resyncs every 4 s), nothing was
    # written or claimed, and A still works.
    kube.wait_condition(a, "out", "Ready", "True", timeout=TIMEOUT)
    for connection_id, holders in victims.items():
        assert claim_holders(kube, connection_id) == holders, connection_id
        assert stored_connection(stack.exports, connection_id) == before[connection_id], connection_id

    for name in attacks:
        kube.delete_pipeline(b, name)
    for name in attacks:
        eventually(lambda name=name: kube.get_pipeline(b, name) is None, timeout=TIMEOUT, what=f"{b}/{name} gone")
    for connection_id, holders in victims.items():
        assert claim_holders(kube, connection_id) == holders, connection_id
        assert stored_connection(stack.exports, connection_id) == before[connection_id], connection_id
    kube.wait_condition(a, "out", "Ready", "True", timeout=TIMEOUT)
