"""Pulsar consumer of one pipeline: a Failover subscription, individual acks after success.

Failover keeps one active consumer per partition (so a replica handing over never has two
serving at once), and a message is acknowledged only once its run exists; a crash leaves it
unacknowledged, and the broker delivers it again to the next consumer (a 409 then).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pulsar

from eventpipeline.adapters.tls import TrustFile, pulsar_tls_options, verifying_context
from eventpipeline.listener.source import Lag, SourceBase, SourceError
from eventpipeline.planning import handoff, naming
from eventpipeline.planning.delivery import Message, pulsar_position
from eventpipeline.planning.secrets import CA_KEY

OPERATION_TIMEOUT_SECONDS = 10
STATS_TIMEOUT_SECONDS = 5.0
CREDENTIAL_ERRORS = (pulsar.AuthenticationError, pulsar.AuthorizationError)
LOG = logging.getLogger("eventpipeline.listener.pulsar")
CLIENT_LOG = logging.getLogger("pulsar")
CLIENT_LOG.setLevel(logging.WARNING)


def describe(error: Exception) -> str:
    if isinstance(error, pulsar.AuthenticationError):
        return (
            f"Pulsar refused the listener's token ({error}); the operator re-issues it "
            "(see CredentialsReady) and the listener picks up the new Secret"
        )
    if isinstance(error, pulsar.AuthorizationError):
        return f"Pulsar denied the listener's role access to the topic ({error}); see AccessReady"
    return f"Pulsar: {type(error).__name__}: {error}"


class PulsarSource(SourceBase[Any]):
    def __init__(
        self,
        topic: str,
        subscription: str,
        secret: Mapping[str, str],
        dead_letter_topic: str | None,
        queue: int,
        *,
        broker_key: str = "",
    ) -> None:
        super().__init__()
        self._topic = topic
        # Ledger ids (part of every message id) are unique per cluster, so a recreated topic's
        # messages differ already; the broker key tells clusters apart.
        self._incarnation = naming.topic_incarnation(broker_key, topic)
        self._subscription = subscription
        self._service_url = secret["serviceUrl"]
        self._token = secret["token"]
        self._admin_url = secret.get(handoff.PULSAR_ADMIN_URL_KEY)
        self._ca_pem = secret.get(CA_KEY)
        self._trust: TrustFile | None = None
        self._dead_letter_topic = dead_letter_topic
        self._queue = queue
        self._client: pulsar.Client | None = None
        self._consumer: Any = None
        self._unacked: set[str] = set()

    def open(self, replay_from: datetime | None) -> None:
        tls_options, self._trust = pulsar_tls_options(self._service_url, self._ca_pem)
        client = pulsar.Client(
            self._service_url,
            authentication=pulsar.AuthenticationToken(self._token),
            operation_timeout_seconds=OPERATION_TIMEOUT_SECONDS,
            logger=CLIENT_LOG,
            **tls_options,
        )
        try:
            consumer = client.subscribe(
                self._topic,
                self._subscription,
                consumer_type=pulsar.ConsumerType.Failover,
                initial_position=pulsar.InitialPosition.Earliest,
                receiver_queue_size=self._queue,
                consumer_name=f"{self._subscription}.worker",
            )
            if replay_from is not None:
                consumer.seek(int(replay_from.timestamp() * 1000))
                self._replay_outcome = f"rewound subscription {self._subscription} to {replay_from.isoformat()}"
        except Exception as error:
            client.close()
            self._remove_trust_file()
            raise SourceError(describe(error), credential_refused=isinstance(error, CREDENTIAL_ERRORS)) from error
        self._client, self._consumer = client, consumer
        self._error = None

    def receive(self, max_messages: int, timeout: float) -> list[Message]:
        messages: list[Message] = []
        if max_messages <= 0:
            return messages  # the broker stops sending once the receiver queue is full
        wait_ms = max(1, int(timeout * 1000))
        while len(messages) < max_messages:
            try:
                raw = self._consumer.receive(timeout_millis=wait_ms)
            except pulsar.Timeout:
                break
            except pulsar.AlreadyClosed as error:
                self._error = describe(error)
                break
            messages.append(self._message(raw))
            wait_ms = 1
        return messages

    def _message(self, raw: Any) -> Message:
        message_id = raw.message_id()
        partition = message_id.partition()
        position = pulsar_position(message_id.ledger_id(), message_id.entry_id(), partition, message_id.batch_index())
        self._unacked.add(position)
        properties = raw.properties() or {}
        timestamp = raw.event_timestamp() or raw.publish_timestamp()
        return Message(
            topic=self._topic,
            partition=partition,
            position=position,
            run_id=naming.pulsar_run_id(self._topic, self._incarnation, position),
            key=raw.partition_key().encode() if raw.partition_key() else None,
            value=raw.data(),
            headers=tuple((name, str(value).encode()) for name, value in sorted(properties.items())),
            timestamp_ms=timestamp or None,
            token=message_id,
            schema_version=schema_version(raw),
        )

    def done(self, message: Message) -> None:
        if message.position not in self._unacked:
            return
        self._unacked.discard(message.position)
        try:
            self._consumer.acknowledge(message.token)
        except pulsar.PulsarException as error:
            # Unacknowledged means delivered again later, which is a harmless 409.
            LOG.warning("acknowledging %s failed: %s", message.position, error)

    def commit(self, *, force: bool = False) -> None:
        """Acknowledgements go out as messages finish; nothing is batched here."""

    def window(self) -> int:
        return len(self._unacked)

    def lag(self) -> Lag | None:
        """The subscription's backlog, from the topic's stats in the admin REST API.

        Pulsar lets a role that may consume a topic read its stats (TopicOperation.GET_STATS is
        allowed to whoever may look the topic up), so this needs no grant beyond `consume`.
        """
        if self._admin_url is None or self._consumer is None:
            return None
        tenant, namespace, name = self._topic.removeprefix("persistent://").split("/", 2)
        path = f"/admin/v2/persistent/{quote(tenant)}/{quote(namespace)}/{quote(name)}/partitioned-stats"
        try:
            response = httpx.get(
                self._admin_url.rstrip("/") + path,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=STATS_TIMEOUT_SECONDS,
                verify=self._verify(),
            )
            response.raise_for_status()
            subscription = response.json().get("subscriptions", {}).get(self._subscription)
        except (httpx.HTTPError, ValueError) as error:
            LOG.debug("reading the backlog of %s: %s", self._topic, error)
            return None
        if subscription is None:
            return None
        backlog = int(subscription.get("msgBacklog", 0))
        return Lag(uncommitted=backlog, untaken=max(0, backlog - self.window()))

    def _verify(self) -> ssl.SSLContext:
        if self._ca_pem and self._admin_url is not None and self._admin_url.startswith("https://"):
            return verifying_context(self._ca_pem)
        return verifying_context()

    def dead_letter(self, message: Message, headers: Mapping[str, str]) -> None:
        client, topic = self._client, self._dead_letter_topic
        if topic is None or client is None:
            raise SourceError("dead-lettering is disabled")
        try:
            producer = self._dead_letter_producer(lambda: client.create_producer(topic))
            properties = {name: value.decode("utf-8", "backslashreplace") for name, value in message.headers}
            properties.update(headers)
            options: dict[str, Any] = {"properties": properties}
            if message.key is not None:
                options["partition_key"] = message.key.decode("utf-8", "backslashreplace")
            if message.timestamp_ms:
                options["event_timestamp"] = message.timestamp_ms
            producer.send(message.value or b"", **options)
        except Exception as error:
            raise SourceError(f"writing to {self._dead_letter_topic} failed: {describe(error)}") from error

    def close(self) -> None:
        client, self._client = self._client, None
        self._consumer = None
        self._take_producer()
        self._unacked.clear()
        if client is not None:
            try:
                client.close()
            except pulsar.PulsarException as error:
                LOG.debug("closing the Pulsar client: %s", error)
        self._remove_trust_file()

    def _remove_trust_file(self) -> None:
        trust, self._trust = self._trust, None
        if trust is not None:
            trust.remove()


def schema_version(raw: Any) -> int | None:
    """The schema version the message was written with (the broker's number), None without one.

    The client gives it as the 8 raw big-endian bytes of the metadata (`schema_version()`, a str
    that may not survive decoding) and as a number on the wrapped message; the number is used.
    """
    number = raw._message.int_schema_version()
    return int(number) if number is not None and number >= 0 else None
