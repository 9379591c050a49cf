"""`ClusterBroker` / `Broker`: a Kafka or Pulsar cluster the operator administers."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from eventpipeline.api.common import ApiModel, SecretKeyRef, cel

BrokerType = Literal["Kafka", "Pulsar"]
DEFAULT_TOPIC_TEMPLATE = "{namespace}.{name}"

# Kubernetes namespaces are DNS labels ([a-z0-9-]): a template keeps tenants apart when
# `{namespace}` is followed by a character no namespace contains ('.' or '_') and `{name}`
# comes after it, so the rendered prefix up to that delimiter names exactly one namespace.
# RE2 and Python agree on this syntax, so the same pattern serves CEL and the models.
TOPIC_TEMPLATE_PATTERN = r"^[a-zA-Z0-9._-]*[{]namespace[}][._][a-zA-Z0-9._-]*[{]name[}][a-zA-Z0-9._-]*$"
# A Pulsar namespace is rendered from `{namespace}` alone, between fixed text: one per namespace.
NAMESPACE_TEMPLATE_PATTERN = r"^[a-zA-Z0-9._-]*[{]namespace[}][a-zA-Z0-9._-]*$"
TEMPLATE_MAX_LENGTH = 100
TOPIC_TEMPLATE_RULE = (
    f"self.matches('{TOPIC_TEMPLATE_PATTERN}')",
    "topicTemplate must start with optional fixed text, then {namespace}, then '.' or '_' "
    "(characters no namespace name contains), then {name} (each once; other text only "
    "[a-zA-Z0-9._-]), e.g. {namespace}.{name}, so one namespace can never name another's topics",
)
NAMESPACE_TEMPLATE_RULE = (
    f"self.matches('{NAMESPACE_TEMPLATE_PATTERN}')",
    "namespaceTemplate must contain {namespace} once and otherwise only fixed text "
    "[a-zA-Z0-9._-], e.g. {namespace} or team-{namespace}, so each namespace gets its own Pulsar namespace",
)

# Topic configuration a tenant may set unless the broker says otherwise: retention, cleanup and
# message-size settings. Left out on purpose: keys that let one topic tax the whole cluster
# (flush.messages, flush.ms, segment.ms, segment.bytes, preallocate, index.interval.bytes) or
# weaken durability (unclean.leader.election.enable, min.insync.replicas below the default is
# still bounded by the replication factor).
DEFAULT_ALLOWED_CONFIG_KEYS = (
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
)
CONFIG_KEY_PATTERN = r"^[a-z0-9]+([.][a-z0-9]+)*$"


class SchemaRegistrySettings(ApiModel):
    """A Confluent-compatible schema registry (Confluent Schema Registry, Apicurio's ccompat API, Karapace)."""

    url: str = Field(
        min_length=1,
        max_length=2000,
        pattern=r"^https?://",
        description="Base URL of the Confluent-compatible API, e.g. http://registry:8080/apis/ccompat/v7. "
        "Producer Secrets of pipelines with a schema carry it as `schema.registry.url`.",
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret with keys `username` and `password` for HTTP basic authentication of the "
        "operator, which registers and deletes schema versions and sets compatibility with it. Never given "
        "to any client (see clientCredentialsSecretRef). Unset: the operator does not authenticate.",
    )
    client_credentials_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret with keys `username` and `password` given to producers (producer Secrets and "
        "Airflow producer connections, as `basic.auth.user.info`) to look schemas up. The platform team "
        "that owns this broker decides it and must make it read-only in the registry (e.g. a read-only "
        "role): every tenant with a schema pipeline holds it. Unset: producers get the registry's URL "
        "only, no credential.",
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret with key `ca.crt` (PEM) of the CA of an https:// registry. Unset: the system's CAs.",
    )


class KafkaSettings(ApiModel):
    """How to reach a Kafka cluster, for the operator (admin) and for the clients it configures."""

    bootstrap_servers: str = Field(min_length=1, description="Comma-separated host:port list given to every client.")
    security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="SASL_SSL", description="Protocol of the listener the bootstrap servers point at."
    )
    sasl_mechanism: Literal["SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="The SASL mechanism of generated credentials."
    )
    admin_secret_ref: SecretKeyRef = Field(
        description="Secret with keys `username` and `password` of a Kafka super user "
        "(or a user allowed to manage topics, ACLs and SCRAM credentials)."
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret with key `ca.crt` (PEM) of the CA that signed the brokers' certificates, for "
        "SASL_SSL. The operator, the listener and clients verify the brokers with it; pipeline Secrets and "
        "Airflow connections carry it. Unset: the system's trusted CAs. Not used with SASL_PLAINTEXT.",
    )
    default_replication_factor: int = Field(
        default=3, ge=1, le=32767, description="Replication factor of topics that do not set one."
    )
    schema_registry: SchemaRegistrySettings | None = Field(
        default=None,
        description="Where pipelines with spec.schema register it; unset: such pipelines are refused "
        "(SchemaRegistryMissing).",
    )


