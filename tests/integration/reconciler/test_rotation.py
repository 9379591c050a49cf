"""Credential rotation with no downtime, against the real brokers.

An application that follows its Secret (re-reading it, as a mounted file is re-read) keeps
producing through three rotations without one failed call; after each grace period the
broker refuses the previous credential; an operator killed mid-rotation completes it on
restart and never leaves both generations revoked.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pulsar
import pytest
from confluent_kafka import KafkaError, Producer

from tests.integration.support import Kube, eventually, kafka_producer, kafka_send, pulsar_send

pytestmark = pytest.mark.integration
GRACE_SECONDS = 8


def spec(broker: str) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": broker},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "credentials": {"rotateEvery": "24h", "gracePeriod": f"{GRACE_SECONDS}s"},
    }


def principal(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    body = kube.get_pipeline(namespace, name) or {}
    return next(p for p in body.get("status", {}).get("principals", []) if p["name"] == "app")


def rotate(kube: Kube, namespace: str, name: str) -> None:
    kube.patch_pipeline(namespace, name, {"metadata": {"annotations": {"eventpipeline.dev/rotate": uuid.uuid4().hex}}})


class FollowingKafkaProducer:
    """An app that re-reads its Secret every 200 ms and switches producer when it changes."""

    def __init__(self, kube: Kube, namespace: str, secret_name: str, topic: str) -> None:
        self.kube, self.namespace, self.secret_name, self.topic = kube, namespace, secret_name, topic
        self.sent = 0
        self.failures: list[str] = []
        self.users: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        secret: Mapping[str, str] | None = None
        producer: Producer | None = None
        while not self._stop.is_set():
            latest = self.kube.secret(self.namespace, self.secret_name)
            if latest is not None and latest != secret:
                if producer is not None:
                    producer.flush(10)
                secret, producer = latest, kafka_producer(latest)
                self.users.add(latest["username"])
            assert producer is not None

            def delivered(error: KafkaError | None, _message: Any) -> None:
                if error is not None:
                    self.failures.append(str(error))
                else:
                    self.sent += 1

            producer.produce(self.topic, f"m{self.sent}".encode(), on_delivery=delivered)
            producer.poll(0)
            time.sleep(0.2)
        if producer is not None:
            producer.flush(10)

    def __enter__(self) -> FollowingKafkaProducer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_three_kafka_rotations_lose_no_produce_call_and_revoke_the_old_user(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    kube.create_pipeline(namespace, "rot", spec("local-kafka"))
    kube.wait_condition(namespace, "rot", "Ready", "True")
    topic = f"{namespace}.rot"
    with FollowingKafkaProducer(kube, namespace, "rot.app.credentials", topic) as app:
        for round_ in range(1, 4):
            before = principal(kube, namespace, "rot")
            old_secret = kube.secret(namespace, "rot.app.credentials")
            assert old_secret is not None
            rotate(kube, namespace, "rot")
            during = eventually(
                lambda before=before: (
                    (p := principal(kube, namespace, "rot"))["generation"] == before["generation"] + 1 and p
                ),
                timeout=60,
                what=f"rotation {round_}",
            )
            assert during["previousUsername"] == before["username"]
            # After the grace period the previous user is gone for real.
            eventually(
                lambda: "previousUsername" not in principal(kube, namespace, "rot"),
                timeout=GRACE_SECONDS + 60,
                what=f"revocation {round_}",
            )
            refused = kafka_send(old_secret, topic)
            assert refused is not None, f"round {round_}: the revoked credential still produces"
    assert app.failures == [], app.failures
    assert app.sent > 10
    assert len(app.users) == 4  # one user per generation (1 + 3 rotations), never reused
    kinds = [reason for _, reason, _ in kube.events(namespace, "rot")]
    assert kinds.count("CredentialRotated") == 3 and kinds.count("CredentialRevoked") == 3


def test_pulsar_rotation_revokes_the_previous_role(stack: Any, kube: Kube, operator: Any, namespace: str) -> None:
    kube.create_pipeline(namespace, "rot", spec("local-pulsar"))
    kube.wait_condition(namespace, "rot", "Ready", "True")
    topic = kube.get_pipeline(namespace, "rot")["status"]["topic"]  # type: ignore[index]
    for round_ in range(1, 3):
        old_secret = kube.secret(namespace, "rot.app.credentials")
        assert old_secret is not None
        before = principal(kube, namespace, "rot")
        rotate(kube, namespace, "rot")
        eventually(
            lambda before=before: principal(kube, namespace, "rot")["generation"] == before["generation"] + 1,
            timeout=60,
            what=f"rotation {round_}",
        )
        new_secret = eventually(
            lambda old=old_secret: (s := kube.secret(namespace, "rot.app.credentials")) != old and s,
            timeout=30,
            what="the Secret to change",
        )
        # During the grace period both tokens publish.
        assert pulsar_send(old_secret, topic) is None
        assert pulsar_send(new_secret, topic) is None
        eventually(
            lambda: "previousUsername" not in principal(kube, namespace, "rot"),
            timeout=GRACE_SECONDS + 60,
            what=f"revocation {round_}",
        )
        assert isinstance(pulsar_send(old_secret, topic), pulsar.AuthorizationError)
        assert pulsar_send(new_secret, topic) is None


def test_operator_killed_mid_rotation_completes_it_and_never_revokes_both(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    kube.create_pipeline(namespace, "crash", spec("local-kafka"))
    kube.wait_condition(namespace, "crash", "Ready", "True")
    topic = f"{namespace}.crash"
    old_secret = kube.secret(namespace, "crash.app.credentials")
    assert old_secret is not None
    rotate(kube, namespace, "crash")
    eventually(lambda: "previousUsername" in principal(kube, namespace, "crash"), timeout=60, what="grace to begin")
    operator.kill()
    try:
        new_secret = kube.secret(namespace, "crash.app.credentials")
        assert new_secret is not None and new_secret["username"] != old_secret["username"]
        time.sleep(GRACE_SECONDS + 2)  # the grace period ends while no operator runs
        # Nothing was revoked without an operator: both generations still work.
        assert kafka_send(old_secret, topic) is None
        assert kafka_send(new_secret, topic) is None
    finally:
        operator.start()
    eventually(
        lambda: "previousUsername" not in principal(kube, namespace, "crash"),
        timeout=90,
        what="the restarted operator to finish the rotation",
    )
    error = kafka_send(old_secret, topic)
    assert error is not None
    assert kafka_send(kube.secret(namespace, "crash.app.credentials") or {}, topic) is None
