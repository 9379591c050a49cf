"""`EventPipeline`: one topic, its principals, and the Airflow DAG its messages trigger."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from eventpipeline.api.claim import SchemaVersionRecord
from eventpipeline.api.common import (
    DNS_LABEL_PATTERN,
    AirflowInstanceRef,
    ApiModel,
    BrokerRef,
    Condition,
    Duration,
    JsonDict,
    cel,
)

TOPIC_NAME_PATTERN = r"^[a-zA-Z0-9._-]+$"
# Kafka allows 249 characters; the dead-letter topic adds ".dlq".
TOPIC_NAME_MAX_LENGTH = 245
PRINCIPAL_NAME_MAX_LENGTH = 40
LISTENER_PRINCIPAL = "listener"
LIST_MAP_BY_NAME: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}


TOPIC_CEL_RULES = cel(
    (
        "has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)",
        "topic.name cannot change after creation; create a new pipeline for a new topic",
    ),
    (
        "has(self.replicationFactor) == has(oldSelf.replicationFactor) && "
        "(!has(self.replicationFactor) || self.replicationFactor == oldSelf.replicationFactor)",
        "topic.replicationFactor cannot change after creation",
    ),
)


class TopicSpec(ApiModel):
    """The topic the pipeline owns."""

    model_config = ConfigDict(json_schema_extra=TOPIC_CEL_RULES)

    name: str | None = Field(
        default=None,
        pattern=TOPIC_NAME_PATTERN,
        max_length=TOPIC_NAME_MAX_LENGTH,
        description="Topic name; defaults to the broker's template (`{namespace}.{name}`), and "
        "must match that template when set. Cannot change after creation.",
    )
    partitions: int = Field(
        default=1,
        ge=1,
        le=10000,
        description="Number of partitions. May grow, never shrink.",
        json_schema_extra=cel(
            (
                "self >= oldSelf",
                "partitions can only grow: Kafka and Pulsar cannot remove partitions; "
                "create a new pipeline to get fewer",
            )
        ),
    )
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        le=32767,
        description="Kafka only: replicas per partition; defaults to the broker's default. "
        "Cannot change after creation.",
    )
    config: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        description="Kafka topic configuration such as retention.ms. "
        "Kafka only: a Pulsar broker ignores it (retention there is the Pulsar namespace's policy, "
        "set by the platform team).",
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain", description="What happens to the topic when the pipeline is deleted."
    )


class PrincipalSpec(ApiModel):
    """A client identity the operator creates: its own credential, rotated, in its own Secret."""

    name: str = Field(
        pattern=DNS_LABEL_PATTERN,
        max_length=PRINCIPAL_NAME_MAX_LENGTH,
        description="Short name, unique within the pipeline; part of the Secret and principal names.",
    )


CONNECTION_ID_PATTERN = r"^[a-zA-Z0-9_.-]+$"
CONNECTION_ID_MAX_LENGTH = 250


class ProducerAirflowConnectionSpec(ApiModel):
    """The Airflow connection a producer's credential is kept in, for DAGs that publish to the topic."""

    instance_ref: AirflowInstanceRef
    connection_id: str | None = Field(
        default=None,
        max_length=CONNECTION_ID_MAX_LENGTH,
        pattern=CONNECTION_ID_PATTERN,
        description="Airflow connection kept in sync with this producer's credential; defaults to "
        "`<namespace>.<pipeline>__<producer>`. A dotted id must start with `<namespace>.`.",
    )


PRODUCER_CEL_RULES = cel(
    (
        "!has(self.secret) || self.secret || has(self.airflowConnection)",
        "a producer with secret: false needs an airflowConnection, or its credential goes nowhere",
    ),
)


class ProducerSpec(PrincipalSpec):
    """A principal that writes the topic: its credential in a Secret, an Airflow connection, or both."""

    model_config = ConfigDict(json_schema_extra=PRODUCER_CEL_RULES)

    airflow_connection: ProducerAirflowConnectionSpec | None = Field(
        default=None,
        description="Also keep the credential in an Airflow connection, for DAGs that publish to the topic. "
        "Every DAG of that Airflow can read the connection (see docs/security.md).",
    )
    secret: bool = Field(
        default=True,
        description="Write the credential to the Secret `<pipeline>.<producer>.credentials`. "
        "false (only with airflowConnection): the credential lives in Airflow only.",
    )


