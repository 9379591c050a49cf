"""Schemas: what the registry should hold for a pipeline, and what to change to get there.

Pure. The registry (Kafka: a Confluent-compatible registry, subject `<topic>-value`; Pulsar: the
broker's built-in registry, per topic) is read by the adapters into `ObservedSchemas`; the plan
says which versions to remove (drift: registered by someone else), whether the desired text must
be registered (after a compatibility check) and which settings to converge. Ownership of the
subject is the pipeline's claim, which also records the versions the operator registered: a
version the claim does not record is drift, removed like an ACL nobody asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from eventpipeline.api.claim import SchemaVersionRecord
from eventpipeline.api.pipeline import SchemaCompatibility, SchemaType
from eventpipeline.planning.schema_versions import SchemaVersion, schemas_json

# Longest registry explanation carried into a condition message.
EXPLANATION_MAX_LENGTH = 600


def kafka_subject(topic: str) -> str:
    """The subject of a topic's message values under the topic name strategy."""
    return f"{topic}-value"


def fingerprint(definition: str) -> str:
    """SHA-256 (hex) of a schema text, exactly as the spec gives it."""
    return hashlib.sha256(definition.encode()).hexdigest()


@dataclass(frozen=True)
class RegisteredVersion:
    """One version a registry holds: its number, global id (Kafka only) and text as stored."""

    version: int
    id: int | None
    type: SchemaType
    definition: str


@dataclass(frozen=True)
class ObservedSchemas:
    """What the registry holds for the pipeline's subject or topic."""

    versions: tuple[RegisteredVersion, ...]
    # The version whose schema equals the desired one (the registry's own lookup), if any.
    desired_version: int | None
    compatibility: str | None

    @property
    def latest(self) -> RegisteredVersion | None:
        return max(self.versions, key=lambda item: item.version, default=None)


@dataclass(frozen=True)
class DesiredSchema:
    type: SchemaType
    definition: str
    compatibility: SchemaCompatibility

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.definition)


@dataclass(frozen=True)
class SchemaPlan:
    """What to do, in order: settings, removal of drift, registration (compatibility first)."""

    set_compatibility: bool
    remove: tuple[int, ...] = ()
    # The registry holds versions the claim does not record and that cannot be removed one by
    # one (Pulsar): clear the topic's schema and register the desired one again.
    reset: bool = False
    register: bool = False
    # Unrecorded versions that hold the desired text: registered by a run whose record was lost.
    adopt: tuple[int, ...] = ()
    # Recorded versions the registry no longer holds (a subject deleted by hand): forgotten.
    forget: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default=())


def plan_schema(
    desired: DesiredSchema,
    observed: ObservedSchemas,
    recorded: Sequence[SchemaVersionRecord],
    *,
    removes_single_versions: bool,
) -> SchemaPlan:
    """The changes that make the registry hold the desired schema, and only recorded versions."""
    held = {item.version for item in observed.versions}
    mine = {record.version for record in recorded}
    adopt = (observed.desired_version,) if observed.desired_version in held - mine else ()
    strangers = tuple(sorted(held - mine - set(adopt)))
    forget = tuple(sorted(mine - held))
    notes: list[str] = []
    if strangers:
        notes.append(f"version(s) {', '.join(map(str, strangers))} were not registered by the operator")
    if forget and held:
        notes.append(f"recorded version(s) {', '.join(map(str, forget))} are gone from the registry")
    reset = bool(strangers) and not removes_single_versions
    remove = () if reset else strangers
    after_removal = held - set(remove)
    register = reset or observed.desired_version is None or observed.desired_version not in after_removal
    return SchemaPlan(
        set_compatibility=observed.compatibility != desired.compatibility,
        remove=remove,
        reset=reset,
        register=register,
        adopt=() if reset else adopt,
        forget=tuple(sorted(mine)) if reset else forget,
        notes=tuple(notes),
    )


def bounded_explanation(text: str) -> str:
    """A registry's explanation, short enough for a condition: the first meaningful line, trimmed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = next((line.removeprefix("Message:").strip() for line in lines if line.startswith("Message:")), None)
    picked = message or (lines[0] if lines else "no explanation given")
    flat = " ".join(picked.split())
    return flat if len(flat) <= EXPLANATION_MAX_LENGTH else flat[: EXPLANATION_MAX_LENGTH - 1] + "…"


def handed_schemas(versions: Sequence[RegisteredVersion]) -> str:
    """The hand-off key `schemas.json` (`schema_versions.SCHEMAS_KEY`): every version the registry
    holds, oldest first, with its id and fingerprint; the listener decodes with it and needs no
    access to the registry."""
    return schemas_json(
        SchemaVersion(
            version=item.version,
            id=item.id,
            type=item.type,
            definition=item.definition,
            fingerprint=fingerprint(item.definition),
        )
        for item in versions
    )


# Every key `registry_client_settings` may write: what a producer Secret holds of them and the
# settings no longer name (a credential withdrawn) is removed, not left behind.
REGISTRY_CLIENT_KEYS = frozenset({
    "schema.registry.url", "auto.register.schemas", "use.latest.version",
    "basic.auth.credentials.source", "basic.auth.user.info",
})  # fmt: skip


def registry_client_settings(url: str, username: str | None, password: str | None) -> dict[str, str]:
    """What a producer's Secret carries for the schema registry's client and serializers: the URL,
    the client credential when there is one (`username`/`password`: the broker's read-only
    clientCredentialsSecretRef, never the operator's), and that serializers register nothing but
    use the latest version the operator registered."""
    settings = {"schema.registry.url": url, "auto.register.schemas": "false", "use.latest.version": "true"}
    if username is not None and password is not None:
        settings["basic.auth.credentials.source"] = "USER_INFO"
        settings["basic.auth.user.info"] = f"{username}:{password}"
    return settings
