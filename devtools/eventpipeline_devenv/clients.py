"""Broker clients as an application builds them from the Secret the operator wrote for it.

Shared by the integration tests and the benchmarks, so both connect exactly as the docs tell
applications to (and verify the local brokers' TLS with the Secret's `ca.crt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventpipeline.adapters.tls import kafka_tls_settings


def kafka_settings(secret: Mapping[str, str]) -> dict[str, Any]:
    """librdkafka settings from a pipeline's Kafka credential Secret (`ca.crt` trusted on SASL_SSL)."""
    return {
        "bootstrap.servers": secret["bootstrap.servers"],
        "security.protocol": secret["security.protocol"],
        "sasl.mechanism": secret["sasl.mechanism"],
        "sasl.username": secret["username"],
        "sasl.password": secret["password"],
        **kafka_tls_settings(secret),
    }
