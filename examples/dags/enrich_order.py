"""The chain's middle: one run per order (listener, DagRun mode); publishes the enriched order to Pulsar.

Needs the airflow-provider-eventpipeline provider in Airflow (the local stack installs it).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task
from eventpipeline_provider.context import triggering_message
from eventpipeline_provider.operators.publish import PublishToTopicOperator

NAMESPACE = "demo"  # where `make demo` applies examples/chain/
# The results pipeline's topic (its status.topic) and the connection the operator keeps for its
# Airflow producer `enricher` (default id <namespace>.<pipeline>__<producer>).
RESULTS_TOPIC = f"persistent://eventpipeline/{NAMESPACE}/{NAMESPACE}.order-results"
RESULTS_CONNECTION = f"{NAMESPACE}.order-results__enricher"
PRICES = {"book": 12.5, "pen": 1.2, "lamp": 30.0}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["eventpipeline", f"eventpipeline:{NAMESPACE}"],
)
def enrich_order() -> None:
    @task
    def enrich() -> dict[str, Any]:
        message = triggering_message()
        order = message.json()
        lines = [{"item": item, "price": PRICES.get(item, 0.0)} for item in order.get("items", [])]
        return {
            "order": order["order"],
            "lines": lines,
            "total": round(sum(line["price"] for line in lines), 2),
            "source": f"{message.topic}@{message.position}",
        }

    PublishToTopicOperator(
        task_id="publish_result",
        conn_id=RESULTS_CONNECTION,
        topic=RESULTS_TOPIC,
        value=enrich(),
        key="order-{{ ti.xcom_pull(task_ids='enrich')['order'] }}",
        headers={"enriched-by": "{{ dag_run.dag_id }}/{{ dag_run.run_id }}"},
    )


enrich_order()