class PulsarSettings(ApiModel):
    """How to reach a Pulsar cluster: binary protocol for clients, admin REST API for the operator."""

    service_url: str = Field(min_length=1, description="pulsar:// or pulsar+ssl:// URL for clients.")
    admin_url: str = Field(min_length=1, description="http(s):// URL of the admin REST API.")
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret with key `ca.crt` (PEM) of the CA that signed the brokers' certificates, for "
        "pulsar+ssl:// and https:// URLs. The operator, the listener and clients verify the brokers with it; "
        "pipeline Secrets and Airflow connections carry it. Unset: the system's trusted CAs.",
    )
    admin_secret_ref: SecretKeyRef = Field(
        description="Secret with key `token` (a super-user JWT) and key `signingKey` "
        "(base64 of the HS256 key the brokers verify tokens with; the operator signs client tokens with it)."
    )
    tenant: str = Field(
        default="eventpipeline",
        pattern=r"^[a-zA-Z0-9_.-]+$",
        description="Pulsar tenant that holds the topics of this broker's pipelines.",
    )
    namespace_template: str = Field(
        default="{namespace}",
        max_length=TEMPLATE_MAX_LENGTH,
        json_schema_extra=cel(NAMESPACE_TEMPLATE_RULE),
        description="Pulsar namespace inside the tenant; `{namespace}` is the pipeline's "
        "Kubernetes namespace, which keeps tenants' permissions apart.",
    )
    cluster: str = Field(default="standalone", description="Pulsar cluster the namespaces are placed on.")

    @field_validator("namespace_template")
    @classmethod
    def _namespace_template_keeps_tenants_apart(cls, template: str) -> str:
        if re.fullmatch(NAMESPACE_TEMPLATE_PATTERN, template) is None:
            raise ValueError(NAMESPACE_TEMPLATE_RULE[1])
        return template


TOPIC_POLICY_CEL_RULES_MESSAGES = (
    "topicPolicy.maxPartitionsPerPipeline cannot exceed topicPolicy.maxPartitionsPerNamespace",
    "topicPolicy.minRetentionMs cannot exceed topicPolicy.maxRetentionMs",
)
TOPIC_POLICY_CEL_RULES = cel(
    ("self.maxPartitionsPerPipeline <= self.maxPartitionsPerNamespace", TOPIC_POLICY_CEL_RULES_MESSAGES[0]),
    ("!has(self.maxRetentionMs) || self.minRetentionMs <= self.maxRetentionMs", TOPIC_POLICY_CEL_RULES_MESSAGES[1]),
)


