"""EventPipelines on the real Pulsar broker: partitioned topic, exact grants per role, JWTs in
Secrets, the Airflow connection, drift repair, partition growth and clean deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jwt
import pulsar
import pytest

from tests.integration.conftest import OPEN_DAG
from tests.integration.support import Kube, eventually, pulsar_send

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]


def topic_path(namespace: str, pipeline: str) -> str:
    return f"/admin/v2/persistent/eventpipeline/{namespace}/{namespace}.{pipeline}"


def permissions(admin: httpx.Client, namespace: str, pipeline: str) -> dict[str, list[str]]:
    response = admin.get(f"{topic_path(namespace, pipeline)}/permissions")
    assert response.status_code == 200, response.text
    return {role: sorted(actions) for role, actions in response.json().items()}


def partitions(admin: httpx.Client, namespace: str, pipeline: str) -> int | None:
    listing = admin.get(f"/admin/v2/persistent/eventpipeline/{namespace}/partitioned")
    if listing.status_code == 404:
        return None
    full = f"persistent://eventpipeline/{namespace}/{namespace}.{pipeline}"
    if full not in listing.json():
        return None
    return int(admin.get(f"{topic_path(namespace, pipeline)}/partitions").json()["partitions"])


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-pulsar"},
        "topic": {"partitions": 2, "deletionPolicy": "Delete"},
        "producers": [{"name": "checkout"}],
        "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
        **extra,
    }


def test_pulsar_pipeline_gets_topic_exact_grants_token_and_connection(
    stack: Any, kube: Kube, operator: Any, namespace: str, pulsar_admin: httpx.Client
) -> None:
    exports = stack.exports
    kube.create_pipeline(namespace, "orders", spec())
    kube.wait_condition(namespace, "orders", "Ready", "True", timeout=120)
    full_topic = f"persistent://eventpipeline/{namespace}/{namespace}.orders"
    assert kube.get_pipeline(namespace, "orders")["status"]["topic"] == full_topic  # type: ignore[index]
    assert partitions(pulsar_admin, namespace, "orders") == 2
    producer_role = kube.username(namespace, "orders", "checkout")
    listener_role = kube.username(namespace, "orders", "listener")
    assert permissions(pulsar_admin, namespace, "orders") == {producer_role: ["produce"], listener_role: ["consume"]}

    secret = kube.secret(namespace, "orders.checkout.credentials")
    assert secret is not None and secret["serviceUrl"] == exports["PULSAR_TLS_SERVICE_URL"]
    assert secret["ca.crt"] == Path(exports["PULSAR_CA_FILE"]).read_text()
    claims = jwt.decode(secret["token"], options={"verify_signature": False})
    assert claims["sub"] == producer_role and "exp" in claims
    assert pulsar_send(secret, full_topic) is None
    refused = pulsar_send(secret, f"persistent://eventpipeline/{namespace}/{namespace}.orders.dlq")
    assert isinstance(refused, pulsar.AuthorizationError)
    assert secret["token"] not in str(kube.get_pipeline(namespace, "orders")) + str(kube.events(namespace, "orders"))


def test_revoked_grant_is_restored(
    stack: Any, kube: Kube, operator: Any, namespace: str, pulsar_admin: httpx.Client
) -> None:
    kube.create_pipeline(namespace, "drift", spec())
    kube.wait_condition(namespace, "drift", "Ready", "True")
    role = kube.username(namespace, "drift", "checkout")
    response = pulsar_admin.delete(f"{topic_path(namespace, 'drift')}/permissions/{role}")
    assert response.status_code == 204, response.text
    eventually(
        lambda: permissions(pulsar_admin, namespace, "drift").get(role) == ["produce"],
        timeout=60,
        what="the produce grant to come back",
    )


def test_pulsar_partitions_grow(
    stack: Any, kube: Kube, operator: Any, namespace: str, pulsar_admin: httpx.Client
) -> None:
    kube.create_pipeline(namespace, "grow", spec())
    kube.wait_condition(namespace, "grow", "Ready", "True")
    kube.patch_pipeline(namespace, "grow", {"spec": {"topic": {"partitions": 4}}})
    eventually(lambda: partitions(pulsar_admin, namespace, "grow") == 4, timeout=60, what="4 partitions")


def test_deleting_a_pulsar_pipeline_revokes_and_deletes(
    stack: Any, kube: Kube, operator: Any, namespace: str, pulsar_admin: httpx.Client
) -> None:
    kube.create_pipeline(namespace, "gone", spec())
    kube.wait_condition(namespace, "gone", "Ready", "True")
    secret = kube.secret(namespace, "gone.checkout.credentials")
    assert secret is not None
    kube.delete_pipeline(namespace, "gone")
    eventually(lambda: kube.get_pipeline(namespace, "gone") is None, timeout=60, what="the pipeline to be deleted")
    assert partitions(pulsar_admin, namespace, "gone") is None
    # The token is still within its lifetime, yet its role lost every grant: Pulsar refuses it.
    refused = pulsar_send(secret, f"persistent://eventpipeline/{namespace}/{namespace}.gone")
    assert isinstance(refused, pulsar.AuthorizationError), refused