class ExternalPrincipalSpec(ApiModel):
    """An identity issued elsewhere (OIDC / OAUTHBEARER, or a Pulsar role): access only, no Secret."""

    principal: str = Field(
        min_length=1,
        max_length=200,
        # No wildcard, and no empty type or name around a colon (`User:`, `:alice`): refused here for
        # either broker. A Kafka principal without its type (`alice`) needs the broker's type to be
        # told apart from a Pulsar role: the reconciler refuses it (ExternalPrincipalInvalid).
        pattern=r"^[^*:]([^*]*[^*:])?$",
        description="Kafka principal with its type (e.g. User:analytics) or Pulsar role. No wildcards. On a "
        "Kafka broker a principal without its type prefix is refused with the condition ExternalPrincipalInvalid.",
    )
    access: Literal["Produce", "Consume"] = Field(
        description="Produce: write the topic. Consume: read the topic with its own consumer group."
    )


CREDENTIALS_CEL_RULES = cel(
    (
        "duration(self.gracePeriod) < duration(self.rotateEvery)",
        "credentials.gracePeriod must be shorter than credentials.rotateEvery",
    ),
    (
        "duration(self.rotateEvery) >= duration('10s')",
        "credentials.rotateEvery must be at least 10s",
    ),
)


class CredentialsSpec(ApiModel):
    """How often credentials rotate, and how long the previous one stays valid."""

    model_config = ConfigDict(json_schema_extra=CREDENTIALS_CEL_RULES)

    rotate_every: Duration = Field(default="24h", max_length=32)
    grace_period: Duration = Field(default="1h", max_length=32)


RETRY_CEL_RULES = cel(
    (
        "duration(self.backoff) <= duration(self.maxBackoff)",
        "retry.backoff must not exceed retry.maxBackoff",
    ),
)


class RetrySpec(ApiModel):
    """Retries of a trigger Airflow refused or could not take, with exponential backoff."""

    model_config = ConfigDict(json_schema_extra=RETRY_CEL_RULES)

    limit: int = Field(default=10, ge=0, le=1000, description="Attempts before dead-lettering.")
    backoff: Duration = Field(default="5s", max_length=32)
    max_backoff: Duration = Field(default="5m", max_length=32)


class DeadLetterSpec(ApiModel):
    """Where messages go that Airflow refuses for good: `<topic>.dlq`."""

    enabled: bool = True


TRIGGER_CEL_RULES = cel(
    (
        "self.mode != 'AssetEvent' || has(self.assetUri)",
        "trigger.assetUri is required when trigger.mode is AssetEvent",
    ),
)


class TriggerSpec(ApiModel):
    """What each message does in Airflow."""

    model_config = ConfigDict(json_schema_extra=TRIGGER_CEL_RULES)

    dag_id: str = Field(min_length=1, max_length=250, pattern=r"^[a-zA-Z0-9_.-]+$")
    mode: Literal["DagRun", "AssetEvent"] = Field(
        default="DagRun",
        description="DagRun: one run per message. AssetEvent: one asset event per message "
        "(Airflow may merge several events into one run).",
    )
    asset_uri: str | None = Field(
        default=None, max_length=1500, description="Asset URI to post events to (mode AssetEvent)."
    )
    max_in_flight: int = Field(default=16, ge=1, le=1024)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    dead_letter: DeadLetterSpec = Field(default_factory=DeadLetterSpec)


SCHEMA_DEFINITION_MAX_LENGTH = 256 * 1024
SchemaType = Literal["AVRO", "JSON"]
SchemaCompatibility = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the pipeline's own namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


SCHEMA_CEL_RULES = cel(
    (
        "has(self.definition) != has(self.configMapRef)",
        "set exactly one of schema.definition and schema.configMapRef",
    ),
    (
        "self.type == oldSelf.type",
        "schema.type cannot change: no registry can check a new type against the old one; "
        "create a new pipeline (a new topic) for another type",
    ),
)


