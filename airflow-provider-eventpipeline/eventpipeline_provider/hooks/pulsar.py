"""Pulsar hook: clients from a connection the EventPipeline operator keeps.

Airflow has no Pulsar provider; this hook reads the operator's Pulsar connections (`generic`,
or this provider's `pulsar` type): host = service URL, login = role, password = token, and an
inline CA (`ca.crt` in extra) for `pulsar+ssl://`. Tokens cannot be revoked: a rotation withdraws
the old role's grants, so the broker refuses the old token with an authorization error. Then the
hook reads the connection again and, if it holds a new token, reconnects and sends once more.

A topic with a schema in Pulsar's registry (a pipeline's `spec.schema`) takes messages only from
a producer that declares that schema: `topic_schema()` asks the broker for it (the binary
protocol's schema lookup, which a producing role may do), and `send(..., schema=...)` declares
it — the definition exactly as the broker stored it — for a payload already encoded with it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

import _pulsar
import pulsar
import pulsar.schema
from airflow.sdk import BaseHook, Connection

from eventpipeline_provider.connections import PulsarSettings, credential_fingerprint, parse_extra, pulsar_settings
from eventpipeline_provider.errors import CredentialRefusedError, NotAcknowledgedError, PublishError
from eventpipeline_provider.schemas import TopicSchema

REFUSALS: tuple[type[Exception], ...] = (pulsar.AuthenticationError, pulsar.AuthorizationError)
T = TypeVar("T")
LATEST_SCHEMA = -1  # the schema lookup's "newest version"
SCHEMA_TYPES = {"AVRO": _pulsar.SchemaType.AVRO, "JSON": _pulsar.SchemaType.JSON}


class EncodedWithSchema(pulsar.schema.Schema):  # type: ignore[misc]  # pulsar-client is untyped
    """Declares a topic's schema for payloads the provider encoded already (`schemas.encode_for_pulsar`).

    The client's own AvroSchema re-serializes its definition, which the broker would not find in the
    topic's history (it compares the bytes); this one declares the definition as the broker holds it.
    """

    def __init__(self, schema: TopicSchema) -> None:
        self._record_cls = bytes
        self._schema_info = _pulsar.SchemaInfo(SCHEMA_TYPES[schema.schema_type], schema.name, schema.definition)
        self.topic_schema = schema

    def encode(self, obj: bytes) -> bytes:
        self._validate_object_type(obj)
        return obj

    def decode(self, data: bytes) -> bytes:
        return data


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
        self._producers: dict[tuple[str, TopicSchema | None], pulsar.Producer] = {}
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

    def schema_of(self, topic: str, version: int = LATEST_SCHEMA) -> TopicSchema | None:
        """A schema version the broker holds for the topic (the newest by default), exactly as
        stored; None without one. A refused credential raises CredentialRefusedError."""
        try:
            # pulsar-client wraps the lookup only inside its own schemas: call the client it wraps.
            info = self.get_conn()._client.get_schema_info(topic, version)
        except pulsar.TopicNotFound:
            return None  # the broker's answer for a topic without a schema
        except REFUSALS as error:
            raise CredentialRefusedError(f"Pulsar refused role {self.role} the schema of {topic}: {error}") from error
        except pulsar.PulsarException as error:
            raise PublishError(f"Pulsar did not say which schema {topic} has: {error}") from error
        kind = str(info.schema_type().name)
        if kind in ("NONE", "BYTES"):
            return None
        return TopicSchema(kind, str(info.schema()), str(info.name()))

    def topic_schema(self, topic: str) -> TopicSchema | None:
        """The newest schema the broker holds for the topic, exactly as stored; None without one."""
        return self._again_after_refusal(lambda: self.schema_of(topic))

    def _producer(self, topic: str, timeout: float, schema: TopicSchema | None) -> pulsar.Producer:
        producer = self._producers.get((topic, schema))
        if producer is None:
            options: dict[str, Any] = {"send_timeout_millis": int(timeout * 1000)}
            if schema is not None:
                options["schema"] = EncodedWithSchema(schema)
            producer = self.get_conn().create_producer(topic, **options)
            self._producers[(topic, schema)] = producer
        return producer

    def _send_once(
        self,
        topic: str,
        value: bytes,
        key: str | None,
        properties: dict[str, str],
        timeout: float,
        *,
        schema: TopicSchema | None,
    ) -> pulsar.MessageId:
        try:
            producer = self._producer(topic, timeout, schema)
            return producer.send(value, properties=properties or None, partition_key=key)
        except REFUSALS as error:
            raise CredentialRefusedError(f"Pulsar refused role {self.role} on {topic}: {error}") from error
        except pulsar.IncompatibleSchema as error:
            raise PublishError(f"Pulsar refused the producer's schema on {topic}: {error}") from error
        except pulsar.PulsarException as error:
            raise NotAcknowledgedError(f"Pulsar did not acknowledge the message to {topic}: {error}") from error

    def _again_after_refusal(self, call: Callable[[], T]) -> T:
        """`call`, and once more with a new client if the broker refused a credential the connection
        no longer holds."""
        try:
            return call()
        except CredentialRefusedError as refused:
            settings = self.connection_settings()
            if credential_fingerprint(settings.role, settings.token) == self._fingerprint:
                raise
            self.log.warning("%s; the connection holds a new token now, sending again", refused)
            self.close()
            return call()

    def send(
        self,
        topic: str,
        value: bytes,
        key: str | None = None,
        properties: dict[str, str] | None = None,
        timeout: float = 30.0,
        *,
        schema: TopicSchema | None = None,
    ) -> pulsar.MessageId:
        """Publish one message and wait for the broker's acknowledgement (its message id).

        `schema` (from `topic_schema()`) is declared by the producer; `value` must be encoded with
        it already. Raises NotAcknowledgedError when the broker did not acknowledge; after a refused
        credential the connection is read again and, with a new token in it, the message is sent
        once more.
        """
        return self._again_after_refusal(
            lambda: self._send_once(topic, value, key, properties or {}, timeout, schema=schema)
        )

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
