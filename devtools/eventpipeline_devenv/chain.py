"""`make demo`'s chain: orders (Kafka) → DAG enrich_order → results (Pulsar) → DAG record_result.

The results pipeline names Airflow as its producer: its credential lives only in an Airflow
connection the operator keeps (and rotates), and enrich_order publishes with it through the
provider's PublishToTopicOperator. Each order must end as one successful run of each DAG.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml
from confluent_kafka import Producer
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from eventpipeline.adapters.kube import decode_secret_data
from eventpipeline.api.common import GROUP, VERSION
from eventpipeline_devenv.airflow_api import AirflowApi, write_dag
from eventpipeline_devenv.clients import kafka_settings
from eventpipeline_devenv.runtime import ComponentError, Layout, Reporter, wait_until

ORDERS, RESULTS = "shop-orders", "order-results"
ENRICH_DAG, RECORD_DAG = "enrich_order", "record_result"
ORDERS_PRODUCER_SECRET = f"{ORDERS}.checkout.credentials"
ITEMS = (["book", "pen"], ["lamp"], ["book", "book", "lamp"])


def apply_pipeline(
    custom: client.CustomObjectsApi, namespace: str, path: Path, report: Reporter, step: str = "chain"
) -> str:
    """Create the EventPipeline of an example file in `namespace` (left as it is if it exists); its name."""
    body = yaml.safe_load(path.read_text())
    name = str(body["metadata"]["name"])
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", body)
        report.step(step, f"applied {path.name} → EventPipeline {namespace}/{name}")
    except ApiException as error:
        if error.status != 409:
            raise
        report.step(step, f"EventPipeline {namespace}/{name} exists already")
    return name


def pipeline_status(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    body = cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", name))
    return dict(body.get("status") or {})


def pipeline_ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    conditions = pipeline_status(custom, namespace, name).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _produce_orders(core: client.CoreV1Api, namespace: str, topic: str, tag: str) -> list[str]:
    secret = decode_secret_data(core.read_namespaced_secret(ORDERS_PRODUCER_SECRET, namespace).data)
    producer = Producer(kafka_settings(secret))
    numbers = []
    for index, items in enumerate(ITEMS):
        number = f"{tag}-{index}"
        producer.produce(topic, json.dumps({"order": number, "items": items}).encode(), key=number.encode())
        numbers.append(number)
    if producer.flush(30):
        raise ComponentError("chain", f"Kafka did not confirm the orders to {topic}")
    return numbers


def _runs(airflow: AirflowApi, dag_id: str) -> dict[str, dict[str, Any]]:
    return airflow.runs(dag_id)


def _finished(airflow: AirflowApi, dag_id: str, before: set[str], count: int) -> bool:
    new = [run for run_id, run in _runs(airflow, dag_id).items() if run_id not in before]
    return len(new) >= count and all(run["state"] in ("success", "failed") for run in new)


def run_chain(layout: Layout, report: Reporter, examples: Path, exports: Mapping[str, str], api: client.ApiClient,
              *, namespace: str, tag: str) -> None:  # fmt: skip
    """Apply the chain's pipelines and DAGs, send one order per ITEMS entry, show each end to end."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    airflow = AirflowApi(exports)
    for dag_id in (ENRICH_DAG, RECORD_DAG):
        write_dag(exports["AIRFLOW_DAGS_FOLDER"], dag_id, (examples / "dags" / f"{dag_id}.py").read_text())
    for dag_id in (ENRICH_DAG, RECORD_DAG):
        wait_until("chain", functools.partial(airflow.dag_listed, dag_id), timeout=120,
                   what=f"Airflow to list DAG {dag_id}")  # fmt: skip
    report.step("chain", f"wrote DAGs {ENRICH_DAG} and {RECORD_DAG} (they import the provider)")
    for path in sorted((examples / "chain").glob("*.yaml")):
        apply_pipeline(custom, namespace, path, report)
    for name in (ORDERS, RESULTS):
        wait_until("chain", functools.partial(pipeline_ready, custom, namespace, name), timeout=180,
                   what=f"{name} to be Ready", log_path=layout.log_path("operator"))  # fmt: skip
    report.step("chain", f"{RESULTS}'s Airflow producer: connection {namespace}.{RESULTS}__enricher, no Secret")
    before = {dag_id: set(_runs(airflow, dag_id)) for dag_id in (ENRICH_DAG, RECORD_DAG)}
    topic = str(pipeline_status(custom, namespace, ORDERS)["topic"])
    numbers = _produce_orders(core, namespace, topic, tag)
    report.step("chain", f"produced orders {', '.join(numbers)} to {topic}")
    for dag_id in (ENRICH_DAG, RECORD_DAG):
        wait_until("chain", functools.partial(_finished, airflow, dag_id, before[dag_id], len(numbers)), timeout=300,
                   what=f"{len(numbers)} finished runs of {dag_id}", log_path=layout.log_path("listener"))  # fmt: skip
    for dag_id in (ENRICH_DAG, RECORD_DAG):
        for run_id, run in sorted(_runs(airflow, dag_id).items()):
            if run_id not in before[dag_id]:
                value = (run.get("conf") or {}).get("value")
                report.step("chain", f"{dag_id} run {run_id}: {run['state']}; message {value}")
    failed = [run_id for dag_id in (ENRICH_DAG, RECORD_DAG) for run_id, run in _runs(airflow, dag_id).items()
              if run_id not in before[dag_id] and run["state"] != "success"]  # fmt: skip
    if failed:
        raise ComponentError("chain", f"runs that did not succeed: {', '.join(failed)}")
    report.step("chain", f"{len(numbers)} orders → {len(numbers)} runs of {ENRICH_DAG} → {len(numbers)} results "
                f"on Pulsar → {len(numbers)} runs of {RECORD_DAG}")  # fmt: skip
