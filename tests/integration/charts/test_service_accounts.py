"""The controller and the listener under the chart's ServiceAccounts, with tokens from the
TokenRequest API instead of an admin kubeconfig: what the chart grants is enough for a
pipeline's whole life, and the listener cannot list Secrets outside its own namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from eventpipeline.planning import naming
from eventpipeline_devenv.airflow_api import AirflowApi
from eventpipeline_devenv.runtime import Layout
from tests.integration.charts.test_chart import CHART, Tools
from tests.integration.conftest import OPEN_DAG, OperatorProcess
from tests.integration.listener.conftest import Listener
from tests.integration.support import GROUP, VERSION, Kube, eventually, kafka_send, unique

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]


def token_kubeconfig(kube: Kube, admin_kubeconfig: str, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount with a TokenRequest token."""
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = kube.core.create_namespaced_service_account_token(account, namespace, request).status.token
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    cluster = admin["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
                "current-context": account,
            }
        )
    )
    return path


@pytest.fixture
def release(stack: Any, kube: Kube, tmp_path: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    """The chart installed in a namespace of its own; kubeconfigs for its two ServiceAccounts."""
    tools = Tools(dict(stack.exports))
    namespace, name = unique("t"), unique("ep")
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    tools.helm_run("install", name, str(CHART), "--namespace", namespace, "--set", f"fullnameOverride={name}")
    accounts = {
        role: token_kubeconfig(
            kube, stack.exports["KUBECONFIG"], namespace, f"{name}-{role}", tmp_path / f"{role}.kubeconfig"
        )
        for role in ("controller", "listener")
    }
    yield namespace, accounts
    tools.helm_run("uninstall", name, "--namespace", namespace, check=False)
    kube.core.delete_namespace(namespace)


def test_controller_and_listener_run_under_the_charts_service_accounts(
    stack: Any, kube: Kube, operator: Any, namespace: str, release: tuple[str, dict[str, Path]]
) -> None:
    listener_namespace, kubeconfigs = release
    exports = {**stack.exports, naming.LISTENER_NAMESPACE_ENV: listener_namespace}
    operator.stop()  # the admin-kubeconfig controller of the session must not do the work instead
    controller = None
    listener = Listener({**exports, "KUBECONFIG": str(kubeconfigs["listener"])}, [], "listener-as-service-account")
    try:
        controller = OperatorProcess(
            {**exports, "KUBECONFIG": str(kubeconfigs["controller"])},
            Layout.from_environment().log_path("controller-as-service-account"),
        )
        spec = {
            "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
            "topic": {"partitions": 1, "deletionPolicy": "Delete"},
            "producers": [{"name": "app"}],
            "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
        }
        kube.create_pipeline(namespace, "least", spec)
        kube.wait_condition(namespace, "least", "Ready", "True", timeout=120)
        # The listener's credential was handed over in the listener's own namespace.
        assert kube.secret(listener_namespace, naming.listener_secret_name(namespace, "least")) is not None

        listener.start()
        producer = kube.secret(namespace, naming.secret_name("least", "app"))
        assert producer is not None
        assert kafka_send(producer, f"{namespace}.least", b'{"n": 1}') is None
        airflow = AirflowApi(stack.exports)
        eventually(
            lambda: any(namespace in run_id for run_id in airflow.runs(OPEN_DAG)),
            timeout=120,
            what="the message's DAG run, triggered by the listener under its ServiceAccount",
        )

        # The listener may read Secrets of its own namespace, and of no other: not a tenant's
        # Secret, not even by name, nor the Airflow instance's credential or the instance itself
        # (the controller handed it what it needs), while the message above became a run.
        listener_client = config.new_client_from_config(config_file=str(kubeconfigs["listener"]))
        listener_api, listener_custom = client.CoreV1Api(listener_client), client.CustomObjectsApi(listener_client)
        listener_api.list_namespaced_secret(listener_namespace)
        airflow_secret = kube.custom.get_cluster_custom_object(GROUP, VERSION, "clusterairflowinstances", "local")[
            "spec"
        ]["credentialsSecretRef"]
        for forbidden in (
            lambda: listener_api.list_namespaced_secret(namespace),
            listener_api.list_secret_for_all_namespaces,
            lambda: listener_api.read_namespaced_secret(naming.secret_name("least", "app"), namespace),
            lambda: listener_api.read_namespaced_secret(airflow_secret["name"], airflow_secret["namespace"]),
            lambda: listener_custom.get_cluster_custom_object(GROUP, VERSION, "clusterairflowinstances", "local"),
        ):
            with pytest.raises(ApiException) as refused:
                forbidden()
            assert refused.value.status == 403

        kube.delete_pipeline(namespace, "least")
        eventually(lambda: kube.get_pipeline(namespace, "least") is None, timeout=90, what="the deletion")
        assert kube.secret(listener_namespace, naming.listener_secret_name(namespace, "least")) is None
    finally:
        listener.stop()
        if controller is not None:
            controller.stop()
        operator.start()
