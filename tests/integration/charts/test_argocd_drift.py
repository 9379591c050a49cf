"""GitOps: once the operator has reconciled a pipeline, re-applying its manifest changes nothing.

Argo CD shows drift when the live object differs from Git in fields Git sets. The operator must
therefore never write `spec` nor touch what the manifest sets; it writes `status`, and kopf adds
only its finalizer and bookkeeping annotations, which Argo CD's diff ignores. Checked both ways
Argo CD diffs: client-side three-way merge (its default) and server-side apply (ServerSideApply=true).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventpipeline_devenv.stack import StackInfo
from tests.integration.support import Kube, eventually

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "kafka-pipeline.yaml"
ARGOCD_MANAGER = "argocd-controller"


def _kubectl(stack: StackInfo, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {"KUBECONFIG": stack.exports["KUBECONFIG"], "HOME": str(Path.home()), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [stack.exports["KUBECTL"], *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )


def _manifest(name: str) -> str:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["name"] = name
    return yaml.safe_dump(body)


def _reconciled(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = kube.get_pipeline(namespace, name) or {}
        status = body.get("status", {})
        seen = status.get("observedGeneration") == body["metadata"]["generation"]
        has_ready = any(condition["type"] == "Ready" for condition in status.get("conditions", []))
        return body if seen and has_ready and body["metadata"].get("finalizers") else None

    return eventually(check, timeout=90, what=f"the operator to reconcile {namespace}/{name}")


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize("mode", ["client-side", "server-side"])
def test_reapplying_a_reconciled_pipeline_shows_no_drift(
    stack: StackInfo, kube: Kube, namespace: str, tmp_path: Path, mode: str
) -> None:
    name = f"drift-{mode}"
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(_manifest(name))
    flags = ["--server-side", f"--field-manager={ARGOCD_MANAGER}"] if mode == "server-side" else []
    applied = _kubectl(stack, ["apply", *flags, "-n", namespace, "-f", str(manifest)])
    assert applied.returncode == 0, applied.stderr
    before = kube.get_pipeline(namespace, name)
    assert before is not None

    after = _reconciled(kube, namespace, name)
    assert after["spec"] == before["spec"], "the operator changed spec"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]

    diff = _kubectl(stack, ["diff", *flags, "-n", namespace, "-f", str(manifest)])
    assert diff.returncode == 0, f"re-applying the manifest would change the object:\n{diff.stdout}{diff.stderr}"

    kube.delete_pipeline(namespace, name)
    eventually(lambda: kube.get_pipeline(namespace, name) is None, timeout=90, what=f"{name} to be finalized")
