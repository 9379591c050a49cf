"""The local Kubernetes control plane behaves like a real cluster for what the operator uses:
version reporting, CRDs and watches, garbage collection, namespace deletion, kubectl and helm."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from eventpipeline_devenv.kube import HELM_VERSION, KUBERNETES_VERSION
from eventpipeline_devenv.stack import StackInfo

pytestmark = pytest.mark.integration

GROUP = "devenv-test.eventpipeline.io"
PLURAL = "gadgets"


@pytest.fixture(scope="module")
def api(stack: StackInfo) -> Iterator[client.ApiClient]:
    kubeconfig = stack.exports.get("KUBECONFIG")
    assert kubeconfig, f"the stack exports no KUBECONFIG (exports: {sorted(stack.exports)})"
    api_client: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"devenv-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def is_gone(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def tool_environment(stack: StackInfo) -> dict[str, str]:
    return {
        **os.environ,
        "KUBECONFIG": stack.exports["KUBECONFIG"],
    }


def test_apiserver_reports_the_pinned_kubernetes_version(api: client.ApiClient) -> None:
    info = client.VersionApi(api).get_code()
    assert info.git_version == KUBERNETES_VERSION
    assert (info.major, info.minor) == ("1", KUBERNETES_VERSION.split(".")[1])


@pytest.fixture
def gadget_crd(api: client.ApiClient) -> Iterator[str]:
    extensions = client.ApiextensionsV1Api(api)
    name = f"{PLURAL}.{GROUP}"
    crd: Any = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
                        }
                    },
                }
            ],
        },
    }
    extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        status: Any = extensions.read_custom_resource_definition(name).status
        return any(c.type == "Established" and c.status == "True" for c in (status.conditions or []))

    wait_for(established, f"CRD {name} to be established")
    yield name
    extensions.delete_custom_resource_definition(name)


def test_custom_object_is_created_read_and_its_change_is_watched(
    api: client.ApiClient, gadget_crd: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 1}}
    created: Any = objects.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, body)
    read: Any = objects.get_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "g1")
    assert read["spec"] == {"size": 1}

    objects.patch_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "g1", {"spec": {"size": 2}})
    watcher = watch.Watch()  # type: ignore[no-untyped-call]
    seen: list[tuple[str, int]] = []
    event: Any
    for event in watcher.stream(  # type: ignore[no-untyped-call]
        objects.list_namespaced_custom_object,
        GROUP,
        "v1",
        namespace,
        PLURAL,
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=10,
    ):
        seen.append((event["type"], event["object"]["spec"]["size"]))
        if event["type"] == "MODIFIED":
            watcher.stop()  # type: ignore[no-untyped-call]
    assert ("MODIFIED", 2) in seen, f"the watch saw {seen}"


def test_owned_object_is_garbage_collected_when_its_owner_is_deleted(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner: Any = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[reference])),
    )
    core.delete_namespaced_config_map("owner", namespace)
    wait_for(
        lambda: is_gone(lambda: core.read_namespaced_config_map("owned", namespace)),
        "the controller-manager's garbage collector to delete the owned ConfigMap",
    )


def test_namespace_deletion_completes(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"devenv-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content")))
    core.delete_namespace(name)
    wait_for(
        lambda: is_gone(lambda: core.read_namespace(name)),
        f"namespace {name} to leave Terminating (the namespace controller must empty it)",
        timeout=60,
    )


def test_kubectl_talks_to_the_server(stack: StackInfo) -> None:
    result = subprocess.run(
        [stack.exports["KUBECTL"], "version", "-o", "json"],
        env=tool_environment(stack),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    assert versions["clientVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert versions["serverVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_helm_installs_a_chart_with_a_kube_version_constraint(
    stack: StackInfo, namespace: str, tmp_path: Path, api: client.ApiClient
) -> None:
    version = subprocess.run(
        [stack.exports["HELM"], "version", "--short"], capture_output=True, text=True, timeout=30, check=False
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(HELM_VERSION), version.stdout

    # The constraint only passes when the server's /version carries the real gitVersion.
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  release: {{ .Release.Name }}\n"
    )
    env = {
        **tool_environment(stack),
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
    }
    install = subprocess.run(
        [
            stack.exports["HELM"],
            "install",
            "probe",
            str(chart),
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "30s",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    configmap = client.CoreV1Api(api).read_namespaced_config_map("probe", namespace)
    assert configmap.data == {"release": "probe"}
