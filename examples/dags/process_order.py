"""A DAG for a pipeline with a schema: the listener hands it the decoded message, so it reads
`conf["value"]` by field, and `conf["schema"]` says which registered version it was written with.

The tag `eventpipeline-schema:2` states the newest schema version this DAG reads. Messages of a
newer version wait, in order and uncommitted, until the DAG is updated and states that version
(docs/listener.md, "Schemas: decoded values and DAG versions").
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

# The newest schema version this DAG reads; raise it (and the tag) when it reads a newer one.
HANDLES_SCHEMA_VERSION = 2


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["eventpipeline", "eventpipeline:shop", f"eventpipeline-schema:{HANDLES_SCHEMA_VERSION}"],
)
def process_order() -> None:
    @task
    def handle() -> None:
        conf = get_current_context()["dag_run"].conf or {}
        order = conf["value"]  # the decoded record, e.g. {"orderId": 7, "item": "tea", "quantity": 2}
        version = conf["schema"]["version"]
        # Version 2 added an optional `note`; a version-1 message has none.
        note = order.get("note") if version >= 2 else None
        print(f"order {order['orderId']}: {order['quantity']} x {order['item']} (schema v{version}) {note or ''}")

    handle()


process_order()
