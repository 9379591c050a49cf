"""From the parts' outcomes to the conditions a user reads: `Ready`, the parts, `ListenerReady`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from eventpipeline.api.common import Condition
from eventpipeline.api.pipeline import EventPipelineSpec, ListenerStatus
from eventpipeline.planning.clock import parse_iso
from eventpipeline.planning.conditions import Outcome, ready_summary
from eventpipeline.planning.schema_versions import DAG_BEHIND_SCHEMA

# A listener that has not reported for this long is considered gone.
LISTENER_STALE_AFTER = timedelta(minutes=2)


def expected_parts(spec: EventPipelineSpec) -> list[str]:
    parts = ["TopicReady", "CredentialsReady", "AccessReady"]
    if any(producer.airflow_connection is not None for producer in spec.producers):
        parts.append("ProducerConnectionsReady")
    if spec.airflow is not None:
        parts.append("AirflowConnectionReady")
        if spec.airflow.trigger is not None:
            parts.append("TriggerAuthorized")
    return parts


def summarise(spec: EventPipelineSpec, parts: Sequence[Outcome], listener: Outcome | None) -> list[Outcome]:
    """`Ready` first, then every expected part (those not reached wait for the first that failed)."""
    outcomes = list(parts)
    reached = {outcome.type for outcome in outcomes}
    blocked = next((outcome for outcome in outcomes if outcome.status != "True"), None)
    for missing in (condition for condition in expected_parts(spec) if condition not in reached):
        outcomes.append(
            Outcome(missing, "Unknown", "Waiting", f"waiting for {blocked.type}" if blocked else "not reached")
        )
    ready = ready_summary(outcomes)
    if listener is not None:
        outcomes.append(listener)
        # Messages waiting for their DAG to catch up with the schema are the DAG owner's step, not
        # a fault of the pipeline: ListenerReady says so, Ready stays what the parts say.
        if listener.status == "False" and ready.status == "True" and listener.reason != DAG_BEHIND_SCHEMA:
            ready = Outcome("Ready", "False", listener.reason, listener.message)
    return [ready, *outcomes]


def listener_outcome(spec: EventPipelineSpec, reported: ListenerStatus | None, now: datetime) -> Outcome | None:
    """ListenerReady from what the listener reports in status.listener (the listener writes only that).

    Before any listener has reported, the condition is Unknown and does not hold `Ready` back:
    the controller can be ready before the data plane is deployed.
    """
    airflow = spec.airflow
    if airflow is None or airflow.trigger is None:
        return None
    if reported is None or reported.updated_at is None:
        return Outcome(
            "ListenerReady", "Unknown", "WaitingForListener", "no listener has reported for this pipeline yet"
        )
    if reported.stalled_partitions:
        stalled = f"partitions {', '.join(str(p) for p in reported.stalled_partitions)} stalled"
        return Outcome("ListenerReady", "False", "ListenerStalled", reported.error or stalled)
    if reported.error and reported.error.startswith(f"{DAG_BEHIND_SCHEMA}:"):
        return Outcome("ListenerReady", "False", DAG_BEHIND_SCHEMA, reported.error)
    if reported.error:
        return Outcome("ListenerReady", "False", "ListenerError", reported.error)
    if now - parse_iso(reported.updated_at) > LISTENER_STALE_AFTER:
        return Outcome(
            "ListenerReady",
            "False",
            "ListenerSilent",
            f"listener {reported.replica or ''} last reported at {reported.updated_at}; check that it runs",
        )
    return Outcome("ListenerReady", "True", "Listening", f"served by listener {reported.replica or ''}".strip())


def listener_changed(
    spec: EventPipelineSpec, reported: ListenerStatus | None, conditions: Sequence[Condition], now: datetime
) -> bool:
    """Whether what the listener reports would change the ListenerReady condition (no I/O)."""
    outcome = listener_outcome(spec, reported, now)
    current = next((c for c in conditions if c.type == "ListenerReady"), None)
    if outcome is None or current is None:
        return outcome is not None or current is not None
    return (outcome.status, outcome.reason) != (current.status, current.reason)
