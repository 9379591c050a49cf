"""How every derived name is formed: topics, principals, Secrets, groups, connections, run ids.

One place, so the operator, the listener and the docs agree on each name.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re

from eventpipeline.planning.templates import render_topic

PRINCIPAL_PREFIX = "ep"
DEAD_LETTER_SUFFIX = ".dlq"
# Characters of a pipeline's uid kept in its principals' names: enough that a pipeline created
# again under the same name never reuses a revoked user or role.
UID_FRAGMENT_LENGTH = 8


class NamingError(ValueError):
    """A name the spec asks for that the broker's rules do not allow; the message says what to fix."""


def topic_name(template: str, namespace: str, pipeline: str, requested: str | None) -> str:
    """The topic a pipeline owns: the requested name if it fits the template, else the template's."""
    default = render_topic(template, namespace, pipeline)
    if requested is None:
        _refuse_dead_letter_name(default, "the pipeline's default topic")
        return default
    _refuse_dead_letter_name(requested, "topic.name")
    if not matches_template(template, namespace, requested):
        example = render_topic(template, namespace, "<anything>")
        raise NamingError(
            f"topic.name {requested!r} does not match the broker's template {template!r}; "
            f"use a name like {example!r} or leave topic.name out to get {default!r}"
        )
    return requested


def _refuse_dead_letter_name(topic: str, what: str) -> None:
    if topic.endswith(DEAD_LETTER_SUFFIX):
        raise NamingError(
            f"{what} {topic!r} ends in {DEAD_LETTER_SUFFIX!r}, which is reserved for dead-letter topics; "
            "pick another topic.name (or pipeline name)"
        )


def matches_template(template: str, namespace: str, topic: str) -> bool:
    """Whether `topic` is a name the template allows in `namespace` (`{name}` is free)."""
    prefix, _, suffix = render_topic(template, namespace, "\0").partition("\0")
    pattern = re.escape(prefix) + r"[a-zA-Z0-9._-]+" + re.escape(suffix)
    return re.fullmatch(pattern, topic) is not None


def dead_letter_topic(topic: str) -> str:
    return topic + DEAD_LETTER_SUFFIX


def principal_base(namespace: str, pipeline: str, principal: str) -> str:
    """A principal's identity on the broker, e.g. ep.shop.orders.checkout: the claimed name.

    Collision-free: namespaces hold no dots and principal names are DNS labels, so the first
    and the last dot-separated parts give back the namespace and the principal.
    """
    return f"{PRINCIPAL_PREFIX}.{namespace}.{pipeline}.{principal}"


def username_base(namespace: str, pipeline: str, pipeline_uid: str, principal: str) -> str:
    """The stem of a principal's generation user names: its identity plus the pipeline's uid."""
    fragment = pipeline_uid.replace("-", "")[:UID_FRAGMENT_LENGTH]
    return f"{principal_base(namespace, pipeline, principal)}.{fragment}"


def generation_username(base: str, generation: int) -> str:
    """Broker user (Kafka) or role (Pulsar) of one credential generation: `-g<N>`, never reused."""
    if generation < 1:
        raise ValueError("credential generations start at 1")
    return f"{base}-g{generation}"


def consumer_group(namespace: str, pipeline: str, principal: str) -> str:
    """The one consumer group (Kafka) or subscription (Pulsar) a reading principal may use."""
    return principal_base(namespace, pipeline, principal)


def external_consumer_group(namespace: str, pipeline: str, external_principal: str) -> str:
    """Consumer group of an external principal: its name made safe, plus a short hash for uniqueness."""
    safe = re.sub(r"[^a-zA-Z0-9._-]", "-", external_principal).strip("-")[:40]
    digest = hashlib.sha256(external_principal.encode()).hexdigest()[:8]
    return f"{PRINCIPAL_PREFIX}.{namespace}.{pipeline}.ext.{safe}-{digest}"


def secret_name(pipeline: str, principal: str) -> str:
    """Kubernetes Secret holding a principal's current credential, e.g. orders.checkout.credentials.

    Dots, not dashes: principal names hold no dots, so no two (pipeline, principal) pairs share
    a Secret name (with dashes, pipeline `db` + `admin-x` and `db-admin` + `x` would).
    """
    return f"{pipeline}.{principal}.credentials"


# Where the trigger listener runs: the controller hands each pipeline's listener credential to
# it there, so the listener reads and watches Secrets of its own namespace only.
LISTENER_NAMESPACE_ENV = "EVENTPIPELINE_LISTENER_NAMESPACE"
DEFAULT_LISTENER_NAMESPACE = "eventpipeline-system"


def listener_secret_name(namespace: str, pipeline: str) -> str:
    """The listener's copy of a pipeline's listener credential, in the listener's namespace.

    Namespaces hold no dots, so no two pipelines share the name.
    """
    return f"listener.{namespace}.{pipeline}"


