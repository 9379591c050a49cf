"""Handlers of Broker / ClusterBroker and AirflowInstance / ClusterAirflowInstance: is it usable?

Each gets a `Ready` condition that says whether the operator can log in with its admin Secret,
so a platform team sees a broken broker before any pipeline does.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from eventpipeline.adapters.errors import AdapterError
from eventpipeline.api.common import GROUP, VERSION, AirflowInstanceRef, BrokerRef, Condition, wire
from eventpipeline.handlers import context
from eventpipeline.planning.clock import iso, utcnow
from eventpipeline.planning.conditions import Outcome, changed, merge_conditions
from eventpipeline.planning.reference_policy import (
    NAMESPACED_REFERENCES_DISABLED,
    allow_namespaced_references,
    namespaced_reference_refusal,
)

CHECK_SECONDS = max(context.RESYNC_SECONDS, 60)


def _check(kind: str, name: str, namespace: str | None) -> Outcome:
    # A namespaced resource's URLs are a tenant's choice: not even a login check while switched off.
    refusal = namespaced_reference_refusal(kind, name, allow_namespaced_references(os.environ))
    if refusal is not None:
        return Outcome("Ready", "False", NAMESPACED_REFERENCES_DISABLED, refusal)
    references = context.services().references
    try:
        if "Broker" in kind:
            resolved = references.broker(BrokerRef(kind=kind, name=name), namespace, check_namespace=False)
            resolved.backend.ping()
        else:
            airflow = references.airflow(AirflowInstanceRef(kind=kind, name=name), namespace, check_namespace=False)
            airflow.tokens.token(renew=True)
    except AdapterError as error:
        return Outcome("Ready", "False", error.reason, str(error))
    return Outcome("Ready", "True", "Reachable", "the operator logged in with the admin credential")


def _update(body: kopf.Body, patch: kopf.Patch, kind: str) -> None:
    metadata = body["metadata"]
    outcome = _check(kind, metadata["name"], metadata.get("namespace"))
    before = [Condition.model_validate(c) for c in body.get("status", {}).get("conditions", [])]
    after = merge_conditions(before, [outcome], metadata.get("generation"), iso(utcnow()))
    if changed(before, after):
        patch.status["conditions"] = [wire(condition) for condition in after]
        patch.status["observedGeneration"] = metadata.get("generation")
        level = "Normal" if outcome.status == "True" else "Warning"
        kopf.event(body, type=level, reason=outcome.reason, message=outcome.message[:1000])


def _register(plural: str, kind: str) -> None:
    resource = (GROUP, VERSION, plural)

    @kopf.on.resume(*resource, id=f"check-{plural}")
    @kopf.on.create(*resource, id=f"check-{plural}-created")
    @kopf.on.update(*resource, id=f"check-{plural}-updated")
    @kopf.timer(*resource, interval=CHECK_SECONDS, id=f"recheck-{plural}")
    def check(*, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        _update(body, patch, kind)


for _plural, _kind in (
    ("clusterbrokers", "ClusterBroker"),
    ("brokers", "Broker"),
    ("clusterairflowinstances", "ClusterAirflowInstance"),
    ("airflowinstances", "AirflowInstance"),
):
    _register(_plural, _kind)
