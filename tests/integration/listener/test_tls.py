"""`caSecretRef` end to end: the local brokers are registered on their TLS endpoints with the
stack's CA; a pipeline on them becomes Ready, a producer that uses the pipeline Secret (with its
`ca.crt`) produces over TLS, the listener turns the message into a DAG run, and a client that
does not trust the CA is refused at the TLS handshake."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pulsar
import pytest
from confluent_kafka import KafkaError, Producer

from tests.integration.listener.conftest import Harness, wait_ready
from tests.integration.listener.test_messages_become_runs import run_prefix, spec, wait_runs
from tests.integration.support import kafka_send, pulsar_send, unique

pytestmark = pytest.mark.integration
GROUP, VERSION = "eventpipeline.dev", "v1alpha1"


def _broker_spec(harness: Harness, name: str) -> dict[str, Any]:
    body = harness.kube.custom.get_cluster_custom_object(GROUP, VERSION, "clusterbrokers", name)
    return dict(body["spec"])


def _handshake_refused(address: str) -> str:
    """The verification error of a TLS handshake that trusts only the system's CAs."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError) as refused,
    ):
        context.wrap_socket(raw, server_hostname=host)
    return str(refused.value)


def _address(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


def test_kafka_pipeline_on_the_tls_listener_verifies_the_brokers_end_to_end(harness: Harness) -> None:
    h = harness
    exports = h.stack.exports
    broker = _broker_spec(h, "local-kafka")["kafka"]
    assert broker["securityProtocol"] == "SASL_SSL"
    assert broker["bootstrapServers"] == exports["KAFKA_TLS_BOOTSTRAP_SERVERS"]
    ca_ref = broker["caSecretRef"]
    ca = Path(exports["KAFKA_CA_FILE"]).read_text()
    assert h.kube.secret(ca_ref["namespace"], ca_ref["name"]) == {"ca.crt": ca}

    name = unique("tls")
    h.kube.create_pipeline(h.namespace, name, spec("local-kafka", h.dag_id))
    body = wait_ready(h.kube, h.namespace, name)  # the operator's admin client verified the brokers
    secret = h.kube.secret(h.namespace, f"{name}.app.credentials")
    assert secret is not None
    assert secret["security.protocol"] == "SASL_SSL" and secret["ca.crt"] == ca
    assert secret["ssl.ca.location"] == "/etc/eventpipeline/credentials/ca.crt"

    h.listener_factory(f"{h.namespace}/{name}")
    topic = body["status"]["topic"]
    assert kafka_send(secret, topic, b"over TLS") is None
    runs = wait_runs(h.airflow, h.dag_id, run_prefix(h.namespace, name), 1)
    assert [run["conf"]["value"] for run in runs.values()] == ["over TLS"]

    # Without the CA the same settings are refused: by the handshake, and by librdkafka.
    assert "certificate verify failed" in _handshake_refused(exports["KAFKA_TLS_BOOTSTRAP_SERVERS"])
    errors: list[KafkaError] = []
    untrusting = Producer(
        {
            "bootstrap.servers": secret["bootstrap.servers"],
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": secret["sasl.mechanism"],
            "sasl.username": secret["username"],
            "sasl.password": secret["password"],
            "message.timeout.ms": 5000,
            "error_cb": errors.append,
        }
    )
    outcome: list[KafkaError | None] = []
    untrusting.produce(topic, b"refused", on_delivery=lambda error, _msg: outcome.append(error))
    untrusting.flush(15)
    assert outcome and outcome[0] is not None, "a producer without the CA delivered a message"
    assert any(error.code() == KafkaError._SSL for error in errors), errors


def test_pulsar_pipeline_on_the_tls_ports_verifies_the_brokers_end_to_end(harness: Harness) -> None:
    h = harness
    exports = h.stack.exports
    broker = _broker_spec(h, "local-pulsar")["pulsar"]
    assert broker["serviceUrl"] == exports["PULSAR_TLS_SERVICE_URL"].rstrip("/")
    assert broker["adminUrl"].startswith("https://") and "caSecretRef" in broker
    ca = Path(exports["PULSAR_CA_FILE"]).read_text()

    name = unique("tls")
    h.kube.create_pipeline(h.namespace, name, spec("local-pulsar", h.dag_id))
    body = wait_ready(h.kube, h.namespace, name)  # the operator's https admin client verified the broker
    secret = h.kube.secret(h.namespace, f"{name}.app.credentials")
    assert secret is not None
    assert secret["serviceUrl"].startswith("pulsar+ssl://") and secret["ca.crt"] == ca
    assert secret["tlsTrustCertsFilePath"] == "/etc/eventpipeline/credentials/ca.crt"

    h.listener_factory(f"{h.namespace}/{name}")
    topic = body["status"]["topic"]
    assert pulsar_send(secret, topic, b"over TLS") is None
    runs = wait_runs(h.airflow, h.dag_id, run_prefix(h.namespace, name), 1)
    assert [run["conf"]["value"] for run in runs.values()] == ["over TLS"]

    for url in (exports["PULSAR_TLS_SERVICE_URL"], exports["PULSAR_TLS_ADMIN_URL"]):
        assert "certificate verify failed" in _handshake_refused(_address(url))
    untrusting = pulsar.Client(
        secret["serviceUrl"],
        authentication=pulsar.AuthenticationToken(secret["token"]),
        operation_timeout_seconds=5,
        tls_validate_hostname=True,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    try:
        with pytest.raises(pulsar.PulsarException):
            untrusting.create_producer(topic)
    finally:
        untrusting.close()
