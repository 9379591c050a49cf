"""Whether pipelines may use namespaced Brokers and AirflowInstances: the cluster admin's switch.

A namespaced Broker or AirflowInstance is written by a namespace's own users, so its URLs are a
tenant's choice and the controller and the listener would call them from inside the cluster.
Cluster admins turn them on with the operator setting `EVENTPIPELINE_ALLOW_NAMESPACED_REFERENCES`
(chart value `tenancy.allowNamespacedReferences`); off by default.
"""

from __future__ import annotations

from collections.abc import Mapping

ALLOW_NAMESPACED_REFERENCES_ENV = "EVENTPIPELINE_ALLOW_NAMESPACED_REFERENCES"
NAMESPACED_REFERENCES_DISABLED = "NamespacedReferencesDisabled"
NAMESPACED_KINDS = frozenset({"Broker", "AirflowInstance"})
_TRUE = frozenset({"1", "true", "yes", "on"})


def allow_namespaced_references(environ: Mapping[str, str]) -> bool:
    """The setting as the operator's environment states it (unset or anything but true: off)."""
    return environ.get(ALLOW_NAMESPACED_REFERENCES_ENV, "").strip().lower() in _TRUE


def namespaced_reference_allowed(kind: str, allow_namespaced: bool) -> bool:
    """Whether a pipeline may reference a resource of `kind` (cluster-scoped kinds always)."""
    return kind not in NAMESPACED_KINDS or allow_namespaced


def namespaced_reference_refusal(kind: str, name: str, allow_namespaced: bool) -> str | None:
    """The condition message when the reference is refused (reason NamespacedReferencesDisabled), else None."""
    if namespaced_reference_allowed(kind, allow_namespaced):
        return None
    return (
        f"{kind} {name!r} is namespaced, and this cluster's operator uses only Cluster{kind} resources "
        f"(a cluster admin can allow namespaced ones with the chart value tenancy.allowNamespacedReferences); "
        f"reference a Cluster{kind} instead"
    )
