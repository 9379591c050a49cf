"""Make the local stack usable at once: CRDs installed, and its brokers and Airflow registered.

After `dev up`, the cluster holds `ClusterBroker/local-kafka`, `ClusterBroker/local-pulsar` and
`ClusterAirflowInstance/local`, with their admin Secrets in `eventpipeline-system`, open to every
namespace, so an example pipeline needs nothing filled in. The brokers are registered with
their TLS endpoints (Kafka SASL_SSL, Pulsar pulsar+ssl:// and https://) and `caSecretRef`
naming the Secret `local-broker-ca` (key `ca.crt`), as a production cluster would be; their
plaintext listeners stay up for tests that talk to the brokers directly.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from eventpipeline import crdgen
from eventpipeline.api.common import API_VERSION
from eventpipeline.api.resources import ALL_KINDS
from eventpipeline_devenv.runtime import Layout, Reporter, run_logged

SYSTEM_NAMESPACE = "eventpipeline-system"
KAFKA_BROKER = "local-kafka"
PULSAR_BROKER = "local-pulsar"
AIRFLOW_INSTANCE = "local"
BROKER_CA_SECRET = "local-broker-ca"  # noqa: S105 - the name of a Secret, not a secret


def _secret(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE},
        "type": "Opaque",
        "stringData": dict(data),
    }


def _cluster_object(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}


def local_objects(exports: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Secrets and resources that describe the running stack, for the components it has."""
    objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}}]
    ca_file = exports.get("KAFKA_CA_FILE") or exports.get("PULSAR_CA_FILE")
    ca_ref = {"name": BROKER_CA_SECRET, "namespace": SYSTEM_NAMESPACE}
    if ca_file:
        objects.append(_secret(BROKER_CA_SECRET, {"ca.crt": Path(ca_file).read_text()}))
    if "KAFKA_BOOTSTRAP_SERVERS" in exports:
        secret = f"{KAFKA_BROKER}-admin"
        objects.append(
            _secret(secret, {"username": exports["KAFKA_ADMIN_USER"], "password": exports["KAFKA_ADMIN_PASSWORD"]})
        )
        objects.append(
            _cluster_object(
                "ClusterBroker",
                KAFKA_BROKER,
                {
                    "type": "Kafka",
                    "allowedNamespaces": ["*"],
                    "kafka": {
                        "bootstrapServers": exports["KAFKA_TLS_BOOTSTRAP_SERVERS"],
                        "securityProtocol": "SASL_SSL",
                        "saslMechanism": "SCRAM-SHA-512",
                        "caSecretRef": ca_ref,
                        "adminSecretRef": {"name": secret, "namespace": SYSTEM_NAMESPACE},
                        "defaultReplicationFactor": 1,
                        **(
                            {"schemaRegistry": {"url": exports["SCHEMA_REGISTRY_URL"]}}
                            if "SCHEMA_REGISTRY_URL" in exports
                            else {}
                        ),
                    },
                },
            )
        )
    if "PULSAR_ADMIN_URL" in exports:
        secret = f"{PULSAR_BROKER}-admin"
        key = Path(exports["PULSAR_TOKEN_SECRET_KEY_FILE"]).read_bytes()
        objects.append(
            _secret(secret, {"token": exports["PULSAR_ADMIN_TOKEN"], "signingKey": base64.b64encode(key).decode()})
        )
        objects.append(
            _cluster_object(
                "ClusterBroker",
                PULSAR_BROKER,
                {
                    "type": "Pulsar",
                    "allowedNamespaces": ["*"],
                    "pulsar": {
                        "serviceUrl": exports["PULSAR_TLS_SERVICE_URL"],
                        "adminUrl": exports["PULSAR_TLS_ADMIN_URL"],
                        "caSecretRef": ca_ref,
                        "adminSecretRef": {"name": secret, "namespace": SYSTEM_NAMESPACE},
                        "cluster": exports.get("PULSAR_CLUSTER", "standalone"),
                    },
                },
            )
        )
    if "AIRFLOW_API_URL" in exports:
        secret = f"airflow-{AIRFLOW_INSTANCE}-admin"
        objects.append(
            _secret(secret, {"username": exports["AIRFLOW_USERNAME"], "password": exports["AIRFLOW_PASSWORD"]})
        )
        objects.append(
            _cluster_object(
                "ClusterAirflowInstance",
                AIRFLOW_INSTANCE,
                {
                    "apiUrl": exports["AIRFLOW_API_URL"],
                    "allowedNamespaces": ["*"],
                    "credentialsSecretRef": {"name": secret, "namespace": SYSTEM_NAMESPACE},
                },
            )
        )
    return objects


def register(layout: Layout, report: Reporter, exports: Mapping[str, str]) -> None:
    """Install the CRDs (generated from the models) and the local stack's resources."""
    kubectl = [exports["KUBECTL"], "--kubeconfig", exports["KUBECONFIG"]]
    log = layout.log_path("register")
    work = layout.data_dir("register")
    crds = work / "crds.yaml"
    crds.write_text("---\n".join(crdgen.render(kind) for kind in ALL_KINDS))
    report.step("register", "installing the EventPipeline CRDs")
    run_logged("register", [*kubectl, "apply", "--server-side", "-f", crds], log)
    names = [f"crd/{kind.plural}.{API_VERSION.split('/')[0]}" for kind in ALL_KINDS]
    run_logged("register", [*kubectl, "wait", "--for=condition=Established", "--timeout=60s", *names], log)
    objects = work / "local-stack.yaml"
    objects.write_text(yaml.safe_dump_all(local_objects(exports), sort_keys=False))
    objects.chmod(0o600)
    report.step("register", "registering ClusterBroker/local-kafka, local-pulsar, ClusterAirflowInstance/local")
    run_logged("register", [*kubectl, "apply", "--server-side", "-f", objects], log)
