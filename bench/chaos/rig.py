"""What the fault benchmarks share: the running local stack, a controller and a listener as local
processes, a paused DAG, pipelines on either broker, and counting their runs in Airflow.

Used by `bench/chaos/harness.py`, `bench/listener/bench_restart.py` and the chaos test. It is built
from the integration suite's own helpers (`tests/integration/...`: the controller and listener
processes, the broker clients, `Kube`) and `eventpipeline_devenv.airflow_api`, so a benchmark
starts and kills the processes exactly as the tests do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config
from tests.integration.conftest import OperatorProcess
from tests.integration.listener.broker_cases import KAFKA, PULSAR, BrokerCase
from tests.integration.listener.conftest import ANY_NAMESPACE_TAGS, Listener
from tests.integration.support import Kube, eventually

from eventpipeline_devenv import stack as devstack
from eventpipeline_devenv.airflow_api import AirflowApi, noop_dag, write_dag
from eventpipeline_devenv.runtime import Layout

BROKERS = {"kafka": KAFKA, "pulsar": PULSAR}


def parse_time(text: str) -> float:
    """An Airflow timestamp (ISO 8601, `Z` or offset) as Unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Pipeline:
    """One EventPipeline of the rig, Ready, with its producer Secret."""

    broker: BrokerCase
    namespace: str
    name: str
    topic: str
    producer: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def run_marker(self) -> str:
        """The start of every run id of this pipeline: `ep__` and the topic's own name (no Pulsar
        tenant/namespace), which embeds the rig's unique namespace. Airflow's `run_id_pattern` reads
        `_` as any character, so no pipeline name of a rig may be another's followed by two more."""
        return f"ep__{self.topic.rsplit('/', 1)[-1]}__"


