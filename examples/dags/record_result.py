"""The chain's end: one run per enriched order arriving on the results pipeline (Pulsar)."""

from __future__ import annotations

import json
from typing import Any

import pendulum
from airflow.sdk import dag, task
from eventpipeline_provider.context import triggering_message


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["eventpipeline", "eventpipeline:demo"],
)
def record_result() -> None:
    @task
    def record() -> dict[str, Any]:
        message = triggering_message()
        result: dict[str, Any] = message.json()
        print("result", message.key, json.dumps(result, sort_keys=True), "headers", dict(message.headers))
        return result

    record()


record_result()
