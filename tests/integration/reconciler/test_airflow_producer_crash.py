"""The controller SIGKILLed mid-rotation of an Airflow producer's connection, on the real stack.

The crash window: the new generation is written into the Airflow connection, but the operator
has not yet recorded what the connection holds (its ownership claim still names the old
generation), and the old generation is not revoked (that waits for the grace period). A
ValidatingAdmissionPolicy on the API server holds the operator in that window — it refuses the
one claim update that would record the new generation — until the test SIGKILLs it there; no
fault hook in the operator. Restarted, the operator revokes the old generation on time (the
broker refuses it), the connection holds the new one (a DAG publishes through it), and nothing
is left behind: one writer (Kafka: one SCRAM user), nothing more to revoke. Kafka and Pulsar.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from eventpipeline.planning.clock import parse_iso
from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import install_dag, read_kafka, read_pulsar, start_run, wait_run
from tests.integration.reconciler.test_airflow_producer import (
    GRACE_SECONDS,
    PRODUCER,
    PUBLISH_DAG,
    connection,
    connection_principal,
    producer_status,
    send,
    spec,
    writers,
)
from tests.integration.reconciler.test_withdrawal import scram_users
from tests.integration.support import GROUP, VERSION, Kube, eventually

pytestmark = pytest.mark.integration


def claims_of(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    uid = (kube.get_pipeline(namespace, name) or {})["metadata"]["uid"]
    selector = f"eventpipeline.dev/pipeline-uid={uid}"
    return list(
        kube.custom.list_cluster_custom_object(GROUP, VERSION, "ownershipclaims", label_selector=selector)["items"]
    )


def claim_spec(kube: Kube, namespace: str, name: str, kind: str, principal: str) -> dict[str, Any]:
    found = [c["spec"] for c in claims_of(kube, namespace, name) if c["spec"]["kind"] == kind]
    return next(spec for spec in found if spec.get("principal") == principal)


@contextlib.contextmanager
def recording_refused(kube: Kube, claim: str, username: str) -> Iterator[None]:
    """The API server refuses to record in the OwnershipClaim `claim` that its connection holds `username`."""
    name = f"test-freeze-{uuid.uuid4().hex[:8]}"
    admission = client.AdmissionregistrationV1Api(kube.api_client)
    rules = [
        {"apiGroups": [GROUP], "apiVersions": [VERSION], "operations": ["UPDATE"], "resources": ["ownershipclaims"]}
    ]
    expression = f"object.metadata.name != '{claim}' || !has(object.spec.holds) || object.spec.holds != '{username}'"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "validations": [{"expression": expression, "message": "the test holds the operator in its crash window"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)
    try:

        def refused() -> bool:
            try:
                kube.custom.patch_cluster_custom_object(
                    GROUP, VERSION, "ownershipclaims", claim, {"spec": {"holds": username}}, dry_run="All"
                )
            except ApiException as error:
                return error.status in (400, 403, 422) and "crash window" in str(error.body)
            return False

        eventually(refused, timeout=60, what="the API server to apply the admission policy")
        yield
    finally:
        admission.delete_validating_admission_policy_binding(name)
        admission.delete_validating_admission_policy(name)


@pytest.mark.parametrize("broker", ["local-kafka", "local-pulsar"])
def test_controller_killed_after_writing_the_new_generation_into_the_connection_revokes_the_old_one_after_restart(
    stack: Any, kube: Kube, operator: OperatorProcess, namespace: str, broker: str
) -> None:
    airflow = AirflowApi(stack.exports, timeout=180)  # a loaded machine answers slowly
    kafka = broker == "local-kafka"
    kube.create_pipeline(namespace, "out", spec(broker))
    kube.wait_condition(namespace, "out", "Ready", "True", timeout=180)
    kube.wait_condition(namespace, "out", "ProducerConnectionsReady", "True", timeout=60)
    topic = str((kube.get_pipeline(namespace, "out") or {})["status"]["topic"])
    connection_id = f"{namespace}.out__{PRODUCER}"
    first = kube.username(namespace, "out", PRODUCER, 1)
    second = kube.username(namespace, "out", PRODUCER, 2)
    found = connection(airflow, connection_id)
    assert found is not None and connection_principal(found) == first
    old = kube.secret(namespace, f"out.{PRODUCER}.credentials")  # the same credential as the connection's
    assert old is not None and old.get("username", old.get("role")) == first
    dag_id = f"ht_crash_publish_{namespace.replace('-', '_')}"
    install_dag(airflow, dag_id, PUBLISH_DAG.format(dag_id=dag_id, connection=connection_id))

    claim = next(
        c["metadata"]["name"] for c in claims_of(kube, namespace, "out") if c["spec"]["kind"] == "AirflowConnection"
    )

    def new_generation_in_airflow() -> bool:
        found = connection(airflow, connection_id)
        return found is not None and connection_principal(found) == second

    with recording_refused(kube, claim, second):
        rotate = {"metadata": {"annotations": {"eventpipeline.dev/rotate": uuid.uuid4().hex}}}
        kube.patch_pipeline(namespace, "out", rotate)
        eventually(new_generation_in_airflow, timeout=240, what="the connection to hold generation 2")
        operator.kill()
    try:
        # Killed in the window: the connection holds generation 2, the operator's record says 1.
        assert claim_spec(kube, namespace, "out", "AirflowConnection", PRODUCER)["holds"] == first
        credential = claim_spec(kube, namespace, "out", "Principal", PRODUCER)["credential"]
        assert credential["generation"] == 2 and credential["previousUsername"] == first, credential
        revoke_at = parse_iso(credential["previousRevokeAt"])
        # No operator, nothing revoked: the old generation still writes.
        assert send(broker, old, topic) is None
        assert not kafka or {first, second} <= scram_users(stack)
    finally:
        operator.start()

    # The old generation keeps writing until its grace period ends, then the broker refuses it.
    sent, deadline = 1, time.monotonic() + GRACE_SECONDS + 300
    while (refused := send(broker, old, topic)) is None:
        sent += 1
        assert time.monotonic() < deadline, "the old generation is still accepted"
        time.sleep(1)
    assert datetime.now(UTC) >= revoke_at, f"the old generation was refused ({refused}) before {revoke_at}"
    eventually(
        lambda: "previousUsername" not in producer_status(kube, namespace, "out"),
        timeout=120,
        what="status to report the revocation",
    )
    kube.wait_condition(namespace, "out", "ProducerConnectionsReady", "True", timeout=120)

    # The connection holds generation 2, and it is valid: a DAG publishes through it.
    status = producer_status(kube, namespace, "out")
    assert status["generation"] == 2 and status["username"] == second, status
    found = connection(airflow, connection_id)
    assert found is not None and connection_principal(found) == second
    assert claim_spec(kube, namespace, "out", "AirflowConnection", PRODUCER)["holds"] == second
    run = start_run(airflow, dag_id, {"topic": topic, "result": {"after": "crash"}})
    assert wait_run(airflow, dag_id, run) == "success"
    published = (read_kafka if kafka else read_pulsar)(kube, namespace, "out", topic, count=sent + 1)
    assert len(published) == sent + 1
    assert b"crash" in (published[-1].value() if kafka else published[-1].data())

    # Nothing left behind: generation 1 is gone from the broker (Kafka: its SCRAM user; Pulsar: a
    # token cannot be revoked, its role's grants are), one writer, nothing more to revoke.
    if kafka:
        stem = first.removesuffix("-g1")
        assert {user for user in scram_users(stack) if user.startswith(stem)} == {second}
    assert writers(stack, broker, topic) == {second}
    credential = claim_spec(kube, namespace, "out", "Principal", PRODUCER)["credential"]
    assert credential.get("previousUsername") is None and credential["generation"] == 2, credential
    connections = [
        c["spec"]["name"] for c in claims_of(kube, namespace, "out") if c["spec"]["kind"] == "AirflowConnection"
    ]
    assert connections == [connection_id]
    reasons = [reason for _, reason, message in kube.events(namespace, "out") if PRODUCER in message]
    assert reasons.count("CredentialRevoked") == 1, reasons
    assert send(broker, kube.secret(namespace, f"out.{PRODUCER}.credentials") or {}, topic) is None
