"""Prometheus for the local stack (optional: `eventpipeline dev up --with prometheus`).

Built from the Go module proxy like the control plane: `resources/prometheus` is a wrapper module
whose go.mod and go.sum pin `github.com/prometheus/prometheus` v0.316.0 (Prometheus 3.16.0) and
every dependency; `cmd/prometheus` and `cmd/promtool` are built with `CGO_ENABLED=0` and the
version stamped as Prometheus' own release build does. The web UI's assets are not built (they
need Node.js): the HTTP API, which is what the tests and `eventpipeline top` use, is complete.

It scrapes the controller and the listener with the jobs and labels the chart's ServiceMonitors
imply and evaluates the chart's alert rules (`monitoring`). The controller and the listener are
local processes started after the stack: they announce their metrics port in the targets folder
(`announce`), which Prometheus watches.
"""

from __future__ import annotations

import fcntl
import importlib.resources
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from eventpipeline_devenv import kube, monitoring
from eventpipeline_devenv.runtime import (
    ComponentError,
    Layout,
    Reporter,
    port_from_env,
    run_logged,
    start_process,
    wait_until,
)

NAME = "prometheus"
MODULE = "github.com/prometheus/prometheus"
MODULE_VERSION = "v0.316.0"
VERSION = "3.16.0"
# The release time the module proxy reports for v0.316.0: fixed, so the binaries are reproducible.
BUILD_DATE = "20261105-15:06:51"
BINARIES = ("prometheus", "promtool")
# Pure-Go DNS resolver (as release builds), and no service-discovery plugin but the built-in file
# and static ones: `remove_all_sd` leaves out the cloud SDKs (AWS, Azure, GCE, Kubernetes, ...),
# most of a cold build's packages. The local stack discovers its targets from files.
BUILD_TAGS = "netgo,remove_all_sd"
EVALUATION_INTERVAL = "5s"
RETENTION = "1d"
INSTALL_TIMEOUT_SECONDS = 60 * 60
START_TIMEOUT_SECONDS = 60.0
HEALTH_TIMEOUT_SECONDS = 2.5
URL_EXPORT = "PROMETHEUS_URL"
TARGETS_EXPORT = "PROMETHEUS_TARGETS_DIR"


