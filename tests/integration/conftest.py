"""Session fixtures over the real local stack (see eventpipeline.devenv).

The stack is started once per session, or reused when `eventpipeline dev up` already runs
one in the same state dir. It is never skipped: if a component cannot start, every
integration test errors with that component's log tail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from eventpipeline.devenv import stack as devstack
from eventpipeline.devenv.runtime import Layout, Reporter, free_port, tail
from tests.integration.support import Kube, eventually, unique

# Short enough that drift repair and deletion retries show within a test's patience.
OPERATOR_ENV = {"EVENTPIPELINE_RESYNC_SECONDS": "4", "EVENTPIPELINE_DELETE_BACKOFF_SECONDS": "2"}


@pytest.fixture(scope="session")
def stack() -> Iterator[devstack.StackInfo]:
    layout = Layout.from_environment()
    already_running = devstack.running_stack(layout)
    info = devstack.up(layout, Reporter())
    yield info
    if already_running is None:
        devstack.down(layout, Reporter())


@pytest.fixture(scope="session")
def kube(stack: devstack.StackInfo) -> Kube:
    assert "KUBECONFIG" in stack.exports, "the stack runs no kube-apiserver"
    return Kube(config.new_client_from_config(config_file=stack.exports["KUBECONFIG"]))


@pytest.fixture(scope="session")
def operator(stack: devstack.StackInfo, kube: Kube) -> Iterator[subprocess.Popen[bytes]]:
    """The controller as a local process with the stack's kubeconfig, as in production minus the pod."""
    layout = Layout.from_environment()
    log_path = layout.log_path("operator-under-test")
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, **stack.exports, **OPERATOR_ENV, "EVENTPIPELINE_OPERATOR_METRICS_PORT": str(metrics_port)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eventpipeline.cli",
                "run",
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
                "--metrics-port",
                str(metrics_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def alive() -> bool:
        assert process.poll() is None, f"the operator exited:\n{tail(log_path)}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(alive, timeout=60, what="the operator's liveness endpoint")
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the controller-manager finishes it)."""
    name = unique("t")
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        kube.core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise
