"""`eventpipeline demo`: the main job end to end on the local stack.

Brings the stack up, runs the controller and the trigger listener as local processes (as they
would run against a remote cluster), applies the example pipelines, produces messages with
the producer Secrets the operator wrote, and shows each message become one Airflow DAG run.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from eventpipeline.adapters.kube import decode_secret_data
from eventpipeline.adapters.tls import pulsar_tls_options
from eventpipeline.planning.secrets import CA_KEY
from eventpipeline_devenv import chain, monitoring, stack
from eventpipeline_devenv.airflow_api import AirflowApi, write_dag
from eventpipeline_devenv.clients import kafka_settings
from eventpipeline_devenv.prometheus import TARGETS_EXPORT, URL_EXPORT
from eventpipeline_devenv.runtime import (
    ComponentError,
    Layout,
    Reporter,
    free_port,
    is_running,
    recorded_processes,
    start_process,
    wait_until,
)

DEMO_NAMESPACE = "demo"
DAG_ID = "process_event"
PIPELINES = {"kafka-pipeline.yaml": "orders", "pulsar-pipeline.yaml": "payments"}


def _ensure_process(layout: Layout, report: Reporter, name: str, args: list[str], env: Mapping[str, str]) -> None:
    """Start `eventpipeline <args>` unless it runs; its metrics on a free port, announced to the
    stack's Prometheus when one runs."""
    if any(record.name == name and is_running(record) for record in recorded_processes(layout)):
        report.step("demo", f"{name} already running")
        return
    metrics_port = free_port()
    args = [*args, "--metrics-port", str(metrics_port)]
    report.step("demo", f"starting {name}: eventpipeline {' '.join(args)}")
    start_process(layout, name, [sys.executable, "-m", "eventpipeline.cli", *args], env={**os.environ, **env})
    if TARGETS_EXPORT in env:
        component = "controller" if args[0] == "run" else "listener"
        monitoring.announce(Path(env[TARGETS_EXPORT]), component, name, metrics_port)


def _install_dag(examples: Path, exports: Mapping[str, str], report: Reporter) -> None:
    folder = Path(exports["AIRFLOW_DAGS_FOLDER"])
    write_dag(folder, DAG_ID, (examples / "dags" / f"{DAG_ID}.py").read_text())
    report.step("demo", f"wrote DAG {DAG_ID} to {folder}; waiting for Airflow to parse it")
    airflow = AirflowApi(exports)
    wait_until(
        "demo",
        lambda: airflow.dag_listed(DAG_ID),
        timeout=120,
        what=f"Airflow to list DAG {DAG_ID}",
    )


def _apply_pipelines(api: client.ApiClient, examples: Path, report: Reporter) -> None:
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=DEMO_NAMESPACE)))
    except ApiException as error:
        if error.status != 409:
            raise
    for file_name in PIPELINES:
        chain.apply_pipeline(custom, DEMO_NAMESPACE, examples / file_name, report, step="demo")


def _secret(core: client.CoreV1Api, name: str) -> dict[str, str]:
    secret = core.read_namespaced_secret(name, DEMO_NAMESPACE)
    return decode_secret_data(secret.data)


def _produce(core: client.CoreV1Api, custom: client.CustomObjectsApi, messages: int, report: Reporter) -> None:
    import pulsar  # noqa: PLC0415 - clients load only when producing
    from confluent_kafka import Producer  # noqa: PLC0415

    for name, producer_name in (("orders", "checkout"), ("payments", "billing")):
        topic = chain.pipeline_status(custom, DEMO_NAMESPACE, name)["topic"]
        secret = _secret(core, f"{name}.{producer_name}.credentials")
        payloads = [f'{{"pipeline": "{name}", "n": {n}, "at": {time.time():.3f}}}'.encode() for n in range(messages)]
        if "token" in secret:
            tls_options, trust = pulsar_tls_options(secret["serviceUrl"], secret.get(CA_KEY))
            pulsar_client = pulsar.Client(
                secret["serviceUrl"],
                authentication=pulsar.AuthenticationToken(secret["token"]),
                logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
                **tls_options,
            )
            try:
                producer = pulsar_client.create_producer(topic)
                for payload in payloads:
                    producer.send(payload)
            finally:
                pulsar_client.close()
                if trust is not None:
                    trust.remove()
        else:
            kafka = Producer(kafka_settings(secret))
            for payload in payloads:
                kafka.produce(topic, payload)
            if kafka.flush(30):
                raise ComponentError("demo", f"Kafka did not confirm the messages to {topic}")
        report.step(
            "demo", f"produced {messages} message(s) to {topic} as {secret.get('username', secret.get('role'))}"
        )


def _runs(exports: Mapping[str, str]) -> list[dict[str, Any]]:
    params = {"limit": 100, "order_by": "-start_date"}
    response = AirflowApi(exports).request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params=params)
    response.raise_for_status()
    return list(response.json()["dag_runs"])


def run_demo(layout: Layout, report: Reporter, examples: Path, messages: int, with_: Sequence[str] = ()) -> None:
    info = stack.up(layout, report, with_=with_)
    exports = info.exports
    _ensure_process(layout, report, "operator", ["run"], exports)
    _ensure_process(layout, report, "listener", ["listen"], exports)
    _install_dag(examples, exports, report)
    api = config.new_client_from_config(config_file=exports["KUBECONFIG"])  # type: ignore[no-untyped-call]
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    _apply_pipelines(api, examples, report)
    for name in PIPELINES.values():
        report.step("demo", f"waiting for EventPipeline {DEMO_NAMESPACE}/{name} to be Ready")
        wait_until(
            "demo",
            functools.partial(chain.pipeline_ready, custom, DEMO_NAMESPACE, name),
            timeout=180,
            what=f"{name} to be Ready",
            log_path=layout.log_path("operator"),
        )
    before = {run["dag_run_id"] for run in _runs(exports)}
    _produce(core, custom, messages, report)
    expected = 2 * messages
    report.step("demo", f"waiting for {expected} new DAG run(s) of {DAG_ID}")

    def new_runs() -> list[dict[str, Any]]:
        return [run for run in _runs(exports) if run["dag_run_id"] not in before]

    wait_until(
        "demo",
        lambda: len(new_runs()) >= expected,
        timeout=240,
        what=f"{expected} DAG runs",
        log_path=layout.log_path("listener"),
    )
    report.step("demo", f"{expected} DAG run(s) created; waiting for Airflow to run them")
    finished = ("success", "failed")
    wait_until(
        "demo",
        lambda: all(run["state"] in finished for run in new_runs()),
        timeout=300,
        what="the DAG runs to finish",
        log_path=layout.log_path("airflow-scheduler"),
    )
    for run in sorted(new_runs(), key=lambda run: str(run["dag_run_id"])):
        report.step("demo", f"DAG run {run['dag_run_id']}: {run['state']}")
    # The chain (issue 14): orders → enrich_order → results on Pulsar, published with the Airflow
    # producer's connection → record_result.
    chain.run_chain(layout, report, examples, exports, api, namespace=DEMO_NAMESPACE, tag=time.strftime("%H%M%S"))
    report.step("demo", f"{expected} message(s) became {len(new_runs())} DAG run(s). The stack keeps running:")
    print(
        f'  eval "$(.venv/bin/eventpipeline dev env)"; $KUBECTL get eventpipelines -n {DEMO_NAMESPACE}\n'
        f"  Airflow UI: {exports['AIRFLOW_API_URL']} (user {exports['AIRFLOW_USERNAME']}, password from `dev env`)\n"
        "  stop everything with: make down",
        file=sys.stderr,
    )
    if URL_EXPORT in exports:
        print(
            f"  Prometheus: {exports[URL_EXPORT]} (scrapes the controller and the listener; the chart's alerts)\n"
            f"  key figures: .venv/bin/eventpipeline top --prometheus {exports[URL_EXPORT]}",
            file=sys.stderr,
        )
