"""The chart's alerts, as Prometheus evaluates them: `promtool check rules` and `promtool test rules`.

The rules are rendered from the chart (`helm template`, default values), so what is tested is what
a PrometheusRule installs. promtool and helm are the project's own builds from the Go module proxy
(`eventpipeline_devenv.prometheus`, `eventpipeline_devenv.kube`), cached after the first build.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from eventpipeline_devenv import monitoring, prometheus
from eventpipeline_devenv.kube import KubeComponent
from eventpipeline_devenv.runtime import Layout, Reporter

TESTS = Path(__file__).parent / "promtool" / "alerts_test.yaml"


@pytest.fixture(scope="module")
def helm() -> Path:
    """helm from the project's own cached build (built first when missing)."""
    KubeComponent().install(Layout.from_environment(), Reporter())
    return prometheus.helm_path(Layout.from_environment())


@pytest.fixture(scope="module")
def rules(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(promtool, folder holding the rendered rule file and the test file)."""
    layout = Layout.from_environment()
    prometheus.PrometheusComponent().install(layout, Reporter())
    folder = tmp_path_factory.mktemp("alerts")
    monitoring.write_rules(folder / "alerts.rules.yaml", monitoring.render(helm))
    shutil.copy(TESTS, folder / TESTS.name)
    return prometheus.binaries_dir(layout) / "promtool", folder


def _promtool(promtool: Path, folder: Path, *args: str) -> str:
    result = subprocess.run(
        [str(promtool), *args], cwd=folder, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_chart_alert_rules_pass_promtool_check(rules: tuple[Path, Path]) -> None:
    promtool, folder = rules
    output = _promtool(promtool, folder, "check", "rules", "alerts.rules.yaml")
    assert "SUCCESS" in output


def test_every_alert_fires_and_stays_quiet_as_its_promtool_tests_expect(rules: tuple[Path, Path]) -> None:
    promtool, folder = rules
    output = _promtool(promtool, folder, "test", "rules", TESTS.name)
    assert "SUCCESS" in output


def test_every_alert_of_the_chart_has_a_promtool_test(rules: tuple[Path, Path]) -> None:
    _, folder = rules
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((folder / "alerts.rules.yaml").read_text())["groups"]
        for rule in group["rules"]
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts, "the chart renders no alert"
    assert alerts <= tested, f"alerts never seen firing in {TESTS.name}: {sorted(alerts - tested)}"


def test_the_alerts_cover_lag_dead_letters_rotation_listener_and_reconciliation(rules: tuple[Path, Path]) -> None:
    _, folder = rules
    text = (folder / "alerts.rules.yaml").read_text()
    for metric in (
        "eventpipeline_listener_consumer_lag",
        "eventpipeline_listener_dead_lettered_total",
        "eventpipeline_credential_next_rotation_timestamp_seconds",
        'up{service="eventpipeline-operator-listener"}',
        "eventpipeline_reconcile_errors_total",
    ):
        assert metric in text, f"no alert reads {metric}"


def test_scrape_jobs_label_targets_as_the_chart_service_monitors_imply(helm: Path, tmp_path: Path) -> None:
    rendered = monitoring.render(helm)
    jobs = {job["job_name"]: job for job in rendered.scrape_configs(tmp_path)}
    for monitor in rendered.of_kind("ServiceMonitor"):
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        (endpoint,) = monitor["spec"]["endpoints"]
        job = jobs[f"serviceMonitor/{monitoring.NAMESPACE}/{monitor['metadata']['name']}/0"]
        labels = {rule["target_label"]: rule["replacement"] for rule in job["relabel_configs"]}
        service = f"{monitoring.RELEASE}-{component}"
        assert labels == {
            "job": service,
            "service": service,
            "namespace": monitoring.NAMESPACE,
            "endpoint": endpoint["port"],
            "container": component,
        }
        assert (job["metrics_path"], job["scrape_interval"]) == (endpoint["path"], endpoint["interval"])
        assert job["file_sd_configs"] == [{"files": [str(tmp_path / f"{component}-*.json")]}]


def test_an_announced_process_is_a_target_file_of_its_component(tmp_path: Path) -> None:
    path = monitoring.announce(tmp_path, "listener", "listener-0", 9102)
    assert path.name == "listener-listener-0.json"
    assert json.loads(path.read_text()) == [{"targets": ["127.0.0.1:9102"], "labels": {"pod": "listener-0"}}]
    monitoring.withdraw(path)
    assert monitoring.announced(tmp_path) == []
    with pytest.raises(ValueError, match="component"):
        monitoring.announce(tmp_path, "scheduler", "x", 1)