@dataclass
class Rig:
    """The stack's clients, one namespace of our own, and the processes we started."""

    exports: dict[str, str]
    kube: Kube
    airflow: AirflowApi
    namespace: str
    operator: OperatorProcess | None = None
    owned: bool = True  # the namespace and the controller are ours to remove (False: a test's fixtures)
    dags: list[str] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)

    @classmethod
    def open(cls, prefix: str, *, start_operator: bool = True) -> Rig:
        """Clients of the stack of this state dir (`EVENTPIPELINE_STATE_DIR`), a fresh namespace, a controller."""
        layout = Layout.from_environment()
        info = devstack.read_stack(layout)
        if info is None:
            raise SystemExit(f"no stack runs in {layout.state_dir}; start one with `eventpipeline dev up`")
        exports = dict(info.exports)
        kube = Kube(config.new_client_from_config(config_file=exports["KUBECONFIG"]))
        namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
        kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        rig = cls(exports, kube, AirflowApi(exports), namespace)
        if start_operator:
            rig.operator = OperatorProcess(exports, layout.log_path(f"operator-{prefix}"))
        return rig

    def dag(self, *, paused: bool = True, max_active_runs: int = 4) -> str:
        """A no-op DAG any namespace may trigger. Paused, its runs are created and stay queued, so
        Airflow only stores them (creating runs is the listener's job); unpaused, the scheduler runs
        up to `max_active_runs` at once on this machine's cores."""
        dag_id = f"ep_{self.namespace.replace('-', '_')}_{len(self.dags)}"
        source = noop_dag(dag_id, ANY_NAMESPACE_TAGS, max_active_runs=max_active_runs)
        write_dag(self.exports["AIRFLOW_DAGS_FOLDER"], dag_id, source)
        eventually(lambda: self.airflow.dag_listed(dag_id), timeout=180, interval=2, what=f"Airflow to list {dag_id}")
        self.airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused}).raise_for_status()
        self.dags.append(dag_id)
        return dag_id

    def pipeline(self, broker: BrokerCase, name: str, dag_id: str, *, partitions: int, max_in_flight: int) -> Pipeline:
        """A pipeline on `broker` triggering `dag_id`, once Ready."""
        spec = {
            "brokerRef": {"kind": "ClusterBroker", "name": broker.cluster_broker},
            "topic": {"partitions": partitions, "deletionPolicy": "Delete"},
            "producers": [{"name": "app"}],
            "airflow": {
                "instanceRef": {"name": "local"},
                "trigger": {"dagId": dag_id, "maxInFlight": max_in_flight},
            },
        }
        self.kube.create_pipeline(self.namespace, name, spec)
        self.kube.wait_condition(self.namespace, name, "Ready", "True", timeout=180)
        body = self.kube.get_pipeline(self.namespace, name) or {}
        producer = self.kube.secret(self.namespace, f"{name}.app.credentials")
        assert producer is not None, f"no producer Secret for {name}"
        return Pipeline(broker, self.namespace, name, body["status"]["topic"], producer)

    def listener(self, *pipelines: Pipeline, name: str = "listener") -> Listener:
        """A listener process dedicated to `pipelines`, not started yet (`start()`, `kill()`)."""
        listener = Listener(self.exports, [p.key for p in pipelines], f"{name}-{self.namespace}")
        self.listeners.append(listener)
        return listener

    def run_count(self, dag_id: str, pipeline: Pipeline, timeout: float = 10) -> int | None:
        """How many runs of the pipeline Airflow has; None when Airflow does not answer in time."""
        params = {"limit": 1, "run_id_pattern": pipeline.run_marker}
        try:
            response = self.airflow.client.get(
                f"/api/v2/dags/{dag_id}/dagRuns", params=params, headers=self.airflow.headers(), timeout=timeout
            )
        except httpx.HTTPError:
            return None
        if response.status_code == 401:
            self.airflow.token = ""
            return None
        return int(response.json()["total_entries"]) if response.status_code == 200 else None

    def runs(self, dag_id: str, pipeline: Pipeline) -> dict[str, dict[str, Any]]:
        """Every run of the pipeline, by run id."""
        return self.airflow.runs(dag_id, pipeline.run_marker, run_id_pattern=pipeline.run_marker)

    def close(self) -> None:
        """Stop our listeners, delete our pipelines (the controller removes topics and users) and DAGs."""
        for listener in self.listeners:
            listener.stop()
        custom = self.kube.custom
        listing = custom.list_namespaced_custom_object(
            "eventpipeline.dev", "v1alpha1", self.namespace, "eventpipelines"
        )
        for item in listing["items"]:
            self.kube.delete_pipeline(self.namespace, item["metadata"]["name"])
        if self.operator is not None and self.operator.poll() is None:
            eventually(lambda: not self._pipelines_left(), timeout=180, interval=2, what="the pipelines to go")
        if self.owned:
            if self.operator is not None:
                self.operator.stop()
            self.kube.core.delete_namespace(self.namespace)
        for dag_id in self.dags:
            (Path(self.exports["AIRFLOW_DAGS_FOLDER"]) / f"{dag_id}.py").unlink(missing_ok=True)

    def _pipelines_left(self) -> bool:
        listing = self.kube.custom.list_namespaced_custom_object(
            "eventpipeline.dev", "v1alpha1", self.namespace, "eventpipelines"
        )
        return bool(listing["items"])


def wait_for_runs(rig: Rig, dag_id: str, pipeline: Pipeline, expected: int, *, timeout: float) -> float:
    """Poll Airflow until the pipeline has `expected` runs; the time it happened. Fails on more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = rig.run_count(dag_id, pipeline)
        if count is not None:
            assert count <= expected, f"{count} runs for {expected} messages on {pipeline.key}"
            if count == expected:
                return time.time()
        time.sleep(0.5)
    raise AssertionError(f"{pipeline.key}: fewer than {expected} runs after {timeout:.0f} s")


def values_of(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The message values the runs carry in their conf, sorted."""
    return sorted(str(run["conf"]["value"]) for run in runs.values())