class SchemaSpec(ApiModel):
    """The shape of the topic's messages, registered in the broker's schema registry.

    A changed definition is checked against the registered versions first and registered only
    if `compatibility` allows it.
    """

    model_config = ConfigDict(json_schema_extra=SCHEMA_CEL_RULES)

    type: SchemaType = Field(
        description="AVRO (an Avro schema, JSON text) or JSON (a JSON Schema document on Kafka; on Pulsar "
        "an Avro record schema, which is how Pulsar describes JSON messages)."
    )
    definition: str | None = Field(
        default=None,
        min_length=1,
        max_length=SCHEMA_DEFINITION_MAX_LENGTH,
        description="The schema text, inline. Set this or configMapRef.",
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None,
        description="The schema text from a ConfigMap of the pipeline's namespace. An edit of the ConfigMap "
        "is read at the pipeline's next reconciliation (its periodic drift check, or any change to it).",
    )
    compatibility: SchemaCompatibility = Field(
        default="BACKWARD",
        description="Which changes the registry accepts: BACKWARD (new readers read old data), FORWARD, FULL, "
        "their _TRANSITIVE forms (checked against every version, not only the latest), or NONE.",
    )


class AirflowSpec(ApiModel):
    """The Airflow side: which instance, the connection kept in sync, the DAG to trigger."""

    instance_ref: AirflowInstanceRef
    connection_id: str | None = Field(
        default=None,
        max_length=CONNECTION_ID_MAX_LENGTH,
        pattern=CONNECTION_ID_PATTERN,
        description="Airflow connection kept in sync with the listener's credential; defaults to "
        "`<namespace>.<pipeline>`. A dotted id must start with `<namespace>.`; an id another pipeline "
        "owns, or that exists in Airflow without having been made for a pipeline, is refused.",
    )
    trigger: TriggerSpec | None = Field(default=None, description="Omit to manage the connection only.")


class ListenerSpec(ApiModel):
    """Which listener serves the pipeline."""

    dedicated: bool = Field(
        default=False,
        description="Serve this pipeline only from a listener started with --dedicated for it, "
        "never from the shared pool.",
    )


PIPELINE_SPEC_CEL_RULES = cel(
    (
        "!has(self.producers) || !has(self.consumers) || "
        "!self.producers.exists(p, self.consumers.exists(c, c.name == p.name))",
        "a principal name may appear in producers or in consumers, not both",
    ),
    (
        f"(!has(self.producers) || !self.producers.exists(p, p.name == '{LISTENER_PRINCIPAL}')) && "
        f"(!has(self.consumers) || !self.consumers.exists(c, c.name == '{LISTENER_PRINCIPAL}'))",
        f"the principal name '{LISTENER_PRINCIPAL}' is reserved for the trigger listener",
    ),
    (
        "!has(self.producers) || self.producers.all(p, !has(p.airflowConnection) || "
        "!has(p.airflowConnection.connectionId) || self.producers.exists_one(q, has(q.airflowConnection) && "
        "has(q.airflowConnection.connectionId) && "
        "q.airflowConnection.connectionId == p.airflowConnection.connectionId))",
        "two producers cannot share an airflowConnection.connectionId",
    ),
    (
        "!has(self.producers) || !has(self.airflow) || !has(self.airflow.connectionId) || "
        "!self.producers.exists(p, has(p.airflowConnection) && has(p.airflowConnection.connectionId) && "
        "p.airflowConnection.connectionId == self.airflow.connectionId)",
        "a producer's airflowConnection.connectionId cannot be the listener's airflow.connectionId",
    ),
)