class TopicPolicy(ApiModel):
    """What pipelines may ask of this broker's topics; the platform team's word on shared resources."""

    model_config = ConfigDict(json_schema_extra=TOPIC_POLICY_CEL_RULES)

    allowed_config_keys: list[Annotated[str, Field(max_length=100, pattern=CONFIG_KEY_PATTERN)]] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_CONFIG_KEYS),
        max_length=100,
        description="Topic config keys a pipeline may set in topic.config; any other key is refused "
        "(TopicConfigNotAllowed) and the topic is left as it is. The operator resets a key of this "
        "list that is set on the topic but no longer in the pipeline's spec. The default leaves out "
        "keys such as flush.messages, flush.ms, segment.ms, segment.bytes, preallocate and "
        "unclean.leader.election.enable.",
    )
    min_retention_ms: int = Field(
        default=60000, ge=0, description="Smallest retention.ms a pipeline may set (milliseconds)."
    )
    max_retention_ms: int | None = Field(
        default=None, ge=0, description="Largest retention.ms a pipeline may set; unset: no upper bound."
    )
    allow_infinite_retention: bool = Field(
        default=False, description='Whether a pipeline may set retention.ms to "-1" (keep forever).'
    )
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1, description="Largest max.message.bytes a pipeline may set."
    )
    max_partitions_per_pipeline: int = Field(
        default=64, ge=1, le=10000, description="Most partitions one pipeline's topic may have (QuotaExceeded)."
    )
    max_partitions_per_namespace: int = Field(
        default=256,
        ge=1,
        le=1000000,
        description="Most partitions the topics of one namespace's pipelines may have together on "
        "this broker; growth beyond it is refused (QuotaExceeded), topics that exist stay.",
    )

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> TopicPolicy:
        if self.max_partitions_per_pipeline > self.max_partitions_per_namespace:
            raise ValueError(TOPIC_POLICY_CEL_RULES_MESSAGES[0])
        if self.max_retention_ms is not None and self.min_retention_ms > self.max_retention_ms:
            raise ValueError(TOPIC_POLICY_CEL_RULES_MESSAGES[1])
        return self


BROKER_CEL_RULES = cel(
    (
        "self.type == 'Kafka' ? has(self.kafka) && !has(self.pulsar) : has(self.pulsar) && !has(self.kafka)",
        "set exactly the section that matches spec.type (kafka for Kafka, pulsar for Pulsar)",
    ),
    (
        "self.type == oldSelf.type",
        "spec.type cannot change; create a new broker resource instead",
    ),
)


class BrokerSpec(ApiModel):
    """A Kafka or Pulsar cluster: addresses, admin credentials, who may use it, topic naming."""

    model_config = ConfigDict(json_schema_extra=BROKER_CEL_RULES)

    type: BrokerType = Field(description="Kafka or Pulsar; the matching section must be set.")
    kafka: KafkaSettings | None = Field(default=None, description="Required when type is Kafka.")
    pulsar: PulsarSettings | None = Field(default=None, description="Required when type is Pulsar.")
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces whose pipelines may use this broker (shell-style patterns; "
        '"*" for all). A namespaced Broker is always usable from its own namespace.',
    )
    max_admin_calls_per_second: int = Field(
        default=50,
        ge=1,
        le=10000,
        description="Ceiling on the operator's admin calls to this broker, so a wave of work "
        "(many pipelines applied or rotating at once) queues instead of flooding the cluster.",
    )
    topic_template: str = Field(
        default=DEFAULT_TOPIC_TEMPLATE,
        max_length=TEMPLATE_MAX_LENGTH,
        json_schema_extra=cel(TOPIC_TEMPLATE_RULE),
        description="How topic names are formed; `{namespace}` is the pipeline's namespace and "
        "`{name}` the part the pipeline chooses. Keeps tenants' topics apart: `{namespace}` must be "
        "followed by '.' or '_' (no namespace name contains them) and then `{name}`.",
    )
    topic_policy: TopicPolicy = Field(
        default_factory=TopicPolicy,
        description="Which topic config keys and values pipelines may set, and partition quotas.",
    )

    @field_validator("topic_template")
    @classmethod
    def _topic_template_keeps_tenants_apart(cls, template: str) -> str:
        if re.fullmatch(TOPIC_TEMPLATE_PATTERN, template) is None:
            raise ValueError(TOPIC_TEMPLATE_RULE[1])
        return template

    @model_validator(mode="after")
    def _section_matches_type(self) -> BrokerSpec:
        if self.type == "Kafka" and self.kafka is None:
            raise ValueError("type Kafka needs the kafka section")
        if self.type == "Pulsar" and self.pulsar is None:
            raise ValueError("type Pulsar needs the pulsar section")
        return self
