"""What goes into a principal's Secret and into the Airflow connection, in clients' own formats."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap_servers: str
    security_protocol: str
    sasl_mechanism: str


@dataclass(frozen=True)
class PulsarEndpoint:
    service_url: str


def kafka_secret_data(endpoint: KafkaEndpoint, username: str, password: SecretStr) -> dict[str, str]:
    """Keys as Kafka clients name them; `sasl.jaas.config` for Java clients that mount the file."""
    secret = password.get_secret_value()
    jaas = (
        f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{username}" password="{secret}";'
    )
    return {
        "username": username,
        "password": secret,
        "sasl.jaas.config": jaas,
        "bootstrap.servers": endpoint.bootstrap_servers,
        "security.protocol": endpoint.security_protocol,
        "sasl.mechanism": endpoint.sasl_mechanism,
    }


def pulsar_secret_data(endpoint: PulsarEndpoint, role: str, token: SecretStr) -> dict[str, str]:
    return {"role": role, "token": token.get_secret_value(), "serviceUrl": endpoint.service_url}


def kafka_connection(
    connection_id: str, endpoint: KafkaEndpoint, username: str, password: SecretStr, group: str
) -> dict[str, Any]:
    """Airflow `kafka` connection: librdkafka settings in `extra`, as the Kafka provider reads them."""
    extra = {
        "bootstrap.servers": endpoint.bootstrap_servers,
        "security.protocol": endpoint.security_protocol,
        "sasl.mechanism": endpoint.sasl_mechanism,
        "sasl.username": username,
        "sasl.password": password.get_secret_value(),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    return {"connection_id": connection_id, "conn_type": "kafka", "extra": json.dumps(extra, sort_keys=True)}


def pulsar_connection(connection_id: str, endpoint: PulsarEndpoint, role: str, token: SecretStr) -> dict[str, Any]:
    """A generic connection: host = service URL, password = token."""
    return {
        "connection_id": connection_id,
        "conn_type": "generic",
        "host": endpoint.service_url,
        "login": role,
        "password": token.get_secret_value(),
        "extra": json.dumps({"serviceUrl": endpoint.service_url}),
    }


def fingerprint(payload: dict[str, Any]) -> str:
    """Stable hash of what was written: Airflow masks passwords on read, so compare hashes."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
