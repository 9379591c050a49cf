"""The chart's monitoring objects, rendered for a Prometheus that runs without prometheus-operator.

The chart ships ServiceMonitors (controller, listener), a PrometheusRule (the alerts of
`files/alerts.yaml`) and a Grafana dashboard. The local Prometheus and the tests use exactly
those: `helm template` renders the chart, the PrometheusRule's groups become a rule file, and
each ServiceMonitor endpoint becomes a scrape job that sets the labels prometheus-operator would
give its targets (`job` and `service` from the Service, `namespace`, `endpoint`, `container`,
`pod`). The targets themselves are local processes, announced as file-based service discovery
entries (`announce`), since no pod runs on the local stack.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RELEASE = "eventpipeline-operator"
NAMESPACE = "eventpipeline-system"
CHART_VARIABLE = "EVENTPIPELINE_CHART_DIR"
# Settings for a local stack: scrapes every 5 s instead of 30 s, so a change shows in seconds.
LOCAL_VALUES: dict[str, Any] = {
    "listener": {"enabled": True},
    "metrics": {
        "serviceMonitor": {"enabled": True, "interval": "5s", "scrapeTimeout": "4s"},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    },
}
# What a process announces itself as: the chart's component label of its ServiceMonitor.
COMPONENTS = ("controller", "listener")


def chart_dir() -> Path:
    """The repository's chart (this development package is installed from the repository)."""
    configured = os.environ.get(CHART_VARIABLE)
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "charts" / "eventpipeline-operator"
    if not (path / "Chart.yaml").exists():
        raise FileNotFoundError(f"no chart at {path}; set {CHART_VARIABLE}")
    return path


@dataclass(frozen=True)
class Rendered:
    """The chart's monitoring objects as `helm template` renders them."""

    documents: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.documents if doc.get("kind") == kind]

    def rule_groups(self) -> dict[str, Any]:
        """The PrometheusRule's groups: a Prometheus rule file as is."""
        (rule,) = self.of_kind("PrometheusRule")
        return {"groups": rule["spec"]["groups"]}

    def dashboard(self) -> dict[str, Any]:
        (config_map,) = (doc for doc in self.of_kind("ConfigMap") if doc["metadata"]["name"].endswith("-dashboard"))
        data: dict[str, Any] = json.loads(config_map["data"]["eventpipeline.json"])
        return data

    def scrape_configs(self, targets_dir: Path) -> list[dict[str, Any]]:
        """One scrape job per ServiceMonitor endpoint, labelled as prometheus-operator labels its targets."""
        jobs = []
        for monitor in self.of_kind("ServiceMonitor"):
            service = self._selected_service(monitor)
            component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
            container = self._container(component)
            namespace = monitor["metadata"]["namespace"]
            for index, endpoint in enumerate(monitor["spec"]["endpoints"]):
                labels = {
                    "job": service["metadata"]["name"],
                    "service": service["metadata"]["name"],
                    "namespace": namespace,
                    "endpoint": endpoint["port"],
                    "container": container,
                }
                jobs.append(
                    {
                        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/{index}",
                        "metrics_path": endpoint.get("path", "/metrics"),
                        "scrape_interval": endpoint["interval"],
                        "scrape_timeout": endpoint["scrapeTimeout"],
                        "file_sd_configs": [{"files": [str(targets_dir / f"{component}-*.json")]}],
                        "relabel_configs": [
                            {"target_label": name, "replacement": value} for name, value in labels.items()
                        ],
                    }
                )
        return jobs

    def _selected_service(self, monitor: Mapping[str, Any]) -> dict[str, Any]:
        wanted = monitor["spec"]["selector"]["matchLabels"]
        services = [
            doc
            for doc in self.of_kind("Service")
            if all(doc["metadata"].get("labels", {}).get(key) == value for key, value in wanted.items())
            and any(port.get("name") == "metrics" for port in doc["spec"].get("ports", []))
        ]
        if len(services) != 1:
            raise ValueError(f"ServiceMonitor {monitor['metadata']['name']} selects {len(services)} Services")
        return services[0]

    def _container(self, component: str) -> str:
        for deployment in [*self.of_kind("Deployment"), *self.of_kind("StatefulSet")]:
            if deployment["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component:
                return str(deployment["spec"]["template"]["spec"]["containers"][0]["name"])
        raise ValueError(f"the chart renders no workload of component {component}")


def render(helm: Path, values: Iterable[Mapping[str, Any]] = ()) -> Rendered:
    """`helm template` of the chart with the local settings, then `values` on top (later wins)."""
    merged: dict[str, Any] = {}
    for layer in (LOCAL_VALUES, *values):
        merged = _merge(merged, layer)
    command = [str(helm), "template", RELEASE, str(chart_dir()), "--namespace", NAMESPACE]
    for key, value in merged.items():
        command += ["--set-json", f"{key}={json.dumps(value)}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed: {result.stderr.strip()}")
    return Rendered([doc for doc in yaml.safe_load_all(result.stdout) if doc])


def _merge(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """`layer` over `base`, maps merged key by key (as Helm merges values files)."""
    merged = dict(base)
    for key, value in layer.items():
        below = merged.get(key)
        merged[key] = _merge(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return merged


def write_rules(path: Path, rendered: Rendered) -> None:
    _write_atomically(path, yaml.safe_dump(rendered.rule_groups(), sort_keys=False))


def announce(targets_dir: Path, component: str, name: str, port: int) -> Path:
    """Tell the local Prometheus that process `name` of `component` serves metrics on `port`.

    Returns the file to remove (`withdraw`) when the process stops.
    """
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {', '.join(COMPONENTS)}")
    targets_dir.mkdir(parents=True, exist_ok=True)
    path = targets_dir / f"{component}-{name}.json"
    _write_atomically(path, json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"pod": name}}]))
    return path


def withdraw(path: Path) -> None:
    path.unlink(missing_ok=True)


def announced(targets_dir: Path) -> Sequence[Path]:
    return sorted(targets_dir.glob("*.json")) if targets_dir.exists() else []


def _write_atomically(path: Path, text: str) -> None:
    # Prometheus watches these files: a half-written one would be read as an error.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
