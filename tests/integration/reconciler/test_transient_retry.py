"""A transient failure at creation is retried with backoff (about 1 s doubling up to 60 s), not
at the next resync: on the real stack, Airflow's API frozen while a pipeline is created."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from eventpipeline_devenv.runtime import Layout, recorded_processes
from tests.integration import conftest as integration
from tests.integration.conftest import OPEN_DAG, OperatorProcess
from tests.integration.support import Kube, eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]

# Resync and due check at their production values (the session's controller resyncs every 4 s,
# which would hide whether a failed creation is retried on its own).
PRODUCTION_RESYNC = {"EVENTPIPELINE_RESYNC_SECONDS": "300", "EVENTPIPELINE_DUE_CHECK_SECONDS": "300"}
FAILURE_TIMEOUT = 300.0  # 15 s plus the controller's start-up: over 180 s with a load average of 54
STILL_FROZEN_SECONDS = 10.0


@pytest.fixture
def production_resync_operator(
    stack: Any, operator: OperatorProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OperatorProcess]:
    """The session's controller stopped for the test, one with the production resync in its place."""
    monkeypatch.setattr(integration, "OPERATOR_ENV", {**integration.OPERATOR_ENV, **PRODUCTION_RESYNC})
    operator.stop()
    try:
        own = OperatorProcess(dict(stack.exports), operator.log_path)
        yield own
        own.stop()
    finally:
        operator.start()


@contextmanager
def frozen(name: str) -> Iterator[None]:
    """SIGSTOP a stack process's group (connections to it hang), SIGCONT it whatever happens."""
    record = next(r for r in recorded_processes(Layout.from_environment()) if r.name == name)
    os.killpg(record.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(record.pid, signal.SIGCONT)


def test_a_pipeline_created_while_airflow_is_frozen_is_ready_soon_after_it_answers_again(
    kube: Kube, production_resync_operator: OperatorProcess, namespace: str
) -> None:
    spec = {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
    }
    with frozen("airflow-api-server"):
        kube.create_pipeline(namespace, "retried", spec)

        def unavailable() -> dict[str, Any]:
            body = kube.get_pipeline(namespace, "retried") or {}
            conditions = body.get("status", {}).get("conditions", [])
            found = [c for c in conditions if c["status"] == "False" and c.get("reason") == "BackendUnavailable"]
            assert found, conditions
            return dict(found[0])

        # The first attempt fails after the operator's Airflow timeout (15 s), later on a loaded machine.
        failed = eventually(unavailable, timeout=FAILURE_TIMEOUT, what="a BackendUnavailable condition")
        assert "Airflow" in failed["message"], failed
        time.sleep(STILL_FROZEN_SECONDS)  # the next attempt or two fail too
    answered = time.monotonic()
    kube.wait_condition(namespace, "retried", "Ready", "True", timeout=150)
    ready = time.monotonic()
    # The next attempt came from the handler's backoff (1 s, 2 s, 4 s … after each failure), not
    # from the resync: that would come 300 s after the failed attempt (the due check too, here).
    assert ready - answered < 150, f"Ready {ready - answered:.0f} s after Airflow answered again"
