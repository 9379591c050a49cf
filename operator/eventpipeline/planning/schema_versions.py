"""The schema versions a pipeline's messages may carry, as the controller hands them to the
listener, and the listener's pure decisions about them: which registered version a message was
written with, and whether the DAG handles that version yet.

The hand-off: the controller writes every version the registry holds for the pipeline (oldest
first) into the listener hand-off Secret under `schemas.json`, so the listener decodes without
registry access or credentials. An absent key or an empty list means the pipeline has no
schema: messages travel as bytes / text, as they always did.

Kafka messages carry the Confluent wire format (magic byte 0, the registry's 4-byte big-endian
schema id, then the payload); Pulsar messages carry the broker's schema version. A DAG states the
newest schema version it handles with the Airflow tag `eventpipeline-schema:<version>` (no such
tag: every version); a message of a newer version waits for the DAG (`DagBehindSchema`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMAS_KEY = "schemas.json"
SCHEMA_TAG_PREFIX = "eventpipeline-schema:"
DAG_BEHIND_SCHEMA = "DagBehindSchema"
WIRE_MAGIC = 0
WIRE_HEADER_BYTES = 5  # the magic byte and the 4-byte schema id

SchemaType = Literal["AVRO", "JSON", "PROTOBUF"]


class SchemaVersion(BaseModel):
    """One registered version of the pipeline's schema, as handed to the listener."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = Field(ge=0)  # Kafka: the subject version (from 1); Pulsar: the broker's (from 0)
    id: int | None = None  # Kafka: the registry's global id, what the wire format carries; Pulsar: None
    type: SchemaType
    definition: str
    fingerprint: str = ""


class HandoffError(ValueError):
    """`schemas.json` in the listener hand-off Secret is not what the controller writes."""


def parse_schemas(text: str | None) -> tuple[SchemaVersion, ...]:
    """The versions in `schemas.json` (None or empty: the pipeline has no schema), oldest first.

    Raises HandoffError with what is wrong; the listener then serves nothing of the pipeline
    rather than decode with a schema it cannot trust.
    """
    if text is None or not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise HandoffError(f"{SCHEMAS_KEY} is not JSON: {error}") from error
    if not isinstance(raw, list):
        raise HandoffError(f"{SCHEMAS_KEY} must be a JSON list of schema versions")
    versions = []
    for index, item in enumerate(raw):
        try:
            versions.append(SchemaVersion.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in (index, *first["loc"]))
            raise HandoffError(f"{SCHEMAS_KEY}: {where}: {first['msg']}") from error
    numbers = [v.version for v in versions]
    if len(set(numbers)) != len(numbers):
        raise HandoffError(f"{SCHEMAS_KEY} lists a version twice: {numbers}")
    ids = [v.id for v in versions if v.id is not None]
    if len(set(ids)) != len(ids):
        raise HandoffError(f"{SCHEMAS_KEY} lists a schema id twice: {ids}")
    return tuple(sorted(versions, key=lambda v: v.version))


def schemas_json(versions: Iterable[SchemaVersion]) -> str:
    """What the controller writes under `schemas.json`: the versions, oldest first, compact."""
    ordered = sorted(versions, key=lambda v: v.version)
    return json.dumps([v.model_dump(mode="json") for v in ordered], separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class SchemaRef:
    """Which registered schema a message was decoded with: what `conf.schema` says."""

    version: int
    id: int | None

    def conf(self) -> dict[str, int | None]:
        return {"version": self.version, "id": self.id}


class UndecodableError(Exception):
    """A message the listener cannot decode; the text says why, for the dead-letter headers.

    `retriable`: the message may decode later (a schema id or version the hand-off does not list
    yet: the controller registered it seconds ago), so it is retried like a refusal before it is
    dead-lettered; otherwise (wrong magic byte, a payload the schema does not read) it goes to the
    dead-letter topic at once.
    """

    def __init__(self, reason: str, *, retriable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable


def split_wire_format(data: bytes | None) -> tuple[int, bytes]:
    """(schema id, payload) of a value in the Confluent wire format; raises UndecodableError."""
    if data is None:
        raise UndecodableError("the message has no value (a tombstone); the pipeline's schema needs one")
    if len(data) < WIRE_HEADER_BYTES:
        raise UndecodableError(f"the value is {len(data)} byte(s), shorter than the wire format's 5-byte header")
    if data[0] != WIRE_MAGIC:
        raise UndecodableError(
            f"the value does not start with the wire format's magic byte 0 (found {data[0]}); "
            "the producer must use a schema-registry serializer"
        )
    return int.from_bytes(data[1:WIRE_HEADER_BYTES], "big"), data[WIRE_HEADER_BYTES:]


def version_by_id(versions: Sequence[SchemaVersion], schema_id: int) -> SchemaVersion:
    """The version a Kafka message's schema id stands for; raises UndecodableError (retriable)."""
    for version in versions:
        if version.id == schema_id:
            return version
    known = ", ".join(str(v.id) for v in versions) or "none"
    raise UndecodableError(
        f"schema id {schema_id} is not a registered version of the pipeline's subject (known ids: {known})",
        retriable=True,
    )


def version_by_number(versions: Sequence[SchemaVersion], number: int | None) -> SchemaVersion:
    """The version a Pulsar message says it was written with; raises UndecodableError."""
    if number is None:
        raise UndecodableError("the message carries no schema version; the pipeline's topic has a schema")
    for version in versions:
        if version.version == number:
            return version
    known = ", ".join(str(v.version) for v in versions) or "none"
    raise UndecodableError(
        f"schema version {number} is not a registered version of the pipeline's topic (known: {known})",
        retriable=True,
    )


# -- the DAG's side --------------------------------------------------------------------------


def schema_tag(version: int) -> str:
    """The Airflow tag by which a DAG states that it handles schema versions up to `version`."""
    return f"{SCHEMA_TAG_PREFIX}{version}"


def dag_schema_version(tags: Iterable[str]) -> int | None:
    """The newest schema version a DAG with these tags handles; None: it states none (every version).

    Several tags: the highest counts. A tag whose value is not a whole number states nothing the
    listener could trust, so the DAG is taken to handle no version (0 on Kafka, whose versions
    start at 1; on Pulsar, whose versions start at 0, the first version only).
    """
    stated = [tag[len(SCHEMA_TAG_PREFIX) :].strip() for tag in tags if tag.startswith(SCHEMA_TAG_PREFIX)]
    if not stated:
        return None
    numbers = [int(value) for value in stated if value.isdigit()]
    return max(numbers) if numbers else 0


def dag_behind(message_version: int, dag_version: int | None) -> bool:
    """Whether a message of `message_version` must wait for the DAG."""
    return dag_version is not None and message_version > dag_version


def behind_message(target: str, dag_version: int, held_versions: Iterable[int], partitions: Iterable[int]) -> str:
    """What status says while messages wait for the DAG: both versions and how to release them."""
    versions = sorted(set(held_versions))
    newest = versions[-1] if versions else dag_version + 1
    shown = ", ".join(str(v) for v in versions)
    where = ", ".join(str(p) for p in sorted(set(partitions)))
    return (
        f"{DAG_BEHIND_SCHEMA}: {target} handles schema versions up to {dag_version} (tag "
        f"{schema_tag(dag_version)!r}) and messages of version {shown} wait on partition(s) {where}, in "
        f"order, uncommitted; they become runs once the DAG states {schema_tag(newest)!r} or newer"
    )
