"""The kinds of the API group: their models, names, scope and printer columns, in one table."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from eventpipeline.api.airflow_instance import AirflowInstanceSpec
from eventpipeline.api.broker import BrokerSpec
from eventpipeline.api.claim import OwnershipClaimSpec, OwnershipClaimStatus
from eventpipeline.api.common import ReferencedResourceStatus
from eventpipeline.api.pipeline import EventPipelineSpec, EventPipelineStatus

READY = '.status.conditions[?(@.type=="Ready")].status'
REASON = '.status.conditions[?(@.type=="Ready")].reason'


@dataclass(frozen=True)
class Kind:
    """One custom resource kind as the API server knows it."""

    kind: str
    plural: str
    short_names: list[str]
    namespaced: bool
    spec: type[BaseModel]
    status: type[BaseModel]
    printer_columns: list[dict[str, str]] = field(default_factory=list)
    # Rules on the whole object (CEL on metadata may only read name and generateName).
    object_rules: list[dict[str, str]] = field(default_factory=list)

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _age() -> dict[str, str]:
    return {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def _broker_columns() -> list[dict[str, str]]:
    return [
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {"name": "Ready", "type": "string", "jsonPath": READY},
        _age(),
    ]


def _airflow_columns() -> list[dict[str, str]]:
    return [
        {"name": "URL", "type": "string", "jsonPath": ".spec.apiUrl"},
        {"name": "Ready", "type": "string", "jsonPath": READY},
        _age(),
    ]


EVENT_PIPELINE = Kind(
    kind="EventPipeline",
    plural="eventpipelines",
    # Not "ep": kubectl resolves it to core Endpoints first.
    short_names=["eps", "epl"],
    namespaced=True,
    spec=EventPipelineSpec,
    status=EventPipelineStatus,
    printer_columns=[
        {"name": "Broker", "type": "string", "jsonPath": ".spec.brokerRef.name"},
        {"name": "Topic", "type": "string", "jsonPath": ".status.topic"},
        {"name": "DAG", "type": "string", "jsonPath": ".spec.airflow.trigger.dagId"},
        {"name": "Ready", "type": "string", "jsonPath": READY},
        {"name": "Reason", "type": "string", "jsonPath": REASON, "priority": "1"},
        {"name": "Lag", "type": "integer", "jsonPath": ".status.listener.lag", "priority": "1"},
        _age(),
    ],
    object_rules=[
        {
            "rule": "size(self.metadata.name) <= 63",
            "message": "EventPipeline names are at most 63 characters (they become parts of "
            "Secret names and broker principals)",
        }
    ],
)
CLUSTER_BROKER = Kind(
    "ClusterBroker", "clusterbrokers", ["cbk"], False, BrokerSpec, ReferencedResourceStatus, _broker_columns()
)
BROKER = Kind("Broker", "brokers", ["bk"], True, BrokerSpec, ReferencedResourceStatus, _broker_columns())
CLUSTER_AIRFLOW_INSTANCE = Kind(
    "ClusterAirflowInstance",
    "clusterairflowinstances",
    ["cafi"],
    False,
    AirflowInstanceSpec,
    ReferencedResourceStatus,
    _airflow_columns(),
)
AIRFLOW_INSTANCE = Kind(
    "AirflowInstance",
    "airflowinstances",
    ["afi"],
    True,
    AirflowInstanceSpec,
    ReferencedResourceStatus,
    _airflow_columns(),
)

OWNERSHIP_CLAIM = Kind(
    "OwnershipClaim",
    "ownershipclaims",
    ["epclaim"],
    False,
    OwnershipClaimSpec,
    OwnershipClaimStatus,
    [
        {"name": "Kind", "type": "string", "jsonPath": ".spec.kind"},
        {"name": "System", "type": "string", "jsonPath": ".spec.system"},
        {"name": "Object", "type": "string", "jsonPath": ".spec.name"},
        {"name": "Namespace", "type": "string", "jsonPath": ".spec.pipeline.namespace"},
        {"name": "Pipeline", "type": "string", "jsonPath": ".spec.pipeline.name"},
        _age(),
    ],
)

ALL_KINDS = [EVENT_PIPELINE, CLUSTER_BROKER, BROKER, CLUSTER_AIRFLOW_INSTANCE, AIRFLOW_INSTANCE, OWNERSHIP_CLAIM]
KINDS_BY_NAME = {kind.kind: kind for kind in ALL_KINDS}
# The kinds a pipeline references, by kind → plural.
REFERENCED_PLURALS = {
    kind.kind: kind.plural for kind in (CLUSTER_BROKER, BROKER, CLUSTER_AIRFLOW_INSTANCE, AIRFLOW_INSTANCE)
}


def plural(kind: str) -> str:
    """The plural (resource name) of one of our kinds, e.g. ClusterBroker → clusterbrokers."""
    return KINDS_BY_NAME[kind].plural
