"""Kubernetes API: custom resources the operator reads, and the Secrets it owns."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3 import BaseHTTPResponse

from eventpipeline.adapters.errors import UnavailableError
from eventpipeline.adapters.metrics import counted
from eventpipeline.api.common import GROUP, VERSION
from eventpipeline.api.resources import EVENT_PIPELINE
from eventpipeline.planning.secrets import fingerprint

__all__ = ["fingerprint"]

FINGERPRINT_ANNOTATION = f"{GROUP}/fingerprint"
PIPELINE_LABEL = f"{GROUP}/pipeline"
PRINCIPAL_LABEL = f"{GROUP}/principal"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "eventpipeline-operator"


@dataclass(frozen=True)
class Owner:
    """The object a Secret belongs to; garbage collection removes the Secret with it."""

    api_version: str
    kind: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def load_configuration(pool_size: int = 32) -> None:
    """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config.

    The connection pool matches the reconciliation worker count, so parallel reconciles reuse
    connections instead of opening and discarding them.
    """
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size
    client.Configuration.set_default(configuration)


def load_api_client(pool_size: int = 32) -> client.ApiClient:
    """A client from the same sources as `load_configuration`, for processes without kopf (the listener)."""
    load_configuration(pool_size)
    return client.ApiClient()


def decode_secret_data(data: Mapping[str, str | bytes] | None) -> dict[str, str]:
    """The one Secret decoder: base64 values as text.

    A value that is not UTF-8 (a keystore, a typo'd binary) is decoded with replacement
    characters instead of raising, so one odd Secret never breaks a reader of many.
    """
    return {key: base64.b64decode(value).decode("utf-8", errors="replace") for key, value in (data or {}).items()}


@dataclass(frozen=True)
class SecretView:
    """What the operator needs to know of a Secret: its data, annotations, and who owns it."""

    data: dict[str, str]
    annotations: dict[str, str]
    owner_uids: frozenset[str]

    def owned_by(self, uid: str) -> bool:
        return uid in self.owner_uids

    def unedited(self) -> bool:
        """Whether its data is still what the operator wrote (it matches the fingerprint written with it)."""
        return self.annotations.get(FINGERPRINT_ANNOTATION) == fingerprint(self.data)

    @classmethod
    def written(cls, data: dict[str, str], owner: Owner | None) -> SecretView:
        """The Secret as `Kube.write_secret` leaves it: the data, its fingerprint, the owner."""
        owners = frozenset() if owner is None else frozenset({owner.uid})
        return cls(dict(data), {FINGERPRINT_ANNOTATION: fingerprint(data)}, owners)


class Kube:
    """The few Kubernetes calls the reconciler makes itself (kopf does the watching)."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    @counted("kubernetes")
    def get_custom(self, plural: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """A custom object of our group, or None if it does not exist."""
        try:
            if namespace is None:
                result = self._custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
            else:
                result = self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise UnavailableError(f"Kubernetes: reading {plural}/{name} failed ({error.status})") from error
        return cast(dict[str, Any], result)

    @counted("kubernetes")
    def patch_status(self, plural: str, name: str, namespace: str, status: dict[str, Any]) -> str | None:
        """Merge-patch the status subresource of one of our namespaced objects; returns the object's
        new resourceVersion (None if it is gone)."""
        try:
            patched = self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}
            )
        except ApiException as error:
            if error.status == 404:
                return None  # deleted meanwhile: nothing left to report on
            raise UnavailableError(
                f"Kubernetes: writing the status of {plural}/{name} failed ({error.status})"
            ) from error
        version = cast(dict[str, Any], patched).get("metadata", {}).get("resourceVersion")
        return None if version is None else str(version)

    @counted("kubernetes")
    def read_secret(self, namespace: str, name: str) -> SecretView | None:
        """A Secret's decoded data, annotations and owners, or None if it does not exist."""
        try:
            # Raw JSON: the typed client's model building cost about a fifth of each read's CPU, and a
            # drift check reads a pipeline's every Secret.
            response = cast(
                BaseHTTPResponse, self._core.read_namespaced_secret(name, namespace, _preload_content=False)
            )
            try:
                secret = json.loads(response.data)
            finally:
                response.release_conn()
        except ApiException as error:
            if error.status == 404:
                return None
            raise UnavailableError(f"Kubernetes: reading Secret {namespace}/{name} failed ({error.status})") from error
        metadata = secret.get("metadata") or {}
        owners = frozenset(reference["uid"] for reference in metadata.get("ownerReferences") or [])
        return SecretView(decode_secret_data(secret.get("data")), dict(metadata.get("annotations") or {}), owners)

    @counted("kubernetes")
    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data (a pipeline's schema text), or None if it does not exist."""
        try:
            config_map = self._core.read_namespaced_config_map(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise UnavailableError(
                f"Kubernetes: reading ConfigMap {namespace}/{name} failed ({error.status})"
            ) from error
        return dict(config_map.data or {})

    @counted("kubernetes")
    def read_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An EventPipeline, or None if it does not exist (counted apart from the referenced objects:
        a drift check reads none)."""
        try:
            result = self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, EVENT_PIPELINE.plural, name)
        except ApiException as error:
            if error.status == 404:
                return None
            message = f"Kubernetes: reading pipeline {namespace}/{name} failed ({error.status})"
            raise UnavailableError(message) from error
        return cast(dict[str, Any], result)

    def pipeline_uid(self, namespace: str, name: str) -> str | None:
        """The uid of an EventPipeline, or None if it does not exist (to tell a live claim from an orphan)."""
        body = self.read_pipeline(namespace, name)
        return None if body is None else str(body["metadata"]["uid"])

    @counted("kubernetes")
    def write_secret(
        self, namespace: str, name: str, data: dict[str, str], owner: Owner | None, labels: dict[str, str]
    ) -> None:
        """Create or replace a Secret, annotated with the fingerprint of its data.

        `owner` None: a Secret in another namespace than its pipeline (owner references cannot
        cross namespaces), removed by the operator itself.
        """
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                labels={**labels, MANAGED_BY_LABEL: MANAGER},
                annotations={FINGERPRINT_ANNOTATION: fingerprint(data)},
                owner_references=[owner.reference()] if owner is not None else None,
            ),
            type="Opaque",
            string_data=data,
        )
        try:
            try:
                self._core.create_namespaced_secret(namespace, body)
            except ApiException as error:
                if error.status != 409:
                    raise
                self._core.replace_namespaced_secret(name, namespace, body)
        except ApiException as error:
            raise UnavailableError(f"Kubernetes: writing Secret {namespace}/{name} failed ({error.status})") from error

    @counted("kubernetes")
    def delete_secret(self, namespace: str, name: str) -> None:
        try:
            self._core.delete_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise UnavailableError(f"Kubernetes: deleting Secret {namespace}/{name} failed") from error