# Airflow refuses longer connection ids.
CONNECTION_ID_MAX_LENGTH = 250
PRODUCER_CONNECTION_SEPARATOR = "__"


def connection_id(namespace: str, pipeline: str, requested: str | None) -> str:
    """Airflow connection id of the listener's credential: the requested one, else `<namespace>.<pipeline>`.

    Namespaces hold no dots, so a default id names exactly one pipeline; a requested id may
    not take the form of another namespace's defaults.
    """
    return _connection_id(namespace, f"{namespace}.{pipeline}", requested, "airflow.connectionId")


def producer_connection_id(namespace: str, pipeline: str, producer: str, requested: str | None) -> str:
    """Airflow connection id of a producer's credential: the requested one, else `<namespace>.<pipeline>__<producer>`.

    Collision-free: Kubernetes names and principal names hold no `_`, so no listener's default
    id (which has none) equals a producer's, and the namespace (up to the first dot) and the
    producer (after the last `__`) give back the one (pipeline, producer) pair.
    """
    default = f"{namespace}.{pipeline}{PRODUCER_CONNECTION_SEPARATOR}{producer}"
    return _connection_id(namespace, default, requested, f"producers[{producer}].airflowConnection.connectionId")


def _connection_id(namespace: str, default: str, requested: str | None, field: str) -> str:
    if requested is None:
        if len(default) > CONNECTION_ID_MAX_LENGTH:
            raise NamingError(
                f"the default Airflow connection id {default[:40]}... is longer than Airflow's "
                f"{CONNECTION_ID_MAX_LENGTH} characters; set {field}"
            )
        return default
    owner, dot, _ = requested.partition(".")
    if dot and owner != namespace:
        raise NamingError(
            f"{field} {requested!r} starts with {owner + '.'!r}, the prefix of namespace "
            f"{owner!r}'s connections; use a name without a dot or one starting with {namespace + '.'!r}"
        )
    return requested


def reference_key(kind: str, scope: str | None, name: str) -> str:
    """How a referenced broker or Airflow instance is recorded: kind/namespace/name (no namespace: cluster)."""
    return f"{kind}/{scope or ''}/{name}"


def parse_reference_key(key: str) -> tuple[str, str | None, str]:
    kind, scope, name = key.split("/", 2)
    return kind, scope or None, name


def namespace_allowed(patterns: list[str], namespace: str) -> bool:
    """Whether a namespace matches one of a broker's or Airflow instance's allowed patterns."""
    return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns)


# Airflow 3 accepts run ids of at most 250 characters matching `^[A-Za-z0-9_.~:+-]+$`
# ([scheduler] allowed_run_id_pattern) and refuses ".." anywhere (path traversal guard).
RUN_ID_MAX_LENGTH = 250
# Room for the rest: a Pulsar message id (four 64-bit numbers) and the incarnation.
_RUN_ID_TOPIC_MAX_LENGTH = 140
INCARNATION_LENGTH = 10


def _run_id_topic(topic: str) -> str:
    """The topic as it appears in run ids: itself when Airflow accepts it, else a shortened,
    `..`-free form with a hash of the full name, so distinct topics never share run ids."""
    if ".." not in topic and len(topic) <= _RUN_ID_TOPIC_MAX_LENGTH:
        return topic
    digest = hashlib.sha256(topic.encode()).hexdigest()[:12]
    readable = re.sub(r"\.{2,}", ".", topic)[: _RUN_ID_TOPIC_MAX_LENGTH - 13].rstrip(".")
    return f"{readable}~{digest}"


def topic_incarnation(broker_key: str, topic_identity: str) -> str:
    """A short hash of what makes one topic one incarnation on one cluster.

    `broker_key` is the pipeline's brokerRef (`reference_key`): two brokers with topics of the same
    name differ. `topic_identity` is what the broker gives a topic at creation (Kafka: the topic
    id, a UUID; Pulsar: the full topic name, since its ledger ids, part of every message id, are
    unique per cluster): a deleted and recreated topic differs. Both stay the same for the life
    of a topic, so the same message always gets the same run id.
    """
    return hashlib.sha256(f"{broker_key}\n{topic_identity}".encode()).hexdigest()[:INCARNATION_LENGTH]


def kafka_run_id(topic: str, incarnation: str, partition: int, offset: int) -> str:
    """Deterministic DAG run id of a Kafka message: the same message always gives the same run,
    and no other message (another incarnation of the topic, another cluster) gives it."""
    return f"ep__{_run_id_topic(topic)}__{incarnation}__{partition}__{offset}"


def pulsar_run_id(topic: str, incarnation: str, message_id: str) -> str:
    """Deterministic DAG run id of a Pulsar message (ledger:entry:partition:batch)."""
    short_topic = topic.rsplit("/", 1)[-1]
    return f"ep__{_run_id_topic(short_topic)}__{incarnation}__{message_id}"
