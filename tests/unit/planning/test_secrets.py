"""Pipeline Secrets and Airflow connections carry the brokers' CA exactly where a broker uses TLS."""

from __future__ import annotations

import json

from pydantic import SecretStr

from eventpipeline.planning import secrets

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PASSWORD = SecretStr("pw")


def test_kafka_secret_on_sasl_ssl_carries_the_ca_and_the_settings_that_name_its_file() -> None:
    endpoint = secrets.KafkaEndpoint("b:9093", "SASL_SSL", "SCRAM-SHA-512", ca_pem=CA)
    data = secrets.kafka_secret_data(endpoint, "user", PASSWORD)
    assert data["ca.crt"] == CA
    assert data["ssl.ca.location"] == "/etc/eventpipeline/credentials/ca.crt"
    assert data["ssl.truststore.type"] == "PEM"
    assert data["ssl.truststore.location"] == data["ssl.ca.location"]
    assert data["security.protocol"] == "SASL_SSL"


def test_kafka_secret_on_sasl_plaintext_has_no_tls_keys_even_with_a_ca() -> None:
    endpoint = secrets.KafkaEndpoint("b:9092", "SASL_PLAINTEXT", "SCRAM-SHA-512", ca_pem=CA)
    data = secrets.kafka_secret_data(endpoint, "user", PASSWORD)
    assert not {"ca.crt", "ssl.ca.location", "ssl.truststore.location"} & set(data)


def test_kafka_connection_verifies_the_brokers_with_the_ca_inline() -> None:
    endpoint = secrets.KafkaEndpoint("b:9093", "SASL_SSL", "SCRAM-SHA-512", ca_pem=CA)
    extra = json.loads(secrets.kafka_connection("c", endpoint, "user", PASSWORD, "g")["extra"])
    assert extra["ssl.ca.pem"] == CA
    assert "ssl.ca.location" not in extra  # Airflow's workers have no file of it


def test_pulsar_secret_and_connection_carry_the_ca_only_for_a_tls_url() -> None:
    tls = secrets.PulsarEndpoint("pulsar+ssl://b:6651", ca_pem=CA)
    data = secrets.pulsar_secret_data(tls, "role", SecretStr("t"))
    assert data["ca.crt"] == CA
    assert data["tlsTrustCertsFilePath"] == "/etc/eventpipeline/credentials/ca.crt"
    assert json.loads(secrets.pulsar_connection("c", tls, "role", SecretStr("t"))["extra"])["ca.crt"] == CA

    plain = secrets.PulsarEndpoint("pulsar://b:6650", ca_pem=CA)
    assert set(secrets.pulsar_secret_data(plain, "role", SecretStr("t"))) == {"role", "token", "serviceUrl"}
    assert json.loads(secrets.pulsar_connection("c", plain, "role", SecretStr("t"))["extra"]) == {
        "serviceUrl": "pulsar://b:6650"
    }


def test_a_masked_connection_hides_the_credential_and_its_fingerprint_follows_the_settings_only() -> None:
    endpoint = secrets.KafkaEndpoint("b:9092", "SASL_PLAINTEXT", "SCRAM-SHA-512")
    one = secrets.kafka_connection("c", endpoint, "user", SecretStr("first"), None)
    two = secrets.kafka_connection("c", endpoint, "user", SecretStr("second"), None)
    masked = secrets.masked_connection(one)
    assert json.loads(masked["extra"])["sasl.password"] == secrets.AIRFLOW_MASK
    assert "first" not in json.dumps(masked)
    assert secrets.fingerprint(masked) == secrets.fingerprint(secrets.masked_connection(two))
    registry = secrets.with_registry(one, {"schema.registry.url": "http://registry"})
    assert secrets.fingerprint(secrets.masked_connection(registry)) != secrets.fingerprint(masked)
    pulsar = secrets.pulsar_connection("c", secrets.PulsarEndpoint("pulsar://b:6650"), "role", SecretStr("t"))
    assert secrets.masked_connection(pulsar)["password"] == secrets.AIRFLOW_MASK
