"""Client settings from the connections the EventPipeline operator writes into Airflow. Pure.

Kafka (`conn_type` kafka): `extra` holds librdkafka settings (`bootstrap.servers`,
`security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`, optional inline
`ssl.ca.pem`; a consumer's `group.id` and commit settings; with a schema `schema.registry.url`,
`auto.register.schemas=false`, `use.latest.version=true` and optionally a read-only
`basic.auth.user.info`).

Pulsar (`conn_type` generic, or this provider's `pulsar`): `host` = service URL, `login` = role,
`password` = token, `extra` with `serviceUrl` and an optional inline `ca.crt`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Settings of the connection that are not librdkafka's: the registry's, read by the serializer.
REGISTRY_KEYS = frozenset({
    "schema.registry.url", "basic.auth.user.info", "basic.auth.credentials.source",
    "auto.register.schemas", "use.latest.version",
})  # fmt: skip
# A consumer's settings, which a producer refuses or warns about.
CONSUMER_KEYS = frozenset({
    "group.id", "group.instance.id", "enable.auto.commit", "auto.offset.reset", "enable.auto.offset.store",
    "session.timeout.ms", "max.poll.interval.ms", "partition.assignment.strategy", "group.protocol",
})  # fmt: skip
PULSAR_CA_KEY = "ca.crt"
# Error names (confluent_kafka.KafkaError.name()) meaning the broker refused this credential:
# a rotated-away SCRAM password, or ACLs withdrawn from the old generation's user.
KAFKA_REFUSALS = frozenset({
    "_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
})  # fmt: skip


def parse_extra(extra: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A connection's `extra` as a dict (Airflow hands it over as JSON text)."""
    if not extra:
        return {}
    if isinstance(extra, Mapping):
        return dict(extra)
    parsed = json.loads(extra)
    if not isinstance(parsed, dict):
        raise ValueError("the connection's extra must be a JSON object")
    return parsed


def _librdkafka(extra: Mapping[str, Any]) -> dict[str, Any]:
    settings = {key: value for key, value in extra.items() if key not in REGISTRY_KEYS}
    if "bootstrap.servers" not in settings:
        raise ValueError("the Kafka connection has no bootstrap.servers in its extra")
    return settings


def kafka_producer_settings(extra: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka settings for a producer: the connection's, without a consumer's or the registry's."""
    settings = {key: value for key, value in _librdkafka(extra).items() if key not in CONSUMER_KEYS}
    # Every message acknowledged by all in-sync replicas, never twice on a retry.
    settings.setdefault("acks", "all")
    settings.setdefault("enable.idempotence", True)
    settings.update(overrides or {})
    return settings


def kafka_consumer_settings(extra: Mapping[str, Any], group_id: str | None = None) -> dict[str, Any]:
    """librdkafka settings for a consumer; `group_id` replaces the connection's group."""
    settings = _librdkafka(extra)
    if group_id is not None:
        settings["group.id"] = group_id
    if "group.id" not in settings:
        raise ValueError("the Kafka connection has no group.id: pass one")
    return settings


def kafka_principal(extra: Mapping[str, Any]) -> str | None:
    """The SCRAM user the connection authenticates as (the credential's generation is in its name)."""
    user = extra.get("sasl.username")
    return None if user is None else str(user)


def registry_url(extra: Mapping[str, Any]) -> str | None:
    """The schema registry's URL, where the pipeline has a schema."""
    url = extra.get("schema.registry.url")
    return None if not url else str(url).rstrip("/")


def is_kafka_refusal(error_name: str) -> bool:
    """Whether a librdkafka error (by name) says the broker refused the credential."""
    return error_name in KAFKA_REFUSALS


@dataclass(frozen=True)
class PulsarSettings:
    """What a Pulsar client needs; the token is kept out of repr."""

    service_url: str
    role: str | None
    token: str | None = field(repr=False)
    ca_pem: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.service_url.startswith("pulsar+ssl://")


def pulsar_settings(
    host: str | None, login: str | None, password: str | None, extra: Mapping[str, Any]
) -> PulsarSettings:
    """Service URL (extra `serviceUrl`, else host), role, token and CA of a Pulsar connection."""
    service_url = extra.get("serviceUrl") or host
    if not service_url:
        raise ValueError("the Pulsar connection has no service URL (host or extra serviceUrl)")
    ca = extra.get(PULSAR_CA_KEY)
    return PulsarSettings(str(service_url), login or None, password or None, str(ca) if ca else None)


def credential_fingerprint(*parts: str | None) -> str:
    """A short hash that changes when a connection's credential changes (nothing secret in it)."""
    digest = hashlib.sha256("\x00".join(part or "" for part in parts).encode())
    return digest.hexdigest()[:16]
