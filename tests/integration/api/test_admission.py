"""The API server itself refuses invalid pipelines, with a message that says what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.integration.reconciler.test_kafka_pipeline import acls_on_topic, admin
from tests.integration.support import Kube, eventually, unique

pytestmark = pytest.mark.integration

VALID: dict[str, Any] = {"brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"}, "topic": {"partitions": 3}}


def refused(kube: Kube, namespace: str, spec: dict[str, Any], name: str | None = None) -> str:
    with pytest.raises(ApiException) as caught:
        kube.create_pipeline(namespace, name or unique("bad"), spec)
    assert caught.value.status == 422, caught.value.body
    return str(caught.value.body)


def refused_update(kube: Kube, namespace: str, patch: dict[str, Any]) -> str:
    name = unique("ok")
    kube.create_pipeline(namespace, name, VALID)
    with pytest.raises(ApiException) as caught:
        kube.patch_pipeline(namespace, name, patch)
    assert caught.value.status == 422, caught.value.body
    return str(caught.value.body)


def test_shrinking_partitions_is_refused_at_admission(kube: Kube, namespace: str) -> None:
    body = refused_update(kube, namespace, {"spec": {"topic": {"partitions": 2}}})
    assert "partitions can only grow" in body


def test_growing_partitions_is_accepted(kube: Kube, namespace: str) -> None:
    name = unique("grow")
    kube.create_pipeline(namespace, name, VALID)
    updated = kube.patch_pipeline(namespace, name, {"spec": {"topic": {"partitions": 4}}})
    assert updated["spec"]["topic"]["partitions"] == 4


def test_topic_name_cannot_change(kube: Kube, namespace: str) -> None:
    assert "topic.name cannot change" in refused_update(
        kube, namespace, {"spec": {"topic": {"name": f"{namespace}.x"}}}
    )


def test_broker_cannot_change(kube: Kube, namespace: str) -> None:
    body = refused_update(kube, namespace, {"spec": {"brokerRef": {"name": "local-pulsar"}}})
    assert "brokerRef cannot change" in body


def test_grace_period_must_be_shorter_than_rotation(kube: Kube, namespace: str) -> None:
    spec = {**VALID, "credentials": {"rotateEvery": "1h", "gracePeriod": "2h"}}
    assert "gracePeriod must be shorter" in refused(kube, namespace, spec)


def test_malformed_duration_is_refused(kube: Kube, namespace: str) -> None:
    body = refused(kube, namespace, {**VALID, "credentials": {"rotateEvery": "one day"}})
    assert "rotateEvery" in body


def test_topic_name_outside_kafka_limits_is_refused(kube: Kube, namespace: str) -> None:
    assert "topic.name" in refused(kube, namespace, {**VALID, "topic": {"name": "has spaces/and slashes"}})
    assert "topic.name" in refused(kube, namespace, {**VALID, "topic": {"name": "x" * 246}})


def test_listener_principal_name_is_reserved(kube: Kube, namespace: str) -> None:
    assert "reserved for the trigger listener" in refused(
        kube, namespace, {**VALID, "producers": [{"name": "listener"}]}
    )


def test_principal_in_both_lists_is_refused(kube: Kube, namespace: str) -> None:
    spec = {**VALID, "producers": [{"name": "app"}], "consumers": [{"name": "app"}]}
    assert "producers or in consumers" in refused(kube, namespace, spec)


def test_asset_event_mode_needs_an_asset(kube: Kube, namespace: str) -> None:
    spec = {**VALID, "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": "d", "mode": "AssetEvent"}}}
    assert "assetUri is required" in refused(kube, namespace, spec)


def test_unknown_fields_are_refused_by_strict_validation(kube: Kube, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        kube.custom.create_namespaced_custom_object(
            "eventpipeline.dev",
            "v1alpha1",
            namespace,
            "eventpipelines",
            {
                "apiVersion": "eventpipeline.dev/v1alpha1",
                "kind": "EventPipeline",
                "metadata": {"name": unique("u")},
                "spec": {**VALID, "partitons": 3},
            },
            field_validation="Strict",
        )
    assert "partitons" in str(caught.value.body)


def test_long_names_are_refused(kube: Kube, namespace: str) -> None:
    assert "at most 63 characters" in refused(kube, namespace, VALID, name="p" * 70)


@pytest.mark.parametrize("principal", ["User:", ":analytics", "User:*"])
def test_an_external_principal_with_an_empty_type_or_name_is_refused_at_admission(
    kube: Kube, namespace: str, principal: str
) -> None:
    body = refused(kube, namespace, {**VALID, "externalPrincipals": [{"principal": principal, "access": "Consume"}]})
    assert "externalPrincipals" in body


def test_a_kafka_external_principal_without_its_type_gets_a_condition_and_no_acl(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    """The schema cannot tell a Kafka principal from a Pulsar role (the broker decides), so
    `analytics` passes admission; on a Kafka broker it is refused with a condition, granted
    nothing, and the pipeline's other principals get their access as usual."""
    name = unique("untyped")
    externals = [{"principal": "analytics", "access": "Consume"}, {"principal": "User:bi", "access": "Consume"}]
    spec = {**VALID, "topic": {"partitions": 1, "deletionPolicy": "Delete"}, "externalPrincipals": externals}
    kube.create_pipeline(namespace, name, spec)
    condition = kube.wait_condition(namespace, name, "AccessReady", "False", reason="ExternalPrincipalInvalid")
    assert "User:analytics" in condition["message"]
    kafka = admin(stack.exports)

    def granted_to_bi() -> set[str] | None:
        principals = {acl[0] for acl in acls_on_topic(kafka, f"{namespace}.{name}")}
        return principals if "User:bi" in principals else None

    # The broker answers ACL reads from its metadata, which follows the controller's commit of the
    # operator's grants a moment later: in one clean-clone run the read right after the condition
    # showed no ACL on the topic at all.
    granted = eventually(granted_to_bi, timeout=30, what="User:bi's ACLs to show on the broker")
    assert not [principal for principal in granted if "analytics" in principal]