class EventPipelineSpec(ApiModel):
    """One workflow: a topic, who may write and read it, and the DAG each message triggers."""

    model_config = ConfigDict(json_schema_extra=PIPELINE_SPEC_CEL_RULES)

    broker_ref: BrokerRef = Field(json_schema_extra=cel(("self == oldSelf", "brokerRef cannot change after creation")))
    topic: TopicSpec = Field(default_factory=TopicSpec)
    producers: list[ProducerSpec] = Field(
        default_factory=list,
        max_length=50,
        description="Applications (or Airflow DAGs) that write the topic; each gets a principal, and a Secret "
        "and/or an Airflow connection.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    consumers: list[PrincipalSpec] = Field(
        default_factory=list,
        max_length=50,
        description="Extra read-only principals (analytics, ...), each with its own consumer group.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    external_principals: list[ExternalPrincipalSpec] = Field(default_factory=list, max_length=50)
    credentials: CredentialsSpec = Field(default_factory=CredentialsSpec)
    schema_: SchemaSpec | None = Field(
        default=None,
        alias="schema",
        description="The messages' schema, registered in the broker's registry (Kafka: the broker's "
        "schemaRegistry; Pulsar: its built-in registry). Omit for plain bytes.",
    )
    airflow: AirflowSpec | None = None
    listener: ListenerSpec = Field(default_factory=ListenerSpec)
    suspend: bool = Field(default=False, description="Pause reconciliation and triggering.")


class PrincipalStatus(ApiModel):
    """A principal's credential as it stands; never the secret value itself."""

    name: str
    role: Literal["producer", "consumer", "listener"]
    secret_name: str | None = Field(
        default=None, description="Secret holding the credential; absent for a producer with secret: false."
    )
    airflow_connection: str | None = Field(
        default=None, description="Airflow connection holding the credential (producers with airflowConnection)."
    )
    username: str = Field(description="Kafka user or Pulsar role of the current generation.")
    generation: int = Field(description="Credential generation; grows by one at each rotation.")
    rotated_at: str | None = None
    next_rotation_at: str | None = None
    previous_username: str | None = Field(
        default=None, description="The previous generation, valid until `previousRevokeAt`."
    )
    previous_revoke_at: str | None = None


class ListenerStatus(ApiModel):
    """What the trigger listener reports, at a bounded rate."""

    replica: str | None = None
    lag: int | None = None
    consumed: int = 0
    runs_created: int = 0
    duplicates: int = 0
    retries: int = 0
    dead_lettered: int = 0
    last_run_id: str | None = None
    updated_at: str | None = None
    error: str | None = Field(
        default=None,
        description="Why the listener cannot consume or trigger right now (e.g. the broker refused its "
        "credential); absent while it works.",
    )
    replay: str | None = Field(default=None, description="Outcome of the last replay request.")
    replay_request: str | None = Field(
        default=None, description="Value of the eventpipeline.dev/replay-from annotation last acted on."
    )
    stalled_partitions: list[int] | None = Field(
        default=None,
        description="Partitions holding messages that made no progress for longer than their backoff explains "
        "(error says ListenerStalled); the listener reopens its consumer. Absent while every partition moves.",
    )
    throttled: str | None = Field(
        default=None,
        description="Why and how far the listener lowered its concurrent requests to Airflow (Airflow slow or "
        "answering 429/5xx); absent at full concurrency (maxInFlight).",
    )


class SchemaStatus(ApiModel):
    """The schema as registered: what producers must use and the listener decodes with."""

    type: SchemaType
    subject: str = Field(description="Kafka: the registry subject (`<topic>-value`); Pulsar: the topic.")
    version: int
    id: int | None = None
    fingerprint: str
    registered_at: str | None = None
    history: list[SchemaVersionRecord] = Field(default_factory=list, description="Every version, oldest first.")


class EventPipelineStatus(ApiModel):
    """Observed state: conditions per part, the resolved topic, principals, listener counters."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    broker_type: Literal["Kafka", "Pulsar"] | None = None
    topic: str | None = Field(default=None, description="The resolved topic name on the broker.")
    partitions: int | None = None
    principals: list[PrincipalStatus] = Field(default_factory=list)
    external_principals: list[str] = Field(
        default_factory=list, description="External principals the operator granted access to."
    )
    airflow_connection: str | None = None
    schema_: SchemaStatus | None = Field(default=None, alias="schema")
    listener: ListenerStatus | None = None
    rotate_request: str | None = Field(
        default=None, description="Value of the eventpipeline.dev/rotate annotation last acted on."
    )
