"""Fixtures of the listener suite: a test DAG in Airflow, an Airflow API client, listener processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventpipeline_devenv.airflow_api import AirflowApi as Airflow
from eventpipeline_devenv.airflow_api import noop_dag
from eventpipeline_devenv.airflow_api import write_dag as write_dag_file
from eventpipeline_devenv.runtime import Layout, free_port, tail
from tests.integration.support import Kube, eventually, unique

# The tests' namespaces are random, so their DAG accepts every namespace: the DAG owner's explicit
# choice (`eventpipeline:*`). test_dag_authorization.py writes DAGs that accept fewer.
ANY_NAMESPACE_TAGS = ("eventpipeline-test", "eventpipeline:*")


def write_dag(folder: str, dag_id: str, tags: Sequence[str] = ANY_NAMESPACE_TAGS) -> None:
    write_dag_file(folder, dag_id, noop_dag(dag_id, tags))


@pytest.fixture(scope="session")
def airflow(stack: Any) -> Airflow:
    return Airflow(stack.exports)


@pytest.fixture(scope="session")
def dag_id(stack: Any, airflow: Airflow) -> Iterator[str]:
    """A DAG of this session (schedule=None, one trivial task), once Airflow lists it."""
    name = "ep_listener_" + unique("t").replace("-", "_")
    write_dag(stack.exports["AIRFLOW_DAGS_FOLDER"], name)
    eventually(
        lambda: airflow.request("GET", f"/api/v2/dags/{name}").status_code == 200,
        timeout=120,
        interval=2,
        what=f"Airflow to list DAG {name}",
    )
    # Paused: runs are created and stay queued, so the 2-core machine does not execute hundreds of
    # task instances while the suite runs. Creating runs is what the listener does.
    airflow.request("PATCH", f"/api/v2/dags/{name}", json={"is_paused": True}).raise_for_status()
    yield name
    (Path(stack.exports["AIRFLOW_DAGS_FOLDER"]) / f"{name}.py").unlink(missing_ok=True)


class Listener:
    """`eventpipeline listen` as a local process with the stack's kubeconfig, restartable."""

    def __init__(self, exports: Mapping[str, str], dedicated: list[str], name: str) -> None:
        self.exports = exports
        self.dedicated = dedicated
        self.log_path = Layout.from_environment().log_path(name)
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0

    def start(self, *, wait_for_workers: bool = True) -> None:
        self.metrics_port = free_port()
        command = [sys.executable, "-m", "eventpipeline.cli", "listen", "--metrics-port", str(self.metrics_port)]
        command += ["--status-interval", "1"]
        for key in self.dedicated:
            command += ["--dedicated", key]
        env = {**os.environ, **self.exports}
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        # 10 s on a machine with a load average of 20; a minute when it is busier still.
        eventually(self._metrics_up, timeout=90, what="the listener's metrics endpoint")
        # Up is not serving: each dedicated pipeline's series appear when its worker starts, so a
        # test's clock for runs starts with the workers, not with the process. Not an assertion:
        # some tests start the listener before their pipeline exists or may be served.
        if wait_for_workers:
            with contextlib.suppress(AssertionError):
                eventually(self._workers_started, timeout=60, what=f"the workers of {self.dedicated}")

    def _workers_started(self) -> bool:
        try:
            text = self.metrics()
        except httpx.HTTPError:
            return False
        return all(f'pipeline="{key}"' in text for key in self.dedicated)

    def _metrics_up(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"the listener exited:\n{tail(self.log_path)}"
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def kill(self) -> None:
        """SIGKILL: no final commit, no goodbye to the broker."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def listener_factory(stack: Any) -> Iterator[Any]:
    started: list[Listener] = []

    def make(*dedicated: str, wait_for_workers: bool = True) -> Listener:
        listener = Listener(stack.exports, list(dedicated), f"listener-under-test-{len(started)}")
        started.append(listener)
        listener.start(wait_for_workers=wait_for_workers)
        return listener

    yield make
    for listener in started:
        listener.stop()


@dataclass
class Harness:
    """What every listener test uses, in one fixture."""

    stack: Any
    kube: Kube
    operator: Any
    namespace: str
    dag_id: str
    airflow: Airflow
    listener_factory: Any


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Harness:
    names = ("stack", "kube", "operator", "namespace", "dag_id", "airflow", "listener_factory")
    return Harness(*(request.getfixturevalue(name) for name in names))


def wait_ready(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    kube.wait_condition(namespace, name, "Ready", "True", timeout=120)
    body = kube.get_pipeline(namespace, name)
    assert body is not None
    return dict(body)


def listener_status(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    body = kube.get_pipeline(namespace, name) or {}
    return dict(body.get("status", {}).get("listener") or {})


def rotate_and_wait(kube: Any, namespace: str, name: str) -> None:
    """Ask for a rotation and wait until the listener's new generation is the only valid one."""
    kube.patch_pipeline(namespace, name, {"metadata": {"annotations": {"eventpipeline.dev/rotate": "now"}}})

    def rotated_and_revoked() -> bool:
        principals = (kube.get_pipeline(namespace, name) or {}).get("status", {}).get("principals", [])
        listener = next(p for p in principals if p["name"] == "listener")
        return bool(listener["generation"] == 2 and not listener.get("previousUsername"))

    eventually(rotated_and_revoked, timeout=90, what="the listener credential to rotate and the old one to go")


def settle(seconds: float) -> None:
    time.sleep(seconds)
