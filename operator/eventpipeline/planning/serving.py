"""Pure decisions of the trigger listener about pipelines: which replica serves a pipeline, and
what a worker needs from it (or why it needs none yet).

No I/O and no client libraries here, so all of it is tested in milliseconds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from eventpipeline.api.common import GROUP, AirflowInstanceRef
from eventpipeline.api.pipeline import (
    LISTENER_PRINCIPAL,
    EventPipelineSpec,
    ListenerStatus,
    TriggerSpec,
)
from eventpipeline.planning import handoff, naming

REPLAY_ANNOTATION = f"{GROUP}/replay-from"
BrokerType = Literal["Kafka", "Pulsar"]

# -- sharding ---------------------------------------------------------------------------------


def owner_replica(pipeline_key: str, replicas: int) -> int:
    """The replica (0-based) that serves a pipeline, by rendezvous (highest random weight) hashing.

    Consistent: growing from R to R+1 replicas moves only the pipelines the new replica wins
    (about 1/(R+1) of them); every other pipeline keeps its replica, and its consumer.
    """
    if replicas < 1:
        raise ValueError("replicas must be at least 1")

    def weight(replica: int) -> int:
        digest = hashlib.sha256(f"{pipeline_key}#{replica}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    return max(range(replicas), key=weight)


@dataclass(frozen=True)
class Shard:
    """Which pipelines this listener process serves."""

    replicas: int = 1
    index: int = 0
    dedicated: frozenset[str] = frozenset()  # namespace/name; non-empty: serve only these

    def serves(self, pipeline_key: str, wants_dedicated: bool) -> bool:
        """Dedicated listeners serve exactly their pipelines; shared replicas split the rest."""
        if self.dedicated:
            return pipeline_key in self.dedicated
        if wants_dedicated:
            return False
        return owner_replica(pipeline_key, self.replicas) == self.index

    @property
    def name(self) -> str:
        if self.dedicated:
            return "dedicated:" + ",".join(sorted(self.dedicated))
        return f"{self.index}/{self.replicas}"


def replica_index_from_hostname(hostname: str) -> int | None:
    """A StatefulSet pod's ordinal: `eventpipeline-listener-3` → 3."""
    match = re.search(r"-(\d+)$", hostname)
    return int(match.group(1)) if match else None


# -- which pipelines get a worker ----------------------------------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    """What a worker needs from an EventPipeline; a change to any of it restarts the worker."""

    namespace: str
    name: str
    uid: str
    broker_type: BrokerType
    topic: str  # as the controller handed it over (Pulsar: persistent://tenant/namespace/topic)
    dead_letter_topic: str | None
    group: str  # Kafka consumer group / Pulsar subscription
    secret_name: str  # the listener's copy of its credential, in the listener's namespace
    secret_namespace: str
    trigger: TriggerSpec
    airflow_ref: AirflowInstanceRef
    broker_key: str = ""  # the brokerRef as `naming.reference_key` records it; part of every run id
    # spec.schema is set: messages are decoded with the schemas the controller hands over, and
    # none is triggered undecoded while the hand-off has none yet.
    schema_expected: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Wanted:
    """A pipeline this listener should serve, as it stands now."""

    config: PipelineConfig
    dedicated: bool
    replay_annotation: str | None
    previous: ListenerStatus | None


def wanted_pipeline(
    body: Mapping[str, Any],
    handed_over: Mapping[str, str] | None,
    secret_namespace: str = naming.DEFAULT_LISTENER_NAMESPACE,
) -> Wanted | str:
    """The worker a pipeline object calls for, or why it calls for none (yet).

    `handed_over` is the data of the pipeline's hand-off Secret in the listener's namespace: the
    topic, dead-letter topic and broker type come from there, never from status, which the
    pipeline's namespace can patch.
    """
    metadata = body.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return "being deleted"
    try:
        spec = EventPipelineSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return f"spec invalid: {error.errors()[0]['msg']}"
    if spec.suspend:
        return "suspended"
    if spec.airflow is None or spec.airflow.trigger is None:
        return "no airflow.trigger"
    status = body.get("status") or {}
    handed_over = handed_over or {}
    topic, handed_type = handed_over.get(handoff.TOPIC_KEY), handed_over.get(handoff.BROKER_TYPE_KEY)
    broker_type: BrokerType
    if handed_type == "Kafka":
        broker_type = "Kafka"
    elif handed_type == "Pulsar":
        broker_type = "Pulsar"
    else:
        return "waiting for the operator to hand over the topic and the listener credential"
    if not topic:
        return "waiting for the operator to hand over the topic and the listener credential"
    namespace, name = metadata["namespace"], metadata["name"]
    trigger = spec.airflow.trigger
    previous = None
    if status.get("listener"):
        try:
            previous = ListenerStatus.model_validate(status["listener"])
        except ValidationError:
            previous = None
    config = PipelineConfig(
        namespace=namespace,
        name=name,
        uid=metadata.get("uid", ""),
        broker_type=broker_type,
        topic=topic,
        dead_letter_topic=handed_over.get(handoff.DEAD_LETTER_TOPIC_KEY) if trigger.dead_letter.enabled else None,
        group=naming.consumer_group(namespace, name, LISTENER_PRINCIPAL),
        secret_name=naming.listener_secret_name(namespace, name),
        secret_namespace=secret_namespace,
        trigger=trigger,
        airflow_ref=spec.airflow.instance_ref,
        broker_key=_broker_key(spec, namespace),
        schema_expected=spec.schema_ is not None,
    )
    annotations = metadata.get("annotations") or {}
    return Wanted(config, spec.listener.dedicated, annotations.get(REPLAY_ANNOTATION), previous)


def _broker_key(spec: EventPipelineSpec, namespace: str) -> str:
    ref = spec.broker_ref
    return naming.reference_key(ref.kind, namespace if ref.kind == "Broker" else None, ref.name)
