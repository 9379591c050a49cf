"""A DAG the EventPipeline listener triggers once per message; the message is in `conf`."""

from __future__ import annotations

import json

import pendulum
from airflow.sdk import dag, get_current_context, task


# A DAG accepts messages from the pipelines of a namespace only if it carries the tag
# `eventpipeline:<namespace>`: here `demo` (make demo) and `shop` (the README's walkthrough).
# Add your namespace's tag, or `eventpipeline:*` to accept every namespace.
@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["eventpipeline", "eventpipeline:demo", "eventpipeline:shop"],
)
def process_event() -> None:
    @task
    def handle() -> None:
        conf = get_current_context()["dag_run"].conf or {}
        # conf: {"topic", "partition", "offset" (Kafka) or "messageId" (Pulsar), "key", "value", "headers", "timestamp"}
        print("message", json.dumps(conf, sort_keys=True))

    handle()


process_event()
