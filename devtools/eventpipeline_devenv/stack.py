"""The local stack as a whole: `dev up | down | status | env`.

Components are installed (in parallel: the Go build of Kubernetes dominates a cold start,
the Maven and PyPI downloads can run beside it), then started in order, health-checked, and
their exports written to `stack.json` in the state dir. `dev down` stops only the processes
recorded there.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from eventpipeline_devenv.component import Component
from eventpipeline_devenv.register import register
from eventpipeline_devenv.runtime import (
    Layout,
    Reporter,
    is_running,
    recorded_processes,
    stop_process,
)

# Start order matters: the kube API first (registering the stack in it needs the others'
# addresses only later), then the brokers (Kafka's schema registry beside it) and Airflow.
COMPONENTS: dict[str, str] = {
    "kube": "eventpipeline_devenv.kube:KubeComponent",
    "kafka": "eventpipeline_devenv.kafka:KafkaComponent",
    "schema-registry": "eventpipeline_devenv.schema_registry:SchemaRegistryComponent",
    "pulsar": "eventpipeline_devenv.pulsar:PulsarComponent",
    "airflow": "eventpipeline_devenv.airflow:AirflowComponent",
    "prometheus": "eventpipeline_devenv.prometheus:PrometheusComponent",
}
# Started only when asked for (`dev up --with prometheus`), and then added to a running stack.
OPTIONAL = frozenset({"prometheus"})
COMPONENTS_VARIABLE = "EVENTPIPELINE_DEV_COMPONENTS"


@dataclass
class StackInfo:
    """What `stack.json` records about a running stack."""

    components: list[str]
    exports: dict[str, str] = field(default_factory=dict)

    def export_lines(self) -> list[str]:
        return [f"export {name}={shlex.quote(value)}" for name, value in sorted(self.exports.items())]


def selected_components(only: Sequence[str] | None = None, with_: Sequence[str] = ()) -> list[str]:
    """The components to run: `--only`, else $EVENTPIPELINE_DEV_COMPONENTS, else all but the
    optional ones; plus those of `--with`."""
    names = list(only or [])
    if not names and os.environ.get(COMPONENTS_VARIABLE):
        names = [name.strip() for name in os.environ[COMPONENTS_VARIABLE].split(",") if name.strip()]
    if not names:
        names = [name for name in COMPONENTS if name not in OPTIONAL]
    names += with_
    unknown = sorted(set(names) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(COMPONENTS)}")
    return [name for name in COMPONENTS if name in names]


def load_component(name: str) -> Component:
    module_name, class_name = COMPONENTS[name].split(":")
    component_class = getattr(importlib.import_module(module_name), class_name)
    return cast(Component, component_class())


def read_stack(layout: Layout) -> StackInfo | None:
    if not layout.stack_file.exists():
        return None
    data = json.loads(layout.stack_file.read_text())
    return StackInfo(components=list(data["components"]), exports=dict(data["exports"]))


def _write_stack(layout: Layout, info: StackInfo) -> None:
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    path = layout.stack_file
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"components": info.components, "exports": info.exports}, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)


def running_stack(layout: Layout) -> StackInfo | None:
    """The recorded stack if every one of its processes runs and every component answers."""
    info = read_stack(layout)
    if info is None:
        return None
    records = recorded_processes(layout)
    if not records or not all(is_running(record) for record in records):
        return None
    if not all(load_component(name).healthy(info.exports) for name in info.components):
        return None
    return info


def install(layout: Layout, report: Reporter, names: Sequence[str]) -> None:
    """Install the components side by side; the first failure is raised after all finished."""
    components = [load_component(name) for name in names]
    with ThreadPoolExecutor(max_workers=len(components)) as pool:
        futures = [pool.submit(component.install, layout, report) for component in components]
        errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error


def up(layout: Layout, report: Reporter, only: Sequence[str] | None = None, with_: Sequence[str] = ()) -> StackInfo:
    """Bring the stack up, or return the running one when it already covers what is asked; optional
    components missing from a running stack are added to it without restarting the others."""
    names = selected_components(only, with_)
    current = running_stack(layout)
    if current is not None and set(names) <= set(current.components):
        report.step("stack", f"already running ({', '.join(current.components)})")
        return current
    if current is not None and set(names) - set(current.components) <= OPTIONAL:
        return _add(layout, report, current, [name for name in names if name not in current.components])
    down(layout, report)
    _reset_state(layout)
    report.step("stack", f"installing {', '.join(names)} (cached under {layout.cache_dir})")
    install(layout, report, names)
    info = StackInfo(components=[])
    try:
        _start(layout, report, info, names)
        if "kube" in info.components:
            register(layout, report, info.exports)
    except BaseException:
        report.step("stack", "start failed; stopping what was started")
        down(layout, report)
        raise
    return info


def _add(layout: Layout, report: Reporter, info: StackInfo, names: Sequence[str]) -> StackInfo:
    report.step("stack", f"adding {', '.join(names)} to the running stack")
    install(layout, report, names)
    _start(layout, report, info, names)
    return info


def _start(layout: Layout, report: Reporter, info: StackInfo, names: Sequence[str]) -> None:
    """Start the components in order; each goes into the stack file as soon as it is healthy."""
    for name in names:
        component = load_component(name)
        report.step(name, f"starting {name} {component.version}")
        info.exports.update(component.start(layout, report))
        info.components.append(name)
        _write_stack(layout, info)
        report.step(name, "healthy")


def _reset_state(layout: Layout) -> None:
    """A fresh `dev up` starts from empty data; logs of the previous run are kept aside."""
    if layout.state_dir.exists():
        logs = layout.state_dir / "logs"
        previous = layout.state_dir.parent / f"{layout.state_dir.name}.previous-logs"
        if logs.exists():
            shutil.rmtree(previous, ignore_errors=True)
            logs.rename(previous)
        shutil.rmtree(layout.state_dir)
    layout.state_dir.mkdir(parents=True)


def down(layout: Layout, report: Reporter) -> int:
    """Stop every process `dev up` recorded, newest first. Returns how many were stopped."""
    records = recorded_processes(layout)
    for record in reversed(records):
        report.step("stack", f"stopping {record.name} (pid {record.pid})")
        stop_process(layout, record)
    layout.stack_file.unlink(missing_ok=True)
    return len(records)


def status_lines(layout: Layout) -> list[str]:
    """One line per recorded process: running or not, and its log file."""
    info = read_stack(layout)
    lines = [f"state dir: {layout.state_dir}", f"cache dir: {layout.cache_dir}"]
    if info is None:
        lines.append("stack: not running")
        return lines
    for name in info.components:
        healthy = load_component(name).healthy(info.exports)
        lines.append(f"{name}: {'healthy' if healthy else 'NOT healthy'}")
    for record in recorded_processes(layout):
        state = "running" if is_running(record) else "stopped"
        lines.append(f"  {record.name:<28} pid {record.pid:<8} {state:<8} log {record.log_path}")
    return lines


def log_dir(layout: Layout) -> Path:
    return layout.state_dir / "logs"
