"""Every file in examples/ is applied against the real stack and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.support import Kube, eventually

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def kubectl(stack: Any, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exports = stack.exports
    return subprocess.run(
        [exports["KUBECTL"], "--kubeconfig", exports["KUBECONFIG"], *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def airflow_get(exports: dict[str, str], path: str) -> httpx.Response:
    token = httpx.post(
        f"{exports['AIRFLOW_API_URL']}/auth/token",
        json={"username": exports["AIRFLOW_USERNAME"], "password": exports["AIRFLOW_PASSWORD"]},
        timeout=15,
    ).json()["access_token"]
    return httpx.get(f"{exports['AIRFLOW_API_URL']}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=15)


def write_example_dag(exports: dict[str, str], namespace: str | None = None) -> None:
    """Put the example DAG in Airflow's folder; with `namespace`, its owner also accepts that
    namespace's pipelines (the test's namespace is random, the example names demo and shop)."""
    text = (EXAMPLES / "dags" / "process_event.py").read_text()
    if namespace is not None:
        assert text.count('tags=["eventpipeline",') == 1
        text = text.replace('tags=["eventpipeline",', f'tags=["eventpipeline", "eventpipeline:{namespace}",')
    folder = Path(exports["AIRFLOW_DAGS_FOLDER"])
    tmp = folder / ".process_event.py.tmp"
    tmp.write_text(text)
    tmp.replace(folder / "process_event.py")


def test_example_pipelines_become_ready_and_produce_with_the_snippet(
    stack: Any, kube: Kube, operator: Any, namespace: str
) -> None:
    write_example_dag(dict(stack.exports), namespace)
    for file_name, name, producer in (
        ("kafka-pipeline.yaml", "orders", "checkout"),
        ("pulsar-pipeline.yaml", "payments", "billing"),
    ):
        applied = kubectl(stack, "apply", "-n", namespace, "-f", str(EXAMPLES / file_name))
        assert applied.returncode == 0, applied.stderr
        kube.wait_condition(namespace, name, "Ready", "True")
        topic = kube.get_pipeline(namespace, name)["status"]["topic"]  # type: ignore[index]
        env = {**os.environ, "KUBECONFIG": stack.exports["KUBECONFIG"]}
        produced = subprocess.run(
            [sys.executable, str(EXAMPLES / "produce.py"), namespace, f"{name}.{producer}.credentials", topic, "{}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert produced.returncode == 0, produced.stderr
        assert f"produced to {topic}" in produced.stdout


def test_example_brokers_and_airflow_instance_are_accepted(stack: Any, kube: Kube, operator: Any) -> None:
    """They point at clusters that do not exist here: accepted by the API server, then reported
    as unreachable in their Ready condition instead of failing silently."""
    for path in sorted((EXAMPLES / "brokers").glob("*.yaml")):
        applied = kubectl(stack, "apply", "--server-side", "-f", str(path))
        assert applied.returncode == 0, f"{path.name}: {applied.stderr}"
    for plural, name in (
        ("clusterbrokers", "kafka-main"),
        ("clusterbrokers", "pulsar-main"),
        ("clusterairflowinstances", "main"),
    ):

        def ready(plural: str = plural, name: str = name) -> dict[str, Any] | None:
            body = kube.custom.get_cluster_custom_object("eventpipeline.dev", "v1alpha1", plural, name)
            return next((c for c in body.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)

        condition = eventually(ready, timeout=90, what=f"a Ready condition on {plural}/{name}")
        assert condition["status"] == "False" and condition["message"], condition
    for path in sorted((EXAMPLES / "brokers").glob("*.yaml")):
        kubectl(stack, "delete", "--wait=false", "-f", str(path))


def test_example_dag_is_parsed_by_airflow(stack: Any) -> None:
    exports = dict(stack.exports)
    write_example_dag(exports)
    eventually(
        lambda: airflow_get(exports, "/api/v2/dags/process_event").status_code == 200,
        timeout=120,
        what="Airflow to parse the example DAG",
    )
    errors = airflow_get(exports, "/api/v2/importErrors").json()
    assert not [e for e in errors.get("import_errors", []) if "process_event" in e.get("filename", "")]
    tags = {tag["name"] for tag in airflow_get(exports, "/api/v2/dags/process_event").json()["tags"]}
    assert {"eventpipeline:demo", "eventpipeline:shop"} <= tags  # what make demo and the README use
    assert "eventpipeline:*" not in tags  # nothing is open by default


def test_example_manifests_are_valid_yaml_of_our_kinds() -> None:
    for path in EXAMPLES.rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["apiVersion"] in ("v1", "eventpipeline.dev/v1alpha1"), path
