"""Types shared by every resource of the `eventpipeline.dev` API group."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

JsonDict = dict[str, JsonValue]

GROUP = "eventpipeline.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Go duration syntax restricted to the units CEL's duration() understands, so the same
# string is checked by the API server (CEL) and parsed here.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        json_schema_extra={"example": "24h"},
        description="A duration such as 90s, 15m, 24h or 1h30m (units: h, m, s, ms).",
    ),
]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def cel(*rules: tuple[str, str]) -> JsonDict:
    """CEL validation rules (rule, message) for a schema node, evaluated by the API server."""
    validations: list[JsonValue] = [{"rule": rule, "message": message} for rule, message in rules]
    return {"x-kubernetes-validations": validations}


def parse_duration(value: str) -> timedelta:
    """Parse a duration string of the CRD's `Duration` format."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"{value!r} is not a duration like 90s, 15m or 24h")
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value))
    return timedelta(seconds=seconds)


class ApiModel(BaseModel):
    """Base of all API models: camelCase on the wire, unknown fields refused, values validated."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True, alias_generator=to_camel)


class SecretKeyRef(ApiModel):
    """A Secret holding a credential; `namespace` only for cluster-scoped resources."""

    name: str = Field(description="Name of the Secret.", min_length=1, max_length=253)
    namespace: str | None = Field(
        default=None,
        description="Namespace of the Secret. Required on cluster-scoped resources, "
        "ignored on namespaced ones (their own namespace is used).",
    )


BrokerKind = Literal["ClusterBroker", "Broker"]
AirflowKind = Literal["ClusterAirflowInstance", "AirflowInstance"]


class BrokerRef(ApiModel):
    """Which Broker or ClusterBroker a pipeline uses (cert-manager's Issuer pattern)."""

    kind: BrokerKind = Field(default="ClusterBroker", description="ClusterBroker or Broker.")
    name: str = Field(min_length=1, max_length=253, description="Name of the broker resource.")


class AirflowInstanceRef(ApiModel):
    """Which AirflowInstance or ClusterAirflowInstance a pipeline uses."""

    kind: AirflowKind = Field(
        default="ClusterAirflowInstance", description="ClusterAirflowInstance or AirflowInstance."
    )
    name: str = Field(min_length=1, max_length=253, description="Name of the Airflow resource.")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A Kubernetes API convention condition."""

    type: str
    status: ConditionStatus
    reason: str = Field(description="CamelCase reason a program can act on.")
    message: str = Field(default="", description="What happened and what to do about it.")
    last_transition_time: str
    observed_generation: int | None = None


def wire(model: BaseModel) -> dict[str, Any]:
    """A model as the API server stores it: camelCase keys, no unset optional fields."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


class ReferencedResourceStatus(ApiModel):
    """Status of a Broker or AirflowInstance: whether the operator can reach and use it."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
