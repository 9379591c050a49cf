"""Drift checks on the real stack: the pipelines of one broker share one listing of its topics,
SCRAM users and ACLs per drift period, and those of one Airflow instance one listing of its
connections and one read of their DAG's tags, instead of reading them pipeline by pipeline; on
Kubernetes a check reads only the pipeline's Secrets (the pipeline and its claims come from the
watch's copy and the last listing), and a Secret deleted by hand still comes back."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import pytest

from eventpipeline.api.common import GROUP, VERSION
from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.conftest import OPEN_DAG, OPERATOR_ENV
from tests.integration.support import Kube, eventually, operator_calls, operator_runs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("open_dag")]

RESYNC = float(OPERATOR_ENV["EVENTPIPELINE_RESYNC_SECONDS"])
PIPELINES = 10
WINDOW = 6 * RESYNC
LISTINGS = ("list_topics", "list_scram_users", "list_acls")
PER_PIPELINE_READS = ("describe_topic", "scram_users", "acls_on")


def drift_checks(metrics_port: int) -> float:
    """The scheduler's drift checks so far (the operator's eventpipeline_scheduled_runs_total)."""
    return operator_runs(metrics_port, "eventpipeline_scheduled_runs_total", "drift")


@dataclass(frozen=True)
class Cluster:
    """What the controller serves besides this test's pipelines: in `make test` it also sees the
    pipelines of earlier tests still being deleted, on other brokers, with other DAGs."""

    pipelines: int
    brokers: int
    dags: int
    connection_pages: int  # pages of 100 in one listing of the Airflow instance's connections

    @classmethod
    def read(cls, kube: Kube, airflow: AirflowApi) -> Cluster:
        listing: dict[str, Any] = kube.custom.list_cluster_custom_object(GROUP, VERSION, "eventpipelines")
        items: list[dict[str, Any]] = listing["items"]
        specs = [item.get("spec", {}) for item in items]
        brokers = {(s.get("brokerRef") or {}).get("name") for s in specs}
        dags = {((s.get("airflow") or {}).get("trigger") or {}).get("dagId") for s in specs}
        response = airflow.request("GET", "/api/v2/connections", params={"limit": 1})
        connections = int(response.json().get("total_entries", 0)) if response.status_code == 200 else 0
        return cls(len(items), len(brokers), len(dags), max(1, math.ceil(connections / 100)))


def test_drift_checks_of_a_brokers_pipelines_share_one_listing_per_period(
    kube: Kube, operator: Any, namespace: str, stack: Any
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
    cluster = Cluster.read(kube, AirflowApi(stack.exports))
    before, checks_before = operator_calls(operator.metrics_port), drift_checks(operator.metrics_port)
    time.sleep(WINDOW)
    after, checks = operator_calls(operator.metrics_port), drift_checks(operator.metrics_port) - checks_before
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    periods = WINDOW / RESYNC + 2

    # Every pipeline was checked in the window …
    assert checks >= PIPELINES, (checks, delta)
    # … reading neither the pipeline nor its claims (the watch's copy and the last listing; before,
    # one read and one listing per check): what remains are runs outside a drift check (a retry, a
    # pipeline of an earlier test being deleted).
    kubernetes = {key: value for key, value in delta.items() if key.startswith("kubernetes.")}
    assert delta.get("kubernetes.read_pipeline", 0.0) <= checks / 4, (checks, kubernetes)
    assert delta.get("kubernetes._list", 0.0) <= checks / 2, (checks, kubernetes)
    # … against listings of the broker, about one per period, all three listed together …
    # (per broker in use; a listing may straddle the window's edges, so the three may differ by one each) …
    listings = [delta.get(f"kafka.{operation}", 0.0) for operation in LISTINGS]
    assert 1 <= listings[0] <= cluster.brokers * periods, (cluster, delta)
    assert max(listings) - min(listings) <= cluster.brokers, (cluster, delta)
    # … and not by reads per pipeline: without the listing at least 3 per pipeline and check (about
    # 70 for this test's 10 alone); a few remain on a loaded machine (a run retried after a timeout
    # reads fresh, and so does a pipeline of an earlier test being deleted).
    reads = sum(delta.get(f"kafka.{operation}", 0.0) for operation in PER_PIPELINE_READS)
    kafka = {key: value for key, value in delta.items() if key.startswith("kafka.")}
    assert reads <= 2 * cluster.pipelines, (cluster, kafka)
    # Airflow likewise: whether each connection exists from a listing of the instance's connections
    # and a DAG's tags from one read per period, not two reads per pipeline and check.
    airflow = {key: value for key, value in delta.items() if key.startswith("airflow.")}
    assert 1 <= airflow.get("airflow.list_connection_page", 0.0) <= 2 * cluster.connection_pages * periods, (
        cluster,
        airflow,
    )
    assert airflow.get("airflow.exists", 0.0) <= cluster.pipelines, (cluster, airflow)
    # Tags: once per DAG and period by drift checks; a run outside a drift check (a retry, a pipeline
    # of an earlier test being deleted) reads them fresh, but far fewer than every run does.
    runs = checks + delta.get("kubernetes._list", 0.0)  # every run outside a drift check lists claims
    assert airflow.get("airflow.read_tags", 0.0) <= max(2 * cluster.dags * periods, runs / 2), (cluster, runs, airflow)

    # A Secret deleted by hand comes back from a drift check answered from those copies.
    secret = f"{names[0]}.app.credentials"
    kube.core.delete_namespaced_secret(secret, namespace)
    eventually(lambda: kube.secret(namespace, secret), timeout=20 * RESYNC + 60, what="the Secret to come back")
    eventually(
        lambda: any(reason == "CredentialRepaired" for _, reason, _ in kube.events(namespace, names[0])),
        timeout=30,
        what="a CredentialRepaired event",
    )
