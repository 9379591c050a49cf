"""Pulsar hook: clients from a connection the EventPipeline operator keeps.

Airflow has no Pulsar provider; this hook reads the operator's Pulsar connections (`generic`,
or this provider's `pulsar` type): host = service URL, login = role, password = token, and an
inline CA (`ca.crt` in extra) for `pulsar+ssl://`. Tokens cannot be revoked: a rotation withdraws
the old role's grants, so the broker refuses the old token with an authorization error. Then the
hook reads the connection again and, if it holds a new token, reconnects and sends once more.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pulsar
from airflow.sdk import BaseHook, Connection

from eventpipeline_provider.connections import PulsarSettings, credential_fingerprint, parse_extra, pulsar_settings
from eventpipeline_provider.errors import CredentialRefusedError, NotAcknowledgedError

REFUSALS: tuple[type[Exception], ...] = (pulsar.AuthenticationError, pulsar.AuthorizationError)


def _trust_file(ca_pem: str) -> str:
    """pulsar-client reads a CA only from a file: write the connection's inline PEM to a private one."""
    handle, path = tempfile.mkstemp(prefix="eventpipeline-pulsar-ca-", suffix=".pem")
    with os.fdopen(handle, "w") as stream:
        stream.write(ca_pem)
    return path


def client_options(settings: PulsarSettings) -> tuple[dict[str, Any], str | None]:
    """pulsar.Client keyword arguments (token, TLS verification) and the CA file to remove after."""
    options: dict[str, Any] = {"logger": pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)}
    if settings.token:
        options["authentication"] = pulsar.AuthenticationToken(settings.token)
    trust: str | None = None
    if settings.tls:
        options.update(tls_validate_hostname=True, tls_allow_insecure_connection=False)
        if settings.ca_pem:
            trust = _trust_file(settings.ca_pem)
            options["tls_trust_certs_file_path"] = trust
    return options, trust


def _settings(connection: Connection) -> PulsarSettings:
    return pulsar_settings(connection.host, connection.login, connection.password, parse_extra(connection.extra))


class PulsarHook(BaseHook):
    """A Pulsar client from an operator-made connection, recovering from a rotation.

    :param pulsar_conn_id: the Airflow connection (for an Airflow producer, the one named in the
        pipeline's `producers[].airflowConnection`).
    """

    conn_name_attr = "pulsar_conn_id"
    default_conn_name = "pulsar_default"
    conn_type = "pulsar"
    hook_name = "Pulsar (EventPipeline)"

    def __init__(self, pulsar_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.pulsar_conn_id = pulsar_conn_id
        self._client: pulsar.Client | None = None
        self._trust: str | None = None
        self._producers: dict[str, pulsar.Producer] = {}
        self._fingerprint: str | None = None
        self.role: str | None = None

    def connection_settings(self) -> PulsarSettings:
        """Service URL, role, token and CA, read afresh from Airflow."""
        return _settings(self.get_connection(self.pulsar_conn_id))

    async def aconnection_settings(self) -> PulsarSettings:
        """The same, read on the event loop: in the triggerer, a connection must not be read from a thread."""
        return _settings(await self.aget_connection(self.pulsar_conn_id))

    def get_conn(self, settings: PulsarSettings | None = None) -> pulsar.Client:
        """The hook's client (built on first use, from `settings` when the caller read them already)."""
        if self._client is None:
            settings = settings or self.connection_settings()
            options, self._trust = client_options(settings)
            self.role = settings.role
            self._fingerprint = credential_fingerprint(settings.role, settings.token)
            self.log.info("Pulsar client for connection %s as role %s", self.pulsar_conn_id, settings.role)
            self._client = pulsar.Client(settings.service_url, **options)
        return self._client

    def _producer(self, topic: str, timeout: float) -> pulsar.Producer:
        producer = self._producers.get(topic)
        if producer is None:
            producer = self.get_conn().create_producer(topic, send_timeout_millis=int(timeout * 1000))
            self._producers[topic] = producer
        return producer

    def _send_once(
        self, topic: str, value: bytes, key: str | None, properties: dict[str, str], timeout: float
    ) -> pulsar.MessageId:
        try:
            return self._producer(topic, timeout).send(value, properties=properties or None, partition_key=key)
        except REFUSALS as error:
            raise CredentialRefusedError(f"Pulsar refused role {self.role} on {topic}: {error}") from error
        except pulsar.PulsarException as error:
            raise NotAcknowledgedError(f"Pulsar did not acknowledge the message to {topic}: {error}") from error

    def send(
        self,
        topic: str,
        value: bytes,
        key: str | None = None,
        properties: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> pulsar.MessageId:
        """Publish one message and wait for the broker's acknowledgement (its message id).

        Raises NotAcknowledgedError when it did not acknowledge; after a refused credential the
        connection is read again and, with a new token in it, the message is sent once more.
        """
        try:
            return self._send_once(topic, value, key, properties or {}, timeout)
        except CredentialRefusedError as refused:
            settings = self.connection_settings()
            if credential_fingerprint(settings.role, settings.token) == self._fingerprint:
                raise
            self.log.warning("%s; the connection holds a new token now, sending again", refused)
            self.close()
            return self._send_once(topic, value, key, properties or {}, timeout)

    def subscribe(
        self, topic: str, subscription: str, settings: PulsarSettings | None = None, **options: Any
    ) -> pulsar.Consumer:
        """A consumer on the hook's client (exclusive unless `consumer_type` says otherwise)."""
        return self.get_conn(settings).subscribe(topic, subscription, **options)

    def close(self) -> None:
        """Close producers and client; the next use reads the connection again."""
        client, self._client = self._client, None
        self._producers = {}
        if client is not None:
            client.close()
        if self._trust is not None:
            os.unlink(self._trust)
            self._trust = None
