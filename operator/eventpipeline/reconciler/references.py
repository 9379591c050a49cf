"""Resolve a pipeline's brokerRef and airflow.instanceRef into ready-to-use backends.

Clients are cached per referenced resource and rebuilt only when that resource or its admin
Secret changes, so a periodic drift check costs no new connections.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError

from eventpipeline.adapters.airflow import AirflowConnections, AirflowSettings, AirflowTokens
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.kafka import KafkaAdmin, KafkaAdminSettings
from eventpipeline.adapters.kube import Kube, fingerprint
from eventpipeline.adapters.pulsar import PulsarAdmin, PulsarAdminSettings
from eventpipeline.api.airflow_instance import AirflowInstanceSpec
from eventpipeline.api.broker import BrokerSpec
from eventpipeline.api.common import AirflowInstanceRef, BrokerRef, SecretKeyRef
from eventpipeline.planning import naming, secrets
from eventpipeline.reconciler.backends import BrokerBackend, KafkaBackend, PulsarBackend

PLURALS = {
    "ClusterBroker": "clusterbrokers",
    "Broker": "brokers",
    "ClusterAirflowInstance": "clusterairflowinstances",
    "AirflowInstance": "airflowinstances",
}


class UnresolvedReferenceError(AdapterError):
    """A referenced resource is missing, refused to this namespace, or unusable."""

    transient = False

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ResolvedBroker:
    key: str  # kind/namespace/name: identifies the broker in topic claims
    spec: BrokerSpec
    backend: BrokerBackend


@dataclass(frozen=True)
class ResolvedAirflow:
    key: str
    spec: AirflowInstanceSpec
    connections: AirflowConnections
    settings: AirflowSettings
    tokens: AirflowTokens


class References:
    """Looks up referenced resources and keeps one client per resource version."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._lock = threading.Lock()
        self._brokers: dict[str, tuple[str, ResolvedBroker]] = {}
        self._airflows: dict[str, tuple[str, ResolvedAirflow]] = {}

    def _load(self, kind: str, name: str, namespace: str | None) -> tuple[dict[str, Any], str | None, str]:
        scope = None if kind.startswith("Cluster") else namespace
        body = self._kube.get_custom(PLURALS[kind], name, scope)
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
        found = self._kube.read_secret(secret_namespace, ref.name)
        if found is None:
            raise UnresolvedReferenceError(
                "SecretNotFound", f"{where}: Secret {secret_namespace}/{ref.name} does not exist"
            )
        data = found[0]
        missing = [key for key in keys if key not in data]
        if missing:
            raise UnresolvedReferenceError(
                "SecretIncomplete", f"{where}: Secret {secret_namespace}/{ref.name} lacks key(s) {', '.join(missing)}"
            )
        return data

    def broker(self, ref: BrokerRef, namespace: str | None, *, check_namespace: bool = True) -> ResolvedBroker:
        """The broker a reference names, usable from `namespace` (None: the broker's own check)."""
        body, scope, where = self._load(ref.kind, ref.name, namespace)
        try:
            spec = BrokerSpec.model_validate(body.get("spec", {}))
        except ValidationError as error:
            raise UnresolvedReferenceError(
                "BrokerInvalid", f"{where} is invalid: {error.errors()[0]['msg']}"
            ) from error
        if check_namespace and namespace is not None:
            self._allowed(spec.allowed_namespaces, scope, namespace, where)
        key = f"{ref.kind}/{scope or ''}/{ref.name}"
        if spec.kafka is not None:
            secret = self._secret(spec.kafka.admin_secret_ref, scope, ("username", "password"), where)
        else:
            assert spec.pulsar is not None
            secret = self._secret(spec.pulsar.admin_secret_ref, scope, ("token", "signingKey"), where)
        version = fingerprint({"resourceVersion": body["metadata"]["resourceVersion"], **secret})
        with self._lock:
            cached = self._brokers.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            resolved = ResolvedBroker(key, spec, _backend(spec, secret))
            self._brokers[key] = (version, resolved)
            return resolved

    def airflow(
        self, ref: AirflowInstanceRef, namespace: str | None, *, check_namespace: bool = True
    ) -> ResolvedAirflow:
        body, scope, where = self._load(ref.kind, ref.name, namespace)
        spec = AirflowInstanceSpec.model_validate(body.get("spec", {}))
        if check_namespace and namespace is not None:
            self._allowed(spec.allowed_namespaces, scope, namespace, where)
        secret = self._secret(spec.credentials_secret_ref, scope, ("username", "password"), where)
        key = f"{ref.kind}/{scope or ''}/{ref.name}"
        version = fingerprint({"resourceVersion": body["metadata"]["resourceVersion"], **secret})
        with self._lock:
            cached = self._airflows.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            settings = AirflowSettings(spec.api_url, secret["username"], SecretStr(secret["password"]))
            tokens = AirflowTokens(settings)
            resolved = ResolvedAirflow(key, spec, AirflowConnections(settings, tokens), settings, tokens)
            self._airflows[key] = (version, resolved)
            return resolved


def _backend(spec: BrokerSpec, secret: dict[str, str]) -> BrokerBackend:
    if spec.kafka is not None:
        kafka = spec.kafka
        admin = KafkaAdmin(
            KafkaAdminSettings(
                bootstrap_servers=kafka.bootstrap_servers,
                security_protocol=kafka.security_protocol,
                sasl_mechanism=kafka.sasl_mechanism,
                username=secret["username"],
                password=SecretStr(secret["password"]),
                max_calls_per_second=spec.max_admin_calls_per_second,
            )
        )
        endpoint = secrets.KafkaEndpoint(kafka.bootstrap_servers, kafka.security_protocol, kafka.sasl_mechanism)
        return KafkaBackend(admin, endpoint, kafka.default_replication_factor)
    assert spec.pulsar is not None
    pulsar = spec.pulsar
    admin_settings = PulsarAdminSettings(
        admin_url=pulsar.admin_url,
        admin_token=SecretStr(secret["token"]),
        signing_key=SecretStr(secret["signingKey"]),
        tenant=pulsar.tenant,
        cluster=pulsar.cluster,
        max_calls_per_second=spec.max_admin_calls_per_second,
    )
    return PulsarBackend(
        PulsarAdmin(admin_settings),
        secrets.PulsarEndpoint(pulsar.service_url),
        SecretStr(secret["signingKey"]),
        pulsar.tenant,
        pulsar.namespace_template,
    )
