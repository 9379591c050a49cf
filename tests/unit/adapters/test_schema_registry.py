"""What the Confluent-compatible registry adapter hands to clients: never the operator's credential."""

from __future__ import annotations

from pydantic import SecretStr

from eventpipeline.adapters.schema_registry import ConfluentRegistry, RegistrySettings

URL = "http://registry:8081"
OPERATOR = ("operator", SecretStr("operator-secret"))


def test_producers_never_get_the_operators_registry_credential() -> None:
    settings = ConfluentRegistry(RegistrySettings(URL, *OPERATOR)).client_settings()
    assert not any("operator" in value for value in settings.values())
    assert not any(key.startswith("basic.auth.") for key in settings)
    assert settings == {"schema.registry.url": URL, "auto.register.schemas": "false", "use.latest.version": "true"}


def test_producers_get_exactly_the_client_credential_when_the_broker_names_one() -> None:
    registry = RegistrySettings(URL, *OPERATOR, client_username="reader", client_password=SecretStr("read-only"))
    settings = ConfluentRegistry(registry).client_settings()
    assert settings["basic.auth.credentials.source"] == "USER_INFO"
    assert settings["basic.auth.user.info"] == "reader:read-only"
    assert not any("operator" in value for value in settings.values())


def test_a_registry_without_any_credential_gives_producers_the_url_only() -> None:
    settings = ConfluentRegistry(RegistrySettings(URL)).client_settings()
    assert settings["schema.registry.url"] == URL
    assert not any(key.startswith("basic.auth.") for key in settings)


def test_the_client_credential_stays_out_of_repr() -> None:
    registry = RegistrySettings(URL, *OPERATOR, client_username="reader", client_password=SecretStr("read-only"))
    assert "read-only" not in repr(registry) and "operator-secret" not in repr(registry)
