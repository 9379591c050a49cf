"""Look up the resources a pipeline references (brokers, Airflow instances) and their Secrets.

Shared by the controller and the listener: both resolve `airflow.instanceRef` the same way,
with the same namespace check and the same errors. Clients are cached per referenced resource
and rebuilt only when that resource or its Secret changes. Resolving a broker into a backend
is the reconciler's job (`reconciler.references`), built on `ReferenceReader`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from eventpipeline.adapters.airflow import AirflowConnections, AirflowDags, AirflowSettings, AirflowTokens
from eventpipeline.adapters.drift import RecentReads
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.kube import Kube, SecretView, fingerprint
from eventpipeline.api.airflow_instance import AirflowInstanceSpec
from eventpipeline.api.common import AirflowInstanceRef, SecretKeyRef
from eventpipeline.api.resources import REFERENCED_PLURALS
from eventpipeline.planning import naming


class UnresolvedReferenceError(AdapterError):
    """A referenced resource is missing, refused to this namespace, or unusable."""

    transient = False

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ResolvedAirflow:
    key: str
    spec: AirflowInstanceSpec
    connections: AirflowConnections
    settings: AirflowSettings
    tokens: AirflowTokens
    dags: AirflowDags


def spec_version(body: dict[str, Any]) -> dict[str, str]:
    """What identifies a referenced resource's spec: its uid and generation, not its resourceVersion,
    which also moves with its status and kopf's annotations (a restarted controller saw a broker's
    resourceVersion change about a dozen times, and rebuilt its admin client and listing each time)."""
    metadata = body["metadata"]
    generation = metadata.get("generation")
    if generation is None:  # a resource without a generation: any change counts
        return {"resourceVersion": str(metadata["resourceVersion"])}
    return {"uid": str(metadata.get("uid", "")), "generation": str(generation)}


class ReferenceReader:
    """Reads referenced resources and their Secrets; resolves Airflow instances into clients.

    Every pipeline of a broker reads the same broker and admin Secret: a drift check takes them
    from a read less than a period old (`RecentReads`), every other run reads them fresh.
    """

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._lock = threading.Lock()
        self._airflows: dict[str, tuple[str, ResolvedAirflow]] = {}
        self._bodies: RecentReads[tuple[str, str | None, str], dict[str, Any] | None] = RecentReads()
        self._secrets: RecentReads[tuple[str, str], SecretView | None] = RecentReads()

    def _load(self, kind: str, name: str, namespace: str | None) -> tuple[dict[str, Any], str | None, str]:
        scope = None if kind.startswith("Cluster") else namespace
        body = self._bodies.get(
            (kind, scope, name), lambda: self._kube.get_custom(REFERENCED_PLURALS[kind], name, scope)
        )
        where = f"{kind} {name}" if scope is None else f"{kind} {scope}/{name}"
        if body is None:
            raise UnresolvedReferenceError(f"{kind}NotFound", f"{where} does not exist; create it or fix the reference")
        return body, scope, where

    def _allowed(self, patterns: list[str], scope: str | None, namespace: str, where: str) -> None:
        if scope == namespace:
            return
        if not naming.namespace_allowed(patterns, namespace):
            raise UnresolvedReferenceError(
                "NamespaceNotAllowed",
                f"{where} does not allow namespace {namespace}; ask its owner to add it to spec.allowedNamespaces",
            )

    def _secret(self, ref: SecretKeyRef, scope: str | None, keys: tuple[str, ...], where: str) -> dict[str, str]:
        secret_namespace = scope or ref.namespace
        if secret_namespace is None:
            raise UnresolvedReferenceError(
                "SecretRefInvalid", f"{where}: a cluster-scoped resource's Secret needs a namespace"
            )
        found = self._secrets.get(
            (secret_namespace, ref.name), lambda: self._kube.read_secret(secret_namespace, ref.name)
        )
        if found is None:
            raise UnresolvedReferenceError(
                "SecretNotFound", f"{where}: Secret {secret_namespace}/{ref.name} does not exist"
            )
        data = found.data
        missing = [key for key in keys if key not in data]
        if missing:
            raise UnresolvedReferenceError(
                "SecretIncomplete", f"{where}: Secret {secret_namespace}/{ref.name} lacks key(s) {', '.join(missing)}"
            )
        return data

    def airflow(
        self, ref: AirflowInstanceRef, namespace: str | None, *, check_namespace: bool = True
    ) -> ResolvedAirflow:
        """The Airflow instance a reference names, usable from `namespace`, with its clients."""
        body, scope, where = self._load(ref.kind, ref.name, namespace)
        spec = AirflowInstanceSpec.model_validate(body.get("spec", {}))
        if check_namespace and namespace is not None:
            self._allowed(spec.allowed_namespaces, scope, namespace, where)
        secret = self._secret(spec.credentials_secret_ref, scope, ("username", "password"), where)
        key = naming.reference_key(ref.kind, scope, ref.name)
        version = fingerprint({**spec_version(body), **secret})
        with self._lock:
            cached = self._airflows.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            settings = AirflowSettings(spec.api_url, secret["username"], SecretStr(secret["password"]))
            tokens = AirflowTokens(settings)
            connections, dags = AirflowConnections(settings, tokens), AirflowDags(settings, tokens)
            resolved = ResolvedAirflow(key, spec, connections, settings, tokens, dags)
            self._airflows[key] = (version, resolved)
            return resolved
