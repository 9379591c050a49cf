"""Drift checks on the real stack: the pipelines of one broker share one listing of its topics,
SCRAM users and ACLs per drift period, and those of one Airflow instance one listing of its
connections and one read of their DAG's tags, instead of reading them pipeline by pipeline."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.integration.conftest import OPEN_DAG, OPERATOR_ENV
from tests.integration.support import Kube

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]

RESYNC = float(OPERATOR_ENV["EVENTPIPELINE_RESYNC_SECONDS"])
PIPELINES = 10
WINDOW = 6 * RESYNC
LISTINGS = ("list_topics", "list_scram_users", "list_acls")
PER_PIPELINE_READS = ("describe_topic", "scram_users", "acls_on")


def calls(metrics_port: int) -> dict[str, float]:
    """Calls by `system.operation`, whatever their outcome, from the operator's metrics."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=15).text
    found: dict[str, float] = {}
    pattern = r'eventpipeline_backend_calls_total\{operation="(\w+)",outcome="\w+",system="(\w+)"\} (\S+)'
    for operation, system, value in re.findall(pattern, text):
        found[f"{system}.{operation}"] = found.get(f"{system}.{operation}", 0.0) + float(value)
    return found


def test_drift_checks_of_a_brokers_pipelines_share_one_listing_per_period(
    kube: Kube, operator: Any, namespace: str
) -> None:
    spec = {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": OPEN_DAG}},
    }
    names = [f"batched-{index}" for index in range(PIPELINES)]
    for name in names:
        kube.create_pipeline(namespace, name, spec)
    for name in names:
        kube.wait_condition(namespace, name, "Ready", "True")
    # What a run wrote is read fresh until a listing taken well after the write: over after a few periods.
    time.sleep(4 * RESYNC)
    before = calls(operator.metrics_port)
    time.sleep(WINDOW)
    after = calls(operator.metrics_port)
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}

    # Every pipeline was checked in the window (each check lists the pipeline's ownership claims) …
    assert delta.get("kubernetes._list", 0.0) >= PIPELINES, delta
    # … against listings of the broker, about one per period, all three listed together …
    listings = [delta.get(f"kafka.{operation}", 0.0) for operation in LISTINGS]
    assert 1 <= listings[0] <= WINDOW / RESYNC + 2 and len(set(listings)) == 1, delta
    # … and not by reads per pipeline: without the listing at least 3 per pipeline and check (about
    # 70 here); a few remain on a loaded machine (a run retried after a timeout reads fresh).
    reads = sum(delta.get(f"kafka.{operation}", 0.0) for operation in PER_PIPELINE_READS)
    assert reads <= 2 * PIPELINES, {key: value for key, value in delta.items() if key.startswith("kafka.")}
    # Airflow likewise: whether each connection exists from a listing of the instance's connections
    # (one page here) and the DAG's tags from one read per period, not two reads per pipeline and check.
    airflow = {key: value for key, value in delta.items() if key.startswith("airflow.")}
    assert 1 <= airflow.get("airflow.list_connection_page", 0.0) <= 2 * (WINDOW / RESYNC + 2), airflow
    assert airflow.get("airflow.exists", 0.0) <= PIPELINES, airflow
    assert airflow.get("airflow.read_tags", 0.0) <= 2 * (WINDOW / RESYNC + 2), airflow