class PrometheusComponent:
    """One Prometheus server on loopback with the chart's scrape jobs and alert rules."""

    name = NAME
    version = VERSION

    def install(self, layout: Layout, report: Reporter) -> None:
        # Test sessions running side by side (the rule tests build promtool too) build it once.
        bin_dir = binaries_dir(layout)
        bin_dir.mkdir(parents=True, exist_ok=True)
        with (bin_dir.parent / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._install(layout, report, bin_dir)

    def _install(self, layout: Layout, report: Reporter, bin_dir: Path) -> None:
        marker = bin_dir.parent / ".installed"
        if marker.exists() and marker.read_text() == MODULE_VERSION:
            report.step(NAME, f"binaries cached in {bin_dir}")
            return
        go = shutil.which("go")
        if go is None:
            raise ComponentError(NAME, "the Go toolchain (go ≥ 1.26.7) is needed to build Prometheus")
        module = _copy_wrapper(bin_dir.parent / "build")
        log = layout.log_path("prometheus-build")
        report.step(NAME, f"building prometheus and promtool {VERSION} with {go} (cold: see README; log {log})")
        started = time.monotonic()
        for binary in BINARIES:
            if (bin_dir / binary).exists():
                continue  # built by an earlier, interrupted install; each binary lands atomically
            output = bin_dir / f".{binary}.tmp"
            arguments = [
                "build",
                "-tags",
                BUILD_TAGS,
                "-ldflags",
                _ldflags(),
                "-o",
                str(output),
                f"{MODULE}/cmd/{binary}",
            ]
            run_logged(NAME, [go, *arguments], log, cwd=module, env=_go_environment(), timeout=INSTALL_TIMEOUT_SECONDS)
            output.replace(bin_dir / binary)
            report.step(NAME, f"built {binary} after {time.monotonic() - started:.0f}s")
        marker.write_text(MODULE_VERSION)

    def start(self, layout: Layout, report: Reporter) -> Mapping[str, str]:
        data = layout.data_dir(NAME)
        targets = data / "targets"
        targets.mkdir(exist_ok=True)
        port = port_from_env("EVENTPIPELINE_PROMETHEUS_PORT")
        rendered = monitoring.render(helm_path(layout))
        config = data / "prometheus.yml"
        monitoring.write_rules(data / "rules" / "eventpipeline.yaml", rendered)
        config.write_text(yaml.safe_dump(_config(rendered, targets, data / "rules"), sort_keys=False))
        run_logged(NAME, [binaries_dir(layout) / "promtool", "check", "config", config], layout.log_path(NAME))
        url = f"http://127.0.0.1:{port}"
        report.step(NAME, f"starting prometheus {VERSION} on {url}")
        record = start_process(
            layout,
            NAME,
            [
                binaries_dir(layout) / "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data / 'tsdb'}",
                f"--storage.tsdb.retention.time={RETENTION}",
                f"--web.listen-address=127.0.0.1:{port}",
                # Rules and targets are re-read on POST /-/reload (tests change rule settings).
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
        )
        wait_until(
            NAME,
            lambda: httpx.get(f"{url}/-/ready", timeout=HEALTH_TIMEOUT_SECONDS).status_code == 200,
            timeout=START_TIMEOUT_SECONDS,
            what="prometheus /-/ready",
            log_path=Path(record.log_path),
            process=record,
        )
        return {
            URL_EXPORT: url,
            TARGETS_EXPORT: str(targets),
            "PROMTOOL": str(binaries_dir(layout) / "promtool"),
        }

    def healthy(self, exports: Mapping[str, str]) -> bool:
        url = exports.get(URL_EXPORT)
        if not url:
            return False
        try:
            return httpx.get(f"{url}/-/healthy", timeout=HEALTH_TIMEOUT_SECONDS).status_code == 200
        except httpx.HTTPError:
            return False


def binaries_dir(layout: Layout) -> Path:
    return layout.install_dir(NAME, VERSION) / "bin"


def helm_path(layout: Layout) -> Path:
    """helm comes with the control plane's build (the `kube` component)."""
    return layout.install_dir(kube.NAME, kube.KubeComponent.version) / "bin" / "helm"


def reload_rules(layout: Layout, exports: Mapping[str, str], values: Iterable[Mapping[str, Any]] = ()) -> None:
    """Render the chart's rules again with `values` on top (no values: the chart's defaults), and
    make the running Prometheus load them."""
    rules = layout.data_dir(NAME) / "rules"
    monitoring.write_rules(rules / "eventpipeline.yaml", monitoring.render(helm_path(layout), values))
    response = httpx.post(f"{exports[URL_EXPORT]}/-/reload", timeout=30)
    response.raise_for_status()


def _config(rendered: monitoring.Rendered, targets: Path, rules: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": EVALUATION_INTERVAL},
        "rule_files": [str(rules / "*.yaml")],
        "scrape_configs": rendered.scrape_configs(targets),
    }


def _go_environment() -> dict[str, str]:
    return {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-trimpath -mod=readonly", "GOWORK": "off"}


def _copy_wrapper(target: Path) -> Path:
    """The committed go.mod/go.sum, copied into the cache where the build runs."""
    target.mkdir(parents=True, exist_ok=True)
    source = importlib.resources.files("eventpipeline_devenv") / "resources" / NAME
    for name in ("go.mod", "go.sum"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def _ldflags() -> str:
    """Version stamping as Prometheus' release build does it (`prometheus --version`)."""
    package = "github.com/prometheus/common/version"
    values = {
        "Version": VERSION,
        "Revision": MODULE_VERSION,
        "Branch": MODULE_VERSION,
        "BuildUser": "eventpipeline-devenv",
        "BuildDate": BUILD_DATE,
    }
    return " ".join(["-s", "-w", *(f"-X {package}.{key}={value}" for key, value in values.items())])
