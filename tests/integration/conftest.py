"""Session fixtures over the real local stack (see eventpipeline_devenv).

The stack is started once per session, or reused when `eventpipeline dev up` already runs
one in the same state dir. It is never skipped: if a component cannot start, every
integration test errors with that component's log tail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import config

from eventpipeline_devenv import stack as devstack
from eventpipeline_devenv.airflow_api import AirflowApi, noop_dag, write_dag
from eventpipeline_devenv.runtime import (
    Layout,
    Reporter,
    free_port,
    is_running,
    recorded_processes,
    stop_process,
    tail,
)
from tests.integration.secret_scan import SecretScan, process_logs
from tests.integration.support import Kube, eventually, fresh_namespace

# Short enough that drift repair and deletion retries show within a test's patience.
DEMO_PROCESSES = ("operator", "listener")
OPERATOR_ENV = {"EVENTPIPELINE_RESYNC_SECONDS": "4", "EVENTPIPELINE_DELETE_BACKOFF_SECONDS": "2"}


@pytest.fixture(scope="session")
def stack() -> Iterator[devstack.StackInfo]:
    layout = Layout.from_environment()
    already_running = devstack.running_stack(layout)
    info = devstack.up(layout, Reporter())
    # A controller or listener that `make demo` left on a reused stack would act on the tests'
    # pipelines alongside the processes under test: the session runs its own.
    for record in recorded_processes(layout):
        if record.name in DEMO_PROCESSES and is_running(record):
            stop_process(layout, record)
    yield info
    if already_running is None:
        devstack.down(layout, Reporter())


@pytest.fixture(scope="session")
def kube(stack: devstack.StackInfo) -> Kube:
    assert "KUBECONFIG" in stack.exports, "the stack runs no kube-apiserver"
    return Kube(config.new_client_from_config(config_file=stack.exports["KUBECONFIG"]))


class OperatorProcess:
    """The controller as a local process with the stack's kubeconfig; tests may kill and restart it.

    Attributes not defined here are those of the running `subprocess.Popen`.
    """

    def __init__(self, exports: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.port, self.metrics_port = free_port(), free_port()
        self.env = {**os.environ, **exports, **OPERATOR_ENV}
        self.process: subprocess.Popen[bytes] = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "eventpipeline.cli",
            "run",
            "--liveness",
            f"http://127.0.0.1:{self.port}/healthz",
            "--metrics-port",
            str(self.metrics_port),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        # Seconds on an idle machine; well over a minute with a load average above 20 on 2 cores.
        eventually(self._alive, timeout=180, what="the operator's liveness endpoint")
        return self.process

    def _alive(self) -> bool:
        assert self.process.poll() is None, f"the operator exited:\n{tail(self.log_path)}"
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies mid-reconciliation."""
        self.process.kill()
        self.process.wait(timeout=20)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.process, name)


@pytest.fixture(scope="session")
def secret_scan(stack: devstack.StackInfo, kube: Kube) -> Iterator[SecretScan]:
    """Follows issued credentials, Events, statuses and annotations all session; at its end (after the
    operator and the listeners stopped) fails if any credential or admin secret appeared in them or in
    the controller's and the listeners' logs."""
    scan = SecretScan(kube, stack.exports)
    scan.start()
    yield scan
    scan.stop()
    leaks = scan.leaks(process_logs(Layout.from_environment().state_dir / "logs"))
    assert not leaks, "secret values leaked (values not shown):\n" + "\n".join(leaks)


@pytest.fixture(scope="session")
def operator(stack: devstack.StackInfo, kube: Kube, secret_scan: SecretScan) -> Iterator[OperatorProcess]:
    """The controller as a local process with the stack's kubeconfig, as in production minus the pod."""
    process = OperatorProcess(dict(stack.exports), Layout.from_environment().log_path("operator-under-test"))
    yield process
    process.stop()


# A DAG open to every namespace (the DAG owner's explicit choice, `eventpipeline:*`): the tests'
# namespaces are random. Tests of DAG authorization write DAGs that accept fewer.
OPEN_DAG = "ep_open_to_every_namespace"
OPEN_DAG_TAGS = ("eventpipeline-test", "eventpipeline:*")


@pytest.fixture(scope="session")
def open_dag(stack: devstack.StackInfo) -> str:
    """OPEN_DAG in Airflow, paused (runs are created and stay queued), once Airflow lists it."""
    airflow = AirflowApi(stack.exports)
    write_dag(stack.exports["AIRFLOW_DAGS_FOLDER"], OPEN_DAG, noop_dag(OPEN_DAG, OPEN_DAG_TAGS))

    def listed() -> bool:
        response = airflow.request("GET", f"/api/v2/dags/{OPEN_DAG}")
        return response.status_code == 200 and {t["name"] for t in response.json()["tags"]} == set(OPEN_DAG_TAGS)

    eventually(listed, timeout=180, interval=2, what=f"Airflow to list DAG {OPEN_DAG}")
    airflow.request("PATCH", f"/api/v2/dags/{OPEN_DAG}", json={"is_paused": True}).raise_for_status()
    return OPEN_DAG


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the controller-manager finishes it)."""
    with fresh_namespace(kube) as name:
        yield name


@pytest.fixture
def airflow_api_server() -> Iterator[int]:
    """The pid (group leader) of the stack's Airflow api-server; SIGCONT'ed whatever happens, so a
    test may SIGSTOP it (the API server stops answering; requests hang)."""
    record = json.loads((Layout.from_environment().pid_dir / "airflow-api-server.json").read_text())
    pid = int(record["pid"])
    yield pid
    os.killpg(pid, signal.SIGCONT)


@pytest.fixture
def pulsar_admin(stack: devstack.StackInfo) -> Iterator[httpx.Client]:
    """Pulsar's admin REST API as the stack's admin (the test's own eyes on the broker)."""
    exports = stack.exports
    with httpx.Client(
        base_url=exports["PULSAR_ADMIN_URL"],
        headers={"Authorization": f"Bearer {exports['PULSAR_ADMIN_TOKEN']}"},
        timeout=15,
    ) as client:
        yield client
