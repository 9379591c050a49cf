"""Admin clients and broker clients verify the brokers with the CA they were given, on TLS only."""

from __future__ import annotations

import ssl
import stat

from pydantic import SecretStr

from eventpipeline.adapters.kafka import KafkaAdminSettings
from eventpipeline.adapters.pulsar import PulsarAdminSettings
from eventpipeline.adapters.tls import kafka_tls_settings, pulsar_tls_options, verifying_context

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _kafka(protocol: str) -> KafkaAdminSettings:
    return KafkaAdminSettings("b:9093", protocol, "SCRAM-SHA-512", "admin", SecretStr("pw"), ca_pem=CA)


def test_kafka_admin_passes_the_ca_on_sasl_ssl_only() -> None:
    assert _kafka("SASL_SSL").client_config()["ssl.ca.pem"] == CA
    assert "ssl.ca.pem" not in _kafka("SASL_PLAINTEXT").client_config()


def test_kafka_clients_take_the_secrets_ca_on_sasl_ssl_only() -> None:
    assert kafka_tls_settings({"security.protocol": "SASL_SSL", "ca.crt": CA}) == {"ssl.ca.pem": CA}
    assert kafka_tls_settings({"security.protocol": "SASL_PLAINTEXT", "ca.crt": CA}) == {}
    assert kafka_tls_settings({"security.protocol": "SASL_SSL"}) == {}


def test_pulsar_admin_trusts_the_given_ca_for_https_only() -> None:
    def settings(url: str, ca: str | None) -> PulsarAdminSettings:
        return PulsarAdminSettings(url, SecretStr("t"), SecretStr("k"), "tenant", "cluster", ca_pem=ca)

    default = verifying_context()
    assert settings("http://b:8080", CA).verify() is default
    assert settings("https://b:8443", None).verify() is default
    assert len(default.get_ca_certs()) > 10  # httpx's default trust, as a client without `verify` has


def test_pulsar_client_gets_a_private_trust_file_for_a_tls_url() -> None:
    options, trust = pulsar_tls_options("pulsar+ssl://b:6651", CA)
    assert trust is not None
    try:
        assert options["tls_trust_certs_file_path"] == str(trust.path)
        assert options["tls_validate_hostname"] is True
        assert trust.path.read_text() == CA
        assert stat.S_IMODE(trust.path.stat().st_mode) == 0o600
    finally:
        trust.remove()
    assert not trust.path.exists()
    assert pulsar_tls_options("pulsar://b:6650", CA) == ({}, None)


def test_a_real_ca_becomes_an_ssl_context() -> None:
    """The https admin client is built with an SSLContext holding exactly the given CA."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    from eventpipeline_devenv.tls import new_ca  # noqa: PLC0415

    _, certificate = new_ca("unit-test-ca")
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    verify = PulsarAdminSettings("https://b:8443", SecretStr("t"), SecretStr("k"), "t", "c", ca_pem=pem).verify()
    assert isinstance(verify, ssl.SSLContext)
    assert [entry["subject"] for entry in verify.get_ca_certs()] == [((("commonName", "unit-test-ca"),),)]
    # One context per CA for every client of the process, not one per client.
    again = PulsarAdminSettings("https://c:8443", SecretStr("t"), SecretStr("k"), "t", "c", ca_pem=pem).verify()
    assert again is verify
    assert x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string() == "CN=unit-test-ca"
