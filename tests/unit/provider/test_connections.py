"""Client settings from the connections the operator writes (planning/secrets.py builders)."""

from __future__ import annotations

import json

import pytest
from eventpipeline_provider.connections import (
    credential_fingerprint,
    is_kafka_refusal,
    kafka_consumer_settings,
    kafka_principal,
    kafka_producer_settings,
    parse_extra,
    pulsar_settings,
    registry_url,
)
from pydantic import SecretStr

from eventpipeline.planning.secrets import KafkaEndpoint, PulsarEndpoint, kafka_connection, pulsar_connection

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _kafka_extra() -> dict[str, object]:
    endpoint = KafkaEndpoint(bootstrap_servers="127.0.0.1:9093", security_protocol="SASL_SSL",
                             sasl_mechanism="SCRAM-SHA-512", ca_pem=CA)  # fmt: skip
    connection = kafka_connection("shop.orders", endpoint, "ep-shop-orders-listener-a", SecretStr("pw"), "group-1")
    return parse_extra(connection["extra"])


def test_a_producer_gets_the_credential_and_ca_but_no_consumer_settings() -> None:
    settings = kafka_producer_settings(_kafka_extra())
    assert settings["sasl.username"] == "ep-shop-orders-listener-a"
    assert settings["sasl.password"] == "pw"
    assert settings["ssl.ca.pem"] == CA
    assert settings["acks"] == "all"
    assert not {"group.id", "enable.auto.commit", "auto.offset.reset"} & set(settings)


def test_registry_settings_are_not_passed_to_librdkafka() -> None:
    registry = {
        "schema.registry.url": "http://127.0.0.1:8081/",
        "basic.auth.credentials.source": "USER_INFO",
        "basic.auth.user.info": "u:p",
        "auto.register.schemas": "false",
        "use.latest.version": "true",
    }
    extra = {**_kafka_extra(), **registry}
    assert not set(registry) & set(kafka_producer_settings(extra))
    assert not set(registry) & set(kafka_consumer_settings(extra))
    assert registry_url(extra) == "http://127.0.0.1:8081"


def test_a_consumer_keeps_the_connection_group_unless_told_otherwise() -> None:
    assert kafka_consumer_settings(_kafka_extra())["group.id"] == "group-1"
    assert kafka_consumer_settings(_kafka_extra(), "other")["group.id"] == "other"
    with pytest.raises(ValueError, match=r"group\.id"):
        kafka_consumer_settings({"bootstrap.servers": "b:1"})


def test_a_kafka_connection_without_servers_is_refused() -> None:
    with pytest.raises(ValueError, match=r"bootstrap\.servers"):
        kafka_producer_settings({"sasl.username": "u"})


def test_the_principal_is_the_scram_user() -> None:
    assert kafka_principal(_kafka_extra()) == "ep-shop-orders-listener-a"


def test_a_pulsar_connection_gives_url_role_token_and_ca_without_showing_the_token() -> None:
    endpoint = PulsarEndpoint(service_url="pulsar+ssl://127.0.0.1:6651", ca_pem=CA)
    connection = pulsar_connection("shop.results", endpoint, "ep-shop-results-a", SecretStr("jwt-token"))
    settings = pulsar_settings(connection["host"], connection["login"], connection["password"],
                               json.loads(connection["extra"]))  # fmt: skip
    assert settings.service_url == "pulsar+ssl://127.0.0.1:6651"
    assert settings.tls
    assert (settings.role, settings.token, settings.ca_pem) == ("ep-shop-results-a", "jwt-token", CA)
    assert "jwt-token" not in repr(settings)


def test_a_pulsar_connection_without_url_is_refused() -> None:
    with pytest.raises(ValueError, match="service URL"):
        pulsar_settings(None, "role", "token", {})


@pytest.mark.parametrize(
    ("name", "refused"),
    [("SASL_AUTHENTICATION_FAILED", True), ("_AUTHENTICATION", True), ("TOPIC_AUTHORIZATION_FAILED", True),
     ("_MSG_TIMED_OUT", False), ("_TRANSPORT", False)],
)  # fmt: skip
def test_only_authentication_and_authorization_errors_are_refusals(name: str, refused: bool) -> None:
    assert is_kafka_refusal(name) is refused


def test_the_fingerprint_changes_with_the_credential_only() -> None:
    assert credential_fingerprint("u-a", "p1") == credential_fingerprint("u-a", "p1")
    assert credential_fingerprint("u-a", "p1") != credential_fingerprint("u-b", "p2")
    assert "p1" not in credential_fingerprint("u-a", "p1")
