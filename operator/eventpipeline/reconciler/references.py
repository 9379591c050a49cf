"""Resolve a pipeline's brokerRef and airflow.instanceRef into ready-to-use backends.

Clients are cached per referenced resource and rebuilt only when that resource or its admin
Secret changes, so a periodic drift check costs no new connections.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr, ValidationError

from eventpipeline.adapters.kafka import KafkaAdmin, KafkaAdminSettings
from eventpipeline.adapters.kube import Kube, fingerprint
from eventpipeline.adapters.pulsar import PulsarAdmin, PulsarAdminSettings
from eventpipeline.adapters.pulsar_schema import PulsarSchemas
from eventpipeline.adapters.references import (
    ReferenceReader,
    ResolvedAirflow,
    UnresolvedReferenceError,
    spec_version,
)
from eventpipeline.adapters.schema_registry import ConfluentRegistry, RegistrySettings
from eventpipeline.adapters.tls import ca_problem
from eventpipeline.api.broker import BrokerSpec
from eventpipeline.api.common import AirflowInstanceRef, BrokerRef, SecretKeyRef
from eventpipeline.planning import naming, secrets
from eventpipeline.reconciler.backends import BrokerBackend, KafkaBackend, PulsarBackend
from eventpipeline.reconciler.ports import SchemaStore

__all__ = ["References", "ResolvedAirflow", "ResolvedBroker", "UnresolvedReferenceError"]


@dataclass(frozen=True)
class ResolvedBroker:
    key: str  # kind/namespace/name: identifies the broker in topic claims
    spec: BrokerSpec
    backend: BrokerBackend
    schemas: SchemaStore | None = None


class References(ReferenceReader):
    """Looks up referenced resources and keeps one client per resource version."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(kube)
        self._brokers: dict[str, tuple[str, ResolvedBroker]] = {}

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
        key = naming.reference_key(ref.kind, scope, ref.name)
        if spec.kafka is not None:
            secret = self._secret(spec.kafka.admin_secret_ref, scope, ("username", "password"), where)
            ca_ref = spec.kafka.ca_secret_ref
        else:
            assert spec.pulsar is not None
            secret = self._secret(spec.pulsar.admin_secret_ref, scope, ("token", "signingKey"), where)
            ca_ref = spec.pulsar.ca_secret_ref
        ca_pem = None if ca_ref is None else self._ca(ca_ref, scope, where)
        registry = self._registry_settings(spec, scope, where)
        version = fingerprint(
            {
                **spec_version(body),
                **secret,
                "ca": ca_pem or "",
                "registry": repr(registry),
                "registryPassword": registry.password.get_secret_value() if registry and registry.password else "",
                "registryClientPassword": (
                    registry.client_password.get_secret_value() if registry and registry.client_password else ""
                ),
            }
        )
        with self._lock:
            cached = self._brokers.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            resolved = ResolvedBroker(key, spec, *_backend(spec, secret, ca_pem, registry))
            self._brokers[key] = (version, resolved)
            return resolved

    def _registry_settings(self, spec: BrokerSpec, scope: str | None, where: str) -> RegistrySettings | None:
        """A Kafka broker's schema registry, with its credential and CA from their Secrets."""
        registry = spec.kafka.schema_registry if spec.kafka is not None else None
        if registry is None:
            return None
        username, password = self._basic_auth(registry.credentials_secret_ref, scope, where)
        client_username, client_password = self._basic_auth(registry.client_credentials_secret_ref, scope, where)
        ca_pem = None if registry.ca_secret_ref is None else self._ca(registry.ca_secret_ref, scope, where)
        return RegistrySettings(
            registry.url, username, password, ca_pem, client_username=client_username, client_password=client_password
        )

    def _basic_auth(
        self, ref: SecretKeyRef | None, scope: str | None, where: str
    ) -> tuple[str | None, SecretStr | None]:
        """`username` and `password` of a registry credential Secret; (None, None) when not referenced."""
        if ref is None:
            return None, None
        found = self._secret(ref, scope, ("username", "password"), where)
        return found["username"], SecretStr(found["password"])

    def broker_by_key(self, key: str) -> ResolvedBroker:
        """A broker recorded in a claim, whoever may use it now: for cleanup of what was created."""
        kind, scope, name = naming.parse_reference_key(key)
        return self.broker(BrokerRef.model_validate({"kind": kind, "name": name}), scope, check_namespace=False)

    def airflow_by_key(self, key: str) -> ResolvedAirflow:
        """An Airflow instance recorded in a claim, whoever may use it now."""
        kind, scope, name = naming.parse_reference_key(key)
        return self.airflow(
            AirflowInstanceRef.model_validate({"kind": kind, "name": name}), scope, check_namespace=False
        )

    def _ca(self, ref: SecretKeyRef, scope: str | None, where: str) -> str:
        """The `ca.crt` of a caSecretRef, refused here when it is not a PEM certificate."""
        ca_pem = self._secret(ref, scope, (secrets.CA_KEY,), where)[secrets.CA_KEY]
        problem = ca_problem(ca_pem)
        if problem is not None:
            raise UnresolvedReferenceError(
                "SecretIncomplete", f"{where}: key {secrets.CA_KEY} of Secret {ref.name} is unusable: {problem}"
            )
        return ca_pem


def _backend(
    spec: BrokerSpec, secret: dict[str, str], ca_pem: str | None, registry: RegistrySettings | None
) -> tuple[BrokerBackend, SchemaStore | None]:
    """Admin client and client endpoint of a broker, and its schema registry; `ca_pem` (from
    caSecretRef) verifies its TLS."""
    if spec.kafka is not None:
        kafka = spec.kafka
        admin = KafkaAdmin(
            KafkaAdminSettings(
                bootstrap_servers=kafka.bootstrap_servers,
                security_protocol=kafka.security_protocol,
                sasl_mechanism=kafka.sasl_mechanism,
                username=secret["username"],
                password=SecretStr(secret["password"]),
                ca_pem=ca_pem,
                max_calls_per_second=spec.max_admin_calls_per_second,
            )
        )
        endpoint = secrets.KafkaEndpoint(
            kafka.bootstrap_servers, kafka.security_protocol, kafka.sasl_mechanism, ca_pem=ca_pem
        )
        schemas = None if registry is None else ConfluentRegistry(registry)
        return KafkaBackend(admin, endpoint, kafka.default_replication_factor), schemas
    assert spec.pulsar is not None
    pulsar = spec.pulsar
    admin_settings = PulsarAdminSettings(
        admin_url=pulsar.admin_url,
        admin_token=SecretStr(secret["token"]),
        signing_key=SecretStr(secret["signingKey"]),
        tenant=pulsar.tenant,
        cluster=pulsar.cluster,
        ca_pem=ca_pem,
        max_calls_per_second=spec.max_admin_calls_per_second,
    )
    pulsar_admin = PulsarAdmin(admin_settings)
    backend = PulsarBackend(
        pulsar_admin,
        secrets.PulsarEndpoint(pulsar.service_url, ca_pem=ca_pem),
        SecretStr(secret["signingKey"]),
        pulsar.tenant,
        pulsar.namespace_template,
    )
    return backend, PulsarSchemas(pulsar_admin)
