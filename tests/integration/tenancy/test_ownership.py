"""Tenants attacking each other through names, on the real stack: every attempt is refused with a
condition, and nothing of the victim changes — its Secret, its Airflow connection, its broker
users. Ownership is recorded in OwnershipClaims that only the operator writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError
from kubernetes import client

from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OPEN_DAG
from tests.integration.support import GROUP, VERSION, Kube, eventually, fresh_namespace, kafka_send, unique

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "airflow": {"instanceRef": {"name": "local"}},
        **extra,
    }


@pytest.fixture
def other_namespace(kube: Kube) -> Iterator[str]:
    """The attacker's (or the victim's) namespace next to the test's own."""
    with fresh_namespace(kube) as name:
        yield name


@pytest.fixture
def airflow(stack: Any) -> AirflowApi:
    return AirflowApi(stack.exports)


def connection(airflow: AirflowApi, connection_id: str) -> dict[str, Any] | None:
    response = airflow.request("GET", f"/api/v2/connections/{connection_id}")
    return response.json() if response.status_code == 200 else None


@pytest.mark.usefixtures("operator")
def test_default_connection_ids_of_two_namespaces_never_collide(
    kube: Kube, namespace: str, other_namespace: str, airflow: AirflowApi
) -> None:
    """`a-b`/`c` and `a`/`b-c` used to share `a_b_c`: now each has its own, and deleting one
    pipeline leaves the other's connection alone."""
    kube.create_pipeline(namespace, "p-x", spec())
    kube.create_pipeline(other_namespace, "p-x", spec())
    kube.wait_condition(namespace, "p-x", "Ready", "True", timeout=120)
    kube.wait_condition(other_namespace, "p-x", "Ready", "True", timeout=120)
    mine, theirs = f"{namespace}.p-x", f"{other_namespace}.p-x"
    assert connection(airflow, mine) is not None and connection(airflow, theirs) is not None
    kube.delete_pipeline(other_namespace, "p-x")
    eventually(lambda: connection(airflow, theirs) is None, timeout=60, what="the deleted pipeline's connection")
    assert connection(airflow, mine) is not None


def test_an_existing_airflow_connection_is_neither_overwritten_nor_deleted(
    stack: Any, kube: Kube, operator: Any, namespace: str, airflow: AirflowApi
) -> None:
    victim = unique("aws_default").replace("-", "_")
    body = {"connection_id": victim, "conn_type": "aws", "login": "root", "password": "the-cloud-password"}
    airflow.request("POST", "/api/v2/connections", json=body).raise_for_status()
    try:
        hostile = spec(airflow={"instanceRef": {"name": "local"}, "connectionId": victim})
        kube.create_pipeline(namespace, "squat", hostile)
        condition = kube.wait_condition(namespace, "squat", "Ready", "False", reason="ConnectionConflict")
        assert victim in condition["message"]
        kube.delete_pipeline(namespace, "squat")
        eventually(lambda: kube.get_pipeline(namespace, "squat") is None, timeout=60, what="the deletion")
        left = connection(airflow, victim)
        assert left is not None and left["conn_type"] == "aws" and left["login"] == "root"
    finally:
        airflow.request("DELETE", f"/api/v2/connections/{victim}")


@pytest.mark.usefixtures("operator")
def test_another_namespaces_connection_id_form_is_refused(
    kube: Kube, namespace: str, other_namespace: str, airflow: AirflowApi
) -> None:
    kube.create_pipeline(other_namespace, "ledger", spec())
    kube.wait_condition(other_namespace, "ledger", "Ready", "True", timeout=120)
    written = connection(airflow, f"{other_namespace}.ledger")
    hostile = spec(airflow={"instanceRef": {"name": "local"}, "connectionId": f"{other_namespace}.ledger"})
    kube.create_pipeline(namespace, "thief", hostile)
    kube.wait_condition(namespace, "thief", "Ready", "False", reason="ConnectionIdNotAllowed")
    assert connection(airflow, f"{other_namespace}.ledger") == written


