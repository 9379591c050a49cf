"""Inside a task: the message that triggered the DAG run, so DAG code never parses `conf` by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventpipeline_provider.message import TriggeringMessage, message_from_conf


def triggering_message(context: Mapping[str, Any] | None = None) -> TriggeringMessage:
    """The message in this run's `conf` (a DAG the EventPipeline listener triggers in DagRun mode)."""
    if context is None:
        from airflow.sdk import get_current_context  # noqa: PLC0415 - only inside a running task

        context = get_current_context()
    dag_run = context["dag_run"]
    return message_from_conf(dag_run.conf)


def triggering_messages(context: Mapping[str, Any] | None = None) -> list[TriggeringMessage]:
    """The messages behind the asset events that triggered this run (AssetEvent mode, or an AssetWatcher).

    Airflow may merge several asset events into one run: each is one message, oldest first.
    """
    if context is None:
        from airflow.sdk import get_current_context  # noqa: PLC0415 - only inside a running task

        context = get_current_context()
    messages: list[TriggeringMessage] = []
    for events in context["triggering_asset_events"].values():
        messages.extend(message_from_conf(event.extra) for event in events)
    return sorted(messages, key=lambda message: message.timestamp.timestamp() if message.timestamp else 0.0)
