"""`ClusterBroker` / `Broker`: a Kafka or Pulsar cluster the operator administers."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from eventpipeline.api.common import ApiModel, SecretKeyRef, cel

BrokerType = Literal["Kafka", "Pulsar"]
DEFAULT_TOPIC_TEMPLATE = "{namespace}.{name}"


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
        default=None, description="Secret with key `ca.crt` to verify the brokers (SASL_SSL)."
    )
    default_replication_factor: int = Field(
        default=3, ge=1, le=32767, description="Replication factor of topics that do not set one."
    )


class PulsarSettings(ApiModel):
    """How to reach a Pulsar cluster: binary protocol for clients, admin REST API for the operator."""

    service_url: str = Field(min_length=1, description="pulsar:// or pulsar+ssl:// URL for clients.")
    admin_url: str = Field(min_length=1, description="http(s):// URL of the admin REST API.")
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
        description="Pulsar namespace inside the tenant; `{namespace}` is the pipeline's "
        "Kubernetes namespace, which keeps tenants' permissions apart.",
    )
    cluster: str = Field(default="standalone", description="Pulsar cluster the namespaces are placed on.")


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
        pattern=r"\{name\}",
        description="How topic names are formed; `{namespace}` is the pipeline's namespace and "
        "`{name}` the part the pipeline chooses. Keeps tenants' topics apart.",
    )

    @model_validator(mode="after")
    def _section_matches_type(self) -> BrokerSpec:
        if self.type == "Kafka" and self.kafka is None:
            raise ValueError("type Kafka needs the kafka section")
        if self.type == "Pulsar" and self.pulsar is None:
            raise ValueError("type Pulsar needs the pulsar section")
        return self
