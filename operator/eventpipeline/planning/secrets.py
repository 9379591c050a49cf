"""What goes into a principal's Secret and into the Airflow connection, in clients' own formats."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

# The key of the CA certificate (PEM) in every Secret that carries one: the broker's
# caSecretRef and the pipeline Secrets the operator writes.
CA_KEY = "ca.crt"
# Where an application mounts its pipeline Secret (a volume of the Secret, all keys as files):
# the file-path settings in the Secret (`ssl.ca.location`, `tlsTrustCertsFilePath`) point here.
# Clients that take the CA inline (librdkafka's `ssl.ca.pem`) read the `ca.crt` key instead.
CREDENTIALS_MOUNT_PATH = "/etc/eventpipeline/credentials"
CA_FILE = f"{CREDENTIALS_MOUNT_PATH}/{CA_KEY}"


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap_servers: str
    security_protocol: str
    sasl_mechanism: str
    ca_pem: str | None = None  # the brokers' CA, from the broker's caSecretRef

    @property
    def tls_ca(self) -> str | None:
        """The CA clients verify the brokers with; None on a plaintext listener or without a CA."""
        return self.ca_pem if self.security_protocol == "SASL_SSL" else None


@dataclass(frozen=True)
class PulsarEndpoint:
    service_url: str
    ca_pem: str | None = None  # the brokers' CA, from the broker's caSecretRef

    @property
    def tls_ca(self) -> str | None:
        """The CA clients verify the brokers with; None for a pulsar:// URL or without a CA."""
        return self.ca_pem if self.service_url.startswith("pulsar+ssl://") else None


def kafka_secret_data(endpoint: KafkaEndpoint, username: str, password: SecretStr) -> dict[str, str]:
    """Keys as Kafka clients name them; `sasl.jaas.config` for Java clients that mount the file."""
    secret = password.get_secret_value()
    jaas = (
        f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{username}" password="{secret}";'
    )
    data = {
        "username": username,
        "password": secret,
        "sasl.jaas.config": jaas,
        "bootstrap.servers": endpoint.bootstrap_servers,
        "security.protocol": endpoint.security_protocol,
        "sasl.mechanism": endpoint.sasl_mechanism,
    }
    if endpoint.tls_ca is not None:
        data |= {
            CA_KEY: endpoint.tls_ca,
            "ssl.ca.location": CA_FILE,  # librdkafka
            "ssl.truststore.type": "PEM",  # Java clients
            "ssl.truststore.location": CA_FILE,
        }
    return data


def pulsar_secret_data(endpoint: PulsarEndpoint, role: str, token: SecretStr) -> dict[str, str]:
    """Role, token and service URL; with a TLS URL and a CA, `ca.crt` and the file setting naming it."""
    data = {"role": role, "token": token.get_secret_value(), "serviceUrl": endpoint.service_url}
    if endpoint.tls_ca is not None:
        data |= {CA_KEY: endpoint.tls_ca, "tlsTrustCertsFilePath": CA_FILE}
    return data


def secret_credential(data: Mapping[str, str]) -> SecretStr:
    """The secret of a credential's Secret keys: Kafka's `password` or Pulsar's `token`."""
    return SecretStr(data.get("password") or data.get("token") or "")


def kafka_connection(
    connection_id: str, endpoint: KafkaEndpoint, username: str, password: SecretStr, group: str | None
) -> dict[str, Any]:
    """Airflow `kafka` connection: librdkafka settings in `extra`, as the Kafka provider reads them.

    `group` is the reading principal's consumer group; a producer's connection (None) has no
    consumer settings.
    """
    extra: dict[str, Any] = {
        "bootstrap.servers": endpoint.bootstrap_servers,
        "security.protocol": endpoint.security_protocol,
        "sasl.mechanism": endpoint.sasl_mechanism,
        "sasl.username": username,
        "sasl.password": password.get_secret_value(),
    }
    if group is not None:
        extra |= {"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if endpoint.tls_ca is not None:
        extra["ssl.ca.pem"] = endpoint.tls_ca  # inline: Airflow's workers have no file of it
    return {"connection_id": connection_id, "conn_type": "kafka", "extra": json.dumps(extra, sort_keys=True)}


def with_registry(payload: dict[str, Any], registry: Mapping[str, str]) -> dict[str, Any]:
    """A connection payload whose `extra` also says where the schema registry is (a Kafka pipeline
    with a schema: the same settings its producer Secrets carry, read by the provider's serializer)."""
    if not registry:
        return payload
    extra = json.loads(payload.get("extra") or "{}") | dict(registry)
    return {**payload, "extra": json.dumps(extra, sort_keys=True)}


def pulsar_connection(connection_id: str, endpoint: PulsarEndpoint, role: str, token: SecretStr) -> dict[str, Any]:
    """A generic connection: host = service URL, password = token; `ca.crt` in extra with a TLS URL and a CA."""
    extra = {"serviceUrl": endpoint.service_url}
    if endpoint.tls_ca is not None:
        extra[CA_KEY] = endpoint.tls_ca
    return {
        "connection_id": connection_id,
        "conn_type": "generic",
        "host": endpoint.service_url,
        "login": role,
        "password": token.get_secret_value(),
        "extra": json.dumps(extra),
    }


# What Airflow shows for a sensitive value, and keeps the stored value for when an update sends it
# back (Airflow >= 3.0.4, with `hide_sensitive_var_conn_fields` on, its default).
AIRFLOW_MASK = "***"


def masked_connection(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as Airflow shows it: `password` and the secret in `extra` (`sasl.password`) masked.

    What the operator can compare and send back without knowing the credential; its fingerprint
    changes with every setting (addresses, registry) but not with the password, which the
    connection's generation (`holds`) stands for.
    """
    masked = dict(payload)
    if masked.get("password") is not None:
        masked["password"] = AIRFLOW_MASK
    if masked.get("extra"):
        extra = json.loads(masked["extra"])
        if "sasl.password" in extra:
            extra["sasl.password"] = AIRFLOW_MASK
        masked["extra"] = json.dumps(extra, sort_keys=True)
    return masked


def fingerprint(payload: dict[str, Any]) -> str:
    """Stable hash of what was written: Airflow masks passwords on read, so compare hashes."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
