"""`OwnershipClaim`: the operator's record that one pipeline owns one object outside it.

Cluster-scoped and written only by the operator (tenants get no RBAC on it), so it is the
place where ownership lives — never the pipeline's status, which its users can write. A claim
is taken by *creating* it: the API server refuses a second object of the same name, so two
pipelines can never both own the same topic, principal or Airflow connection. The claim also
holds what the operator must remember about the object: a principal's credential generations,
the external principals granted on a topic, the fingerprint of a connection it wrote, the schema versions it registered.
A claim taken for a new object is created already holding what is known of it then (the
planned generation, the partitions the quota allowed, the fingerprint of the first write):
one write per object instead of a create and an update.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from eventpipeline.api.common import ApiModel

ClaimKind = Literal["Topic", "DeadLetterTopic", "Principal", "AirflowConnection", "Schema"]
PrincipalRole = Literal["producer", "consumer", "listener"]


class ClaimingPipeline(ApiModel):
    """The one pipeline that owns the claimed object."""

    namespace: str
    name: str
    uid: str


class CredentialRecord(ApiModel):
    """A principal's credential generations: the operator's memory, from which rotation is planned."""

    role: PrincipalRole
    generation: int = Field(ge=1, description="Current generation; grows by one at each rotation.")
    username: str = Field(description="Kafka user or Pulsar role of the current generation.")
    rotated_at: str
    next_rotation_at: str
    previous_username: str | None = Field(default=None, description="Previous generation, valid in its grace.")
    previous_revoke_at: str | None = None
    rotate_request: str | None = Field(
        default=None, description="Value of the eventpipeline.dev/rotate annotation last acted on."
    )
    withdrawn: bool = Field(
        default=False,
        description="Every generation was revoked (principal removed, access withdrawn); a new credential "
        "gets the next generation, so a revoked name never comes back.",
    )

    def valid_usernames(self) -> list[str]:
        """Every generation that is valid now: the current one, and the previous one in its grace."""
        if self.withdrawn:
            return []
        return [self.username] + ([self.previous_username] if self.previous_username else [])


class SchemaVersionRecord(ApiModel):
    """One schema version the operator registered, and the DAG version that was current then."""

    version: int
    id: int | None = Field(default=None, description="The registry's global id (Kafka); absent on Pulsar.")
    fingerprint: str = Field(description="SHA-256 of the schema text as registered.")
    registered_at: str | None = None
    dag_version: int | None = Field(
        default=None,
        description="The version number Airflow reported as current for the pipeline's DAG when this schema "
        "version was registered; absent without a DAG or when Airflow did not answer.",
    )


class OwnershipClaimSpec(ApiModel):
    """Which object on which system, owned by which pipeline, and what the operator keeps about it."""

    kind: ClaimKind
    system: str = Field(description="The broker or Airflow instance, as kind/namespace/name.")
    name: str = Field(description="The object's name there: topic, principal, or connection id.")
    pipeline: ClaimingPipeline
    principal: str | None = Field(default=None, description="Principal: its name in the pipeline's spec.")
    credential: CredentialRecord | None = None
    externals: list[str] = Field(default_factory=list, description="Topic: external principals granted on it.")
    fingerprint: str | None = Field(
        default=None,
        description="AirflowConnection: hash of what was written (recorded with the claim when the connection "
        "was read absent and is written next).",
    )
    holds: str | None = Field(
        default=None,
        description="AirflowConnection of a producer: the Kafka user or Pulsar role whose credential it holds.",
    )
    partitions: int | None = Field(
        default=None,
        description="Topic: partitions it has, or is about to be created with once the quota allowed them "
        "(for namespace quotas).",
    )
    schema_versions: list[SchemaVersionRecord] = Field(
        default_factory=list,
        description="Schema: the versions the operator registered under the subject (Kafka) or on the topic "
        "(Pulsar), oldest first; any other version there is drift.",
    )


class OwnershipClaimStatus(ApiModel):
    """Claims carry no status: everything in them is the operator's own record."""
