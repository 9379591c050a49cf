"""Client-side TLS settings from a broker's CA (the `ca.crt` of its caSecretRef or a pipeline Secret).

librdkafka and httpx take the CA as PEM text. pulsar-client only takes a file path, so the
CA is written to a private temporary file that lives as long as the client.
"""

from __future__ import annotations

import contextlib
import functools
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from eventpipeline.planning.secrets import CA_KEY


@functools.lru_cache(maxsize=64)
def ca_problem(ca_pem: str) -> str | None:
    """Why `ca_pem` cannot verify anything (not PEM certificates), or None when it can.

    Kept per text: every run of every pipeline of a broker with a CA checks the same one (an SSL
    context each, ~0.5 ms of CPU)."""
    try:
        ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as error:
        return f"it holds no PEM certificate ({error.__class__.__name__})"
    return None


@functools.lru_cache(maxsize=64)
def verifying_context(ca_pem: str | None = None) -> ssl.SSLContext:
    """The SSL context every HTTPS client of the process shares for one CA (httpx's `verify`):
    `ca_pem` only, or None for httpx's default trust (certifi's bundle).

    httpx builds a context of its own for each client that is not given one, loading the whole
    bundle each time: ~0.8 MB and ~60 ms of CPU per client (a listener read a Pulsar backlog with a
    new one every 10 s). A context is safe to share between threads and clients."""
    if ca_pem is None:
        return httpx.create_ssl_context()
    return ssl.create_default_context(cadata=ca_pem)


class TrustFile:
    """A CA certificate in a temporary file only this process's user can read; `remove` when done."""

    def __init__(self, ca_pem: str) -> None:
        descriptor, name = tempfile.mkstemp(prefix="eventpipeline-ca-", suffix=".crt")  # mode 0600
        with os.fdopen(descriptor, "w") as handle:
            handle.write(ca_pem)
        self.path = Path(name)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def kafka_tls_settings(secret: Mapping[str, str]) -> dict[str, str]:
    """librdkafka's `ssl.ca.pem` from a pipeline Secret's `ca.crt`, on SASL_SSL only.

    The Secret's `ssl.ca.location` names the file where an application mounts the Secret; a
    process that reads the Secret through the API (the listener, tests) has no such file.
    """
    if secret.get("security.protocol") == "SASL_SSL" and secret.get(CA_KEY):
        return {"ssl.ca.pem": secret[CA_KEY]}
    return {}


def pulsar_tls_options(service_url: str, ca_pem: str | None) -> tuple[dict[str, Any], TrustFile | None]:
    """pulsar.Client keyword arguments that verify a pulsar+ssl:// broker, and the file to remove later."""
    if not service_url.startswith("pulsar+ssl://"):
        return {}, None
    options: dict[str, Any] = {"tls_validate_hostname": True, "tls_allow_insecure_connection": False}
    if not ca_pem:
        return options, None  # the system's trusted CAs
    trust = TrustFile(ca_pem)
    options["tls_trust_certs_file_path"] = str(trust.path)
    return options, trust
