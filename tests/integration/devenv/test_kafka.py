"""The local Kafka broker authenticates with SASL/SCRAM-SHA-512 and enforces ACLs as the
operator expects from a production cluster: the admin creates topics, users and ACLs; a user
with ACLs produces and consumes; a user without them, or with a wrong password, is refused."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from eventpipeline_devenv.kafka import KafkaComponent, admin_call_succeeds
from eventpipeline_devenv.runtime import Layout, restart_process
from tests.integration.conftest import OPEN_DAG
from tests.integration.support import Kube, eventually, kafka_send

pytestmark = pytest.mark.integration

ADMIN_TIMEOUT = 15.0
REQUIRED_EXPORTS = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_ADMIN_USER",
    "KAFKA_ADMIN_PASSWORD",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def client_config(exports: Mapping[str, str], user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": exports["KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": exports["KAFKA_SECURITY_PROTOCOL"],
        "sasl.mechanism": exports["KAFKA_SASL_MECHANISM"],
        "sasl.username": user,
        "sasl.password": password,
    }


@pytest.fixture(scope="module")
def exports(stack: Any) -> Mapping[str, str]:
    missing = [name for name in REQUIRED_EXPORTS if name not in stack.exports]
    assert not missing, f"the stack exports no {', '.join(missing)} (is kafka among its components?)"
    return dict(stack.exports)


@pytest.fixture(scope="module")
def admin(exports: Mapping[str, str]) -> Iterator[AdminClient]:
    yield AdminClient(client_config(exports, exports["KAFKA_ADMIN_USER"], exports["KAFKA_ADMIN_PASSWORD"]))


def create_topic(admin: AdminClient) -> str:
    topic = unique("devenv-test")
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=ADMIN_TIMEOUT)
    return topic


def create_user(admin: AdminClient) -> tuple[str, str]:
    user, password = unique("devenv-user"), secrets.token_urlsafe(18)
    upsertion = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsertion]).values():
        future.result(timeout=ADMIN_TIMEOUT)
    return user, password


def allow(admin: AdminClient, user: str, kind: ResourceType, name: str, *operations: AclOperation) -> None:
    bindings = [
        AclBinding(kind, name, ResourcePatternType.LITERAL, f"User:{user}", "*", operation, AclPermissionType.ALLOW)
        for operation in operations
    ]
    for future in admin.create_acls(bindings).values():
        future.result(timeout=ADMIN_TIMEOUT)


def wait_until_authenticated(config: Mapping[str, Any], topic: str | None = None, timeout: float = 15.0) -> None:
    """Wait until the broker has applied a new credential (and, with `topic`, the user's ACLs).

    The admin calls return once the controller committed the change; the broker applies it
    from the metadata log a moment later.
    """
    client = AdminClient(dict(config))
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            metadata = client.list_topics(topic=topic, timeout=3)
        except KafkaException as error:
            last = error
        else:
            if topic is None:
                return
            last = metadata.topics[topic].error
            if last is None:
                return
        time.sleep(0.2)
    raise AssertionError(f"the new user could not see {topic or 'the cluster'} within {timeout}s: {last}")


def produce_one(config: Mapping[str, Any], topic: str, value: bytes) -> KafkaError | None:
    """Produce one message and return its delivery error (None when delivered)."""
    producer = Producer({**config, "message.timeout.ms": 10000})
    results: list[KafkaError | None] = []
    producer.produce(topic, value=value, on_delivery=lambda error, _message: results.append(error))
    remaining = producer.flush(15)
    assert remaining == 0, f"the delivery report for {topic} did not arrive within 15 s"
    return results[0]


def test_admin_is_healthy(exports: Mapping[str, str]) -> None:
    assert KafkaComponent().healthy(exports)


def test_user_with_acls_produces_and_consumes(admin: AdminClient, exports: Mapping[str, str]) -> None:
    topic = create_topic(admin)
    user, password = create_user(admin)
    group = unique("devenv-group")
    allow(admin, user, ResourceType.TOPIC, topic, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.READ)
    allow(admin, user, ResourceType.GROUP, group, AclOperation.READ)
    config = client_config(exports, user, password)
    wait_until_authenticated(config, topic)

    value = f"hello {uuid.uuid4()}".encode()
    assert produce_one(config, topic, value) is None

    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        received = None
        while received is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, f"consumer error: {message.error()}"
            received = message.value()
        assert received == value, f"no message consumed from {topic} within 30 s"
    finally:
        consumer.close()


def test_user_without_acl_is_refused_by_the_broker(admin: AdminClient, exports: Mapping[str, str]) -> None:
    topic = create_topic(admin)
    user, password = create_user(admin)
    config = client_config(exports, user, password)
    wait_until_authenticated(config)

    error = produce_one(config, topic, b"not allowed")

    assert error is not None, f"a user without ACLs could write to {topic}"
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"expected an authorization error, got {error}"


def test_wrong_password_fails_authentication(admin: AdminClient, exports: Mapping[str, str]) -> None:
    user, password = create_user(admin)
    # The right password works first, so the failure below is the password's, not an unknown user's.
    wait_until_authenticated(client_config(exports, user, password))
    errors: list[KafkaError] = []
    config = {**client_config(exports, user, "wrong-" + secrets.token_urlsafe(8)), "error_cb": errors.append}

    producer = Producer(config)
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.5)

    assert errors, "no error reported within 15 s for a wrong password"
    assert errors[0].code() == KafkaError._AUTHENTICATION, f"expected an authentication error, got {errors[0]}"


RESTART_TIMEOUT = 300.0  # 40-75 s measured on the 2-core machine at a load average of 5-20
# A deleted user whose name has Java's String.hashCode() 0, like the stack's SCRAM anchor: at a start the
# broker meets its deletion first among the SCRAM changes, unless the anchor comes before it. Without the
# anchor (eventpipeline_devenv.kafka.SCRAM_ANCHOR_USER) that lost every SCRAM credential at the restart.
DELETED_FIRST = "devenv-deleted-wtaa0lb"


@pytest.mark.usefixtures("operator", "open_dag")
def test_a_restarted_broker_keeps_every_user_and_acl(
    admin: AdminClient, exports: Mapping[str, str], kube: Kube, namespace: str
) -> None:
    """A real restart (SIGTERM, then the same command, data dir and ports), as the chaos harness does,
    after a user was deleted: the users the operator made and the admin's still log in, the ACLs still
    hold, and the deleted user stays refused."""
    kube.create_pipeline(
        namespace,
        "kept",
        {
            "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
            "topic": {"partitions": 1, "deletionPolicy": "Delete"},
            "producers": [{"name": "app"}],
            "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
        },
    )
    kube.wait_condition(namespace, "kept", "Ready", "True", timeout=120)
    producer = kube.secret(namespace, "kept.app.credentials")
    assert producer is not None and kafka_send(producer, f"{namespace}.kept") is None
    other = create_topic(admin)
    user, password = create_user(admin)
    allow(admin, user, ResourceType.TOPIC, other, AclOperation.WRITE, AclOperation.DESCRIBE)
    wait_until_authenticated(client_config(exports, user, password), other)
    deleted_password = secrets.token_urlsafe(18)
    upsertion = UserScramCredentialUpsertion(
        DELETED_FIRST, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), deleted_password.encode()
    )
    for change in (upsertion, UserScramCredentialDeletion(DELETED_FIRST, ScramMechanism.SCRAM_SHA_512)):
        for future in admin.alter_user_scram_credentials([change]).values():
            future.result(timeout=ADMIN_TIMEOUT)

    restart_process(Layout.from_environment(), "kafka")
    eventually(
        lambda: KafkaComponent().healthy(exports), timeout=RESTART_TIMEOUT, interval=1, what="Kafka to answer the admin"
    )

    assert admin_call_succeeds(exports, tls=True), "the admin cannot log in on the SASL_SSL listener"
    assert kafka_send(producer, f"{namespace}.kept") is None, "the operator's user lost its login or its ACL"
    refused = kafka_send(producer, other)
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused
    assert produce_one(client_config(exports, user, password), other, b"after the restart") is None
    with pytest.raises(AssertionError, match="could not see"):
        wait_until_authenticated(client_config(exports, DELETED_FIRST, deleted_password), timeout=10)
