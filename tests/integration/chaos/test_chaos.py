"""The short chaos run of `bench/chaos/harness.py` (a few hundred messages, one fault of each kind:
listener SIGKILL, Airflow API frozen, Kafka and Pulsar restarted, controller SIGKILL): every message
becomes exactly one run, and the last run follows the last fault within two minutes.
The full 10,000-message run and its recorded figures: bench/chaos/RESULTS.md."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bench.chaos.harness import Plan, report, run
from bench.chaos.rig import Rig

from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.support import Kube

pytestmark = pytest.mark.integration
DRAIN_BOUND_SECONDS = 120


def test_chaos_every_message_becomes_exactly_one_run_and_drains_after_the_last_fault(
    stack: Any, kube: Kube, operator: Any, namespace: str, open_dag: str
) -> None:
    rig = Rig(dict(stack.exports), kube, AirflowApi(stack.exports), namespace, operator=operator, owned=False)
    try:
        outcome = run(rig, Plan.short(), dag_id=open_dag)
    finally:
        rig.close()
    summary = json.dumps(report(outcome), indent=1)
    assert outcome.failure is None, summary
    assert outcome.exactly_once, summary
    assert outcome.drain_seconds is not None and outcome.drain_seconds <= DRAIN_BOUND_SECONDS, summary
