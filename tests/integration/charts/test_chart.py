"""The Helm chart against the real API server of the local stack.

`helm lint` and `helm template` for the default and the fully loaded values; a server-side
dry-run of what they render; a real `helm install` and `helm uninstall`. The stack has no
kubelet and no scheduler, so the Deployments and the StatefulSet are created but their pods
never run: what is checked is that every object is accepted and created, and removed again.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventpipeline.cli import build_parser
from eventpipeline_devenv.stack import StackInfo
from tests.integration.support import Kube, unique

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "eventpipeline-operator"
FULL_VALUES = Path(__file__).with_name("full-values.yaml")
MONITORING_CRDS = Path(__file__).parent / "fixtures" / "monitoring-crds.yaml"
PEERING_CRD = CHART / "crds" / "kopf.dev_clusterkopfpeerings.yaml"
RELEASE_LABEL = "app.kubernetes.io/instance"


class Tools:
    def __init__(self, exports: dict[str, str]) -> None:
        for name in ("HELM", "KUBECTL", "KUBECONFIG"):
            assert name in exports, f"the stack exports no {name}: is the kube component running?"
        self.helm, self.kubectl = exports["HELM"], exports["KUBECTL"]
        self.env = {"KUBECONFIG": exports["KUBECONFIG"], "HOME": str(Path.home()), "PATH": "/usr/bin:/bin"}

    def run(self, command: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            list(command), input=stdin, capture_output=True, text=True, env=self.env, check=False, timeout=180
        )
        if check:
            assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr if not check else result.stdout

    def helm_run(self, *args: str, check: bool = True) -> str:
        return self.run([self.helm, *args], check=check)

    def kubectl_run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return self.run([self.kubectl, *args], stdin=stdin, check=check)

    def template(self, release: str, namespace: str, *values: Path, extra: Sequence[str] = ()) -> list[dict[str, Any]]:
        flags = [arg for path in values for arg in ("-f", str(path))]
        text = self.helm_run("template", release, str(CHART), "--namespace", namespace, *flags, *extra)
        return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def tools(stack: StackInfo) -> Iterator[Tools]:
    tools = Tools(dict(stack.exports))
    existing = tools.kubectl_run("get", "crd", "-o", "name")
    # prometheus-operator's CRDs (stand-ins) and kopf's peering CRD, for the optional objects.
    tools.kubectl_run("apply", "-f", str(MONITORING_CRDS), "-f", str(PEERING_CRD))
    for crd in ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        tools.kubectl_run("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    tools.kubectl_run("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    yield tools
    for crd in ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        if f"customresourcedefinition.apiextensions.k8s.io/{crd}" not in existing:
            tools.kubectl_run("delete", "crd", crd, "--ignore-not-found")


def _kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)


def _workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def _rules(file_name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load((CHART / "files" / "rbac" / file_name).read_text()))


# -- lint and template ---------------------------------------------------------------------------


def test_helm_lint_passes_with_default_and_full_values(tools: Tools) -> None:
    tools.helm_run("lint", "--strict", str(CHART))
    tools.helm_run("lint", "--strict", str(CHART), "-f", str(FULL_VALUES))


def test_default_values_render_controller_listener_and_least_privilege_rbac(tools: Tools) -> None:
    objects = tools.template("ep", "eventpipeline-system")
    assert _kinds(objects) == [
        "ClusterRole/ep-eventpipeline-operator-controller",
        "ClusterRole/ep-eventpipeline-operator-listener",
        "ClusterRoleBinding/ep-eventpipeline-operator-controller",
        "ClusterRoleBinding/ep-eventpipeline-operator-listener",
        "Deployment/ep-eventpipeline-operator-controller",
        "Role/ep-eventpipeline-operator-listener",
        "RoleBinding/ep-eventpipeline-operator-listener",
        "Service/ep-eventpipeline-operator-controller",
        "Service/ep-eventpipeline-operator-listener",
        "ServiceAccount/ep-eventpipeline-operator-controller",
        "ServiceAccount/ep-eventpipeline-operator-listener",
        "StatefulSet/ep-eventpipeline-operator-listener",
    ]
    roles = {o["metadata"]["name"]: o["rules"] for o in objects if o["kind"] == "ClusterRole"}
    assert roles["ep-eventpipeline-operator-controller"] == _rules("controller.yaml")
    assert roles["ep-eventpipeline-operator-listener"] == _rules("listener.yaml")
    own_namespace = next(o for o in objects if o["kind"] == "Role")
    assert own_namespace["metadata"]["namespace"] == "eventpipeline-system"
    assert own_namespace["rules"] == _rules("listener-namespace.yaml")
    controller = next(o for o in objects if o["kind"] == "Deployment")
    assert controller["spec"]["replicas"] == 1
    assert controller["spec"]["strategy"] == {"type": "Recreate"}
    assert controller["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")


def test_full_values_render_every_optional_object(tools: Tools) -> None:
    objects = tools.template("ep", "eventpipeline-system", FULL_VALUES)
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == [
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "StatefulSet",
    ]
    role = next(o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-controller"))
    assert role["rules"] == _rules("controller.yaml") + _rules("peering.yaml")
    dedicated = [
        o
        for o in objects
        if o["kind"] == "Deployment" and "eventpipeline.dev/pipeline" in o["metadata"].get("annotations", {})
    ]
    assert sorted(o["metadata"]["annotations"]["eventpipeline.dev/pipeline"] for o in dedicated) == [
        "payments/ledger-events",
        "shop/orders",
    ]
    dashboard = next(o for o in objects if o["kind"] == "ConfigMap")
    assert json.loads(dashboard["data"]["eventpipeline.json"])["uid"] == "eventpipeline"
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["team"] == "platform"


@pytest.mark.parametrize("values", [(), (FULL_VALUES,)], ids=["default", "full"])
def test_every_workload_is_restricted_and_its_arguments_parse(tools: Tools, values: tuple[Path, ...]) -> None:
    """Pods meet the restricted Pod Security Standard, and the CLI accepts what the chart passes."""
    parser = build_parser()
    for workload in _workloads(tools.template("ep", "eventpipeline-system", *values)):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108 - the pod's emptyDir
            assert container["resources"]["requests"], f"{workload['metadata']['name']} has no resource requests"
            # $(VAR) is expanded by the kubelet; the ordinal of a StatefulSet pod is a small number.
            args = [re.sub(r"\$\(EVENTPIPELINE_LISTENER_ORDINAL\)", "2", arg) for arg in container["args"]]
            parsed = parser.parse_args(args)
            if parsed.command == "listen":
                port = container["ports"][0]["containerPort"]
                assert parsed.metrics_port == port
                if workload["kind"] == "StatefulSet":
                    assert parsed.replicas == workload["spec"]["replicas"]
                    assert not parsed.dedicated
                else:
                    assert parsed.dedicated and parsed.replica_index == 0
            else:
                assert parsed.command == "run"
                ports = {port["name"]: port["containerPort"] for port in container["ports"]}
                assert parsed.liveness.endswith(f":{ports['health']}/healthz")
                assert parsed.metrics_port == ports["metrics"]


def test_a_typo_or_a_wrong_type_in_values_fails_with_its_path(tools: Tools) -> None:
    typo = tools.helm_run("template", "ep", str(CHART), "--set", "controller.replica=2", check=False)
    assert "additional properties 'replica' not allowed" in typo, typo
    wrong_type = tools.helm_run("template", "ep", str(CHART), "--set", "listener.metricsPort=metrics", check=False)
    assert "/listener/metricsPort" in wrong_type, wrong_type
    two = tools.helm_run("template", "ep", str(CHART), "--set", "controller.replicas=2", check=False)
    assert "/controller/replicas" in two, two
    twice = tools.helm_run(
        "template",
        "ep",
        str(CHART),
        "--set",
        "listener.dedicated[0].pipeline=a/b",
        "--set",
        "listener.dedicated[1].pipeline=a/b",
        "--set",
        "listener.dedicated[1].resources.limits.memory=1Gi",
        check=False,
    )
    assert "pipeline a/b is listed twice" in twice, twice


# -- against the API server -----------------------------------------------------------------------


@pytest.mark.parametrize("values", [(), (FULL_VALUES,)], ids=["default", "full"])
def test_rendered_manifests_pass_a_server_side_dry_run(tools: Tools, namespace: str, values: tuple[Path, ...]) -> None:
    text = tools.helm_run(
        "template", unique("dry"), str(CHART), "--namespace", namespace, *[a for v in values for a in ("-f", str(v))]
    )
    output = tools.kubectl_run("apply", "--dry-run=server", "--namespace", namespace, "-f", "-", stdin=text)
    assert "(server dry run)" in output
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    assert output.count("(server dry run)") == len(objects), output


def _release_objects(tools: Tools, release: str, namespace: str) -> list[str]:
    selector = f"{RELEASE_LABEL}={release}"
    namespaced = (
        "deployments,statefulsets,services,serviceaccounts,configmaps,networkpolicies,servicemonitors,"
        "prometheusrules,roles,rolebindings"
    )
    found = tools.kubectl_run("get", namespaced, "-n", namespace, "-l", selector, "-o", "name").split()
    cluster = "clusterroles,clusterrolebindings,clusterkopfpeerings"
    found += tools.kubectl_run("get", cluster, "-l", selector, "-o", "name").split()
    return sorted(found)


def test_helm_install_creates_everything_and_uninstall_leaves_only_what_the_user_owns(
    tools: Tools, kube: Kube, namespace: str
) -> None:
    release = unique("ep")
    tools.helm_run(
        "install", release, str(CHART), "--namespace", namespace, "-f", str(FULL_VALUES),
        "--set", f"fullnameOverride={release}", "--set", f"controller.peering.name={release}",
    )  # fmt: skip
    status = json.loads(tools.helm_run("status", release, "--namespace", namespace, "-o", "json"))
    assert status["info"]["status"] == "deployed"
    assert "docs/troubleshooting.md" in status["info"]["notes"]
    created = _release_objects(tools, release, namespace)
    expected = [
        f"clusterkopfpeering.kopf.dev/{release}",
        f"clusterrole.rbac.authorization.k8s.io/{release}-controller",
        f"clusterrole.rbac.authorization.k8s.io/{release}-listener",
        f"clusterrolebinding.rbac.authorization.k8s.io/{release}-controller",
        f"clusterrolebinding.rbac.authorization.k8s.io/{release}-listener",
        f"configmap/{release}-dashboard",
        f"deployment.apps/{release}-controller",
        f"networkpolicy.networking.k8s.io/{release}-controller",
        f"networkpolicy.networking.k8s.io/{release}-listener",
        f"prometheusrule.monitoring.coreos.com/{release}",
        f"role.rbac.authorization.k8s.io/{release}-listener",
        f"rolebinding.rbac.authorization.k8s.io/{release}-listener",
        f"service/{release}-controller",
        f"service/{release}-listener",
        "serviceaccount/ep-full-listener",
        "serviceaccount/ep-full-operator",
        f"servicemonitor.monitoring.coreos.com/{release}-controller",
        f"servicemonitor.monitoring.coreos.com/{release}-listener",
        f"statefulset.apps/{release}-listener",
    ]
    dedicated = [name for name in created if name.startswith(f"deployment.apps/{release}-dl-")]
    assert len(dedicated) == 2, created
    assert sorted(set(created) - set(dedicated)) == expected
    # What the user owns: a pipeline (suspended, so that a controller of another test leaves it be).
    kube.create_pipeline(
        namespace, "mine", {"brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"}, "suspend": True}
    )

    tools.helm_run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m")
    assert _release_objects(tools, release, namespace) == []
    assert kube.get_pipeline(namespace, "mine") is not None, "helm uninstall must not delete users' pipelines"
    crds = tools.kubectl_run("get", "crd", "-o", "name")
    # Helm never deletes CRDs (that would delete every user's resources): docs/install-helm.md.
    assert "customresourcedefinition.apiextensions.k8s.io/eventpipelines.eventpipeline.dev" in crds
    assert "release: not found" in tools.helm_run("status", release, "--namespace", namespace, check=False)


def test_kind_script_waits_for_the_deployment_the_chart_creates(tools: Tools) -> None:
    script = (REPO / "deploy" / "kind" / "up.sh").read_text()
    release = re.search(r"helm upgrade --install (\S+) ", script)
    rollout = re.search(r"rollout status deployment/(\S+)", script)
    assert release and rollout
    objects = tools.template(release.group(1), "eventpipeline-system")
    assert f"Deployment/{rollout.group(1)}" in _kinds(objects)