def test_a_forged_status_makes_the_operator_act_on_no_foreign_name(
    stack: Any, kube: Kube, operator: Any, namespace: str, other_namespace: str
) -> None:
    """Whoever can patch status used to make the operator reset another user's password into
    their Secret, or delete another namespace's user. Status is now only a report."""
    kube.create_pipeline(other_namespace, "victim", spec())
    kube.wait_condition(other_namespace, "victim", "Ready", "True", timeout=120)
    victim_secret = kube.secret(other_namespace, "victim.app.credentials")
    assert victim_secret is not None
    kube.create_pipeline(namespace, "attacker", spec())
    kube.wait_condition(namespace, "attacker", "Ready", "True", timeout=120)
    forged = [
        {
            "name": "app",
            "role": "producer",
            "secretName": "attacker.app.credentials",
            "username": victim_secret["username"],
            "generation": 1,
            "nextRotationAt": "2000-01-01T00:00:00Z",
            "previousUsername": stack.exports["KAFKA_ADMIN_USER"],
            "previousRevokeAt": "2000-01-01T00:00:00Z",
        }
    ]
    kube.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "eventpipelines", "attacker", {"status": {"principals": forged}}
    )
    # A drift check and a due rotation later (the test operator resyncs every few seconds) ...
    eventually(
        lambda: (
            (p := kube.get_pipeline(namespace, "attacker"))
            and p["status"]["principals"][0]["username"] != victim_secret["username"]
        ),
        timeout=60,
        what="the operator to report its own records again",
    )
    # ... the victim's credential still works, and the attacker's Secret holds only its own user.
    assert kafka_send(victim_secret, f"{other_namespace}.victim") is None
    attacker_secret = kube.secret(namespace, "attacker.app.credentials")
    assert attacker_secret is not None
    assert attacker_secret["username"] == kube.username(namespace, "attacker", "app")
    assert victim_secret["password"] not in attacker_secret.values()
    # The attacker's credential reaches nothing of the victim.
    refused = kafka_send(attacker_secret, f"{other_namespace}.victim")
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_secret_the_pipeline_does_not_own_is_left_untouched_and_survives_deletion(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    """`db-admin-credentials` for pipeline `db`, producer `admin`: the names no longer collide,
    and a Secret of the exact name the pipeline needs is still never taken over."""
    foreign = client.V1Secret(
        metadata=client.V1ObjectMeta(name="db.admin.credentials"), string_data={"password": "db-root"}
    )
    kube.core.create_namespaced_secret(namespace, foreign)
    kube.create_pipeline(namespace, "db", spec(producers=[{"name": "admin"}]))
    condition = kube.wait_condition(namespace, "db", "Ready", "False", reason="SecretConflict")
    assert "db.admin.credentials" in condition["message"]
    kube.delete_pipeline(namespace, "db")
    eventually(lambda: kube.get_pipeline(namespace, "db") is None, timeout=60, what="the deletion")
    left = kube.core.read_namespaced_secret("db.admin.credentials", namespace)
    assert not left.metadata.owner_references
    assert kube.secret(namespace, "db.admin.credentials") == {"password": "db-root"}


def test_a_dead_letter_topic_cannot_be_taken_as_a_pipelines_topic(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    """Pipeline `x.dlq`'s topic used to be pipeline `x`'s dead-letter topic."""
    triggered = spec(airflow={"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}})
    kube.create_pipeline(namespace, "x", triggered)
    kube.wait_condition(namespace, "x", "TopicReady", "True", timeout=120)
    kube.create_pipeline(namespace, "x.dlq", spec())
    kube.wait_condition(namespace, "x.dlq", "Ready", "False", reason="TopicNameNotAllowed")
    kube.create_pipeline(namespace, "y", spec(topic={"name": f"{namespace}.x.dlq"}))
    kube.wait_condition(namespace, "y", "Ready", "False", reason="TopicNameNotAllowed")


def test_ownership_claims_are_the_operators_record(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    kube.create_pipeline(namespace, "recorded", spec())
    kube.wait_condition(namespace, "recorded", "Ready", "True", timeout=120)
    uid = kube.get_pipeline(namespace, "recorded")["metadata"]["uid"]  # type: ignore[index]
    claims = kube.custom.list_cluster_custom_object(
        GROUP, VERSION, "ownershipclaims", label_selector=f"eventpipeline.dev/pipeline-uid={uid}"
    )["items"]
    kinds = sorted((item["spec"]["kind"], item["spec"]["name"]) for item in claims)
    assert ("Topic", f"{namespace}.recorded") in kinds
    assert ("AirflowConnection", f"{namespace}.recorded") in kinds
    assert sum(1 for kind, _ in kinds if kind == "Principal") == 2  # app and the listener
    kube.delete_pipeline(namespace, "recorded")
    eventually(lambda: kube.get_pipeline(namespace, "recorded") is None, timeout=60, what="the deletion")
    left = kube.custom.list_cluster_custom_object(
        GROUP, VERSION, "ownershipclaims", label_selector=f"eventpipeline.dev/pipeline-uid={uid}"
    )["items"]
    assert left == []  # deletionPolicy Delete: everything recorded was removed, then forgotten
