"""Ownership claims on the API server: list a pipeline's claims, take one by creating it, update, release."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from eventpipeline.adapters.errors import UnavailableError
from eventpipeline.adapters.kube import MANAGED_BY_LABEL, MANAGER
from eventpipeline.adapters.metrics import counted
from eventpipeline.api.claim import OwnershipClaimSpec
from eventpipeline.api.common import API_VERSION, GROUP, VERSION, wire
from eventpipeline.api.resources import OWNERSHIP_CLAIM

PIPELINE_UID_LABEL = f"{GROUP}/pipeline-uid"
PIPELINE_NAMESPACE_LABEL = f"{GROUP}/pipeline-namespace"
_PLURAL = OWNERSHIP_CLAIM.plural


@dataclass(frozen=True)
class StoredClaim:
    """A claim as the API server holds it; `resource_version` makes updates compare-and-swap."""

    name: str
    spec: OwnershipClaimSpec
    resource_version: str | None = None


class ClaimConflictError(UnavailableError):
    """The claim changed between read and write (another worker); the next run reads it again."""

    reason = "ClaimChanged"


def _stored(body: dict[str, Any]) -> StoredClaim:
    metadata = body["metadata"]
    return StoredClaim(
        metadata["name"], OwnershipClaimSpec.model_validate(body["spec"]), metadata.get("resourceVersion")
    )


def _labels(spec: OwnershipClaimSpec) -> dict[str, str]:
    return {
        PIPELINE_UID_LABEL: spec.pipeline.uid,
        PIPELINE_NAMESPACE_LABEL: spec.pipeline.namespace,
        MANAGED_BY_LABEL: MANAGER,
    }


class KubeClaims:
    """The claims store: cluster-scoped `OwnershipClaim` objects only the operator writes."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self._custom = client.CustomObjectsApi(api_client)

    def owned_by(self, pipeline_uid: str) -> list[StoredClaim]:
        """Every claim of one pipeline: one list call per reconciliation."""
        return self._list(f"{PIPELINE_UID_LABEL}={pipeline_uid}")

    def in_namespace(self, namespace: str) -> list[StoredClaim]:
        """Every claim of a namespace's pipelines (for its quotas)."""
        return self._list(f"{PIPELINE_NAMESPACE_LABEL}={namespace}")

    @counted("kubernetes")
    def _list(self, selector: str) -> list[StoredClaim]:
        try:
            result = self._custom.list_cluster_custom_object(GROUP, VERSION, _PLURAL, label_selector=selector)
        except ApiException as error:
            raise UnavailableError(f"Kubernetes: listing ownership claims failed ({error.status})") from error
        return [_stored(item) for item in cast(dict[str, Any], result).get("items", [])]

    @counted("kubernetes")
    def get(self, name: str) -> StoredClaim | None:
        try:
            body = self._custom.get_cluster_custom_object(GROUP, VERSION, _PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise UnavailableError(f"Kubernetes: reading ownership claim {name} failed ({error.status})") from error
        return _stored(cast(dict[str, Any], body))

    @counted("kubernetes")
    def create(self, name: str, spec: OwnershipClaimSpec) -> StoredClaim | None:
        """Take the claim; None when it already exists (someone else may hold it: read it again)."""
        body = {
            "apiVersion": API_VERSION,
            "kind": OWNERSHIP_CLAIM.kind,
            "metadata": {
                "name": name,
                "labels": _labels(spec),
            },
            "spec": wire(spec),
        }
        try:
            created = self._custom.create_cluster_custom_object(GROUP, VERSION, _PLURAL, body)
        except ApiException as error:
            if error.status == 409:
                return None
            raise UnavailableError(f"Kubernetes: creating ownership claim {name} failed ({error.status})") from error
        return _stored(cast(dict[str, Any], created))

    @counted("kubernetes")
    def update(self, claim: StoredClaim) -> StoredClaim:
        """Replace the claim's spec (and owner label) if nobody changed it since it was read."""
        body = {
            "apiVersion": API_VERSION,
            "kind": OWNERSHIP_CLAIM.kind,
            "metadata": {
                "name": claim.name,
                "resourceVersion": claim.resource_version,
                "labels": _labels(claim.spec),
            },
            "spec": wire(claim.spec),
        }
        try:
            replaced = self._custom.replace_cluster_custom_object(GROUP, VERSION, _PLURAL, claim.name, body)
        except ApiException as error:
            if error.status == 409:
                raise ClaimConflictError(f"ownership claim {claim.name} changed meanwhile; retrying") from error
            raise UnavailableError(
                f"Kubernetes: updating ownership claim {claim.name} failed ({error.status})"
            ) from error
        return _stored(cast(dict[str, Any], replaced))

    @counted("kubernetes")
    def delete(self, name: str) -> None:
        try:
            self._custom.delete_cluster_custom_object(GROUP, VERSION, _PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise UnavailableError(
                    f"Kubernetes: deleting ownership claim {name} failed ({error.status})"
                ) from error
