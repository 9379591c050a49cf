"""DagBehindSchema in the conditions: the listener's condition says it, `Ready` is not overruled."""

from __future__ import annotations

from datetime import UTC, datetime

from eventpipeline.api.pipeline import EventPipelineSpec, ListenerStatus
from eventpipeline.planning.conditions import Outcome
from eventpipeline.planning.readiness import listener_outcome, summarise

SPEC = EventPipelineSpec.model_validate(
    {"brokerRef": {"name": "k"}, "airflow": {"instanceRef": {"name": "main"}, "trigger": {"dagId": "orders"}}}
)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HELD = (
    "DagBehindSchema: DAG orders handles schema versions up to 1 (tag 'eventpipeline-schema:1') and messages "
    "of version 2 wait on partition(s) 0, in order, uncommitted; they become runs once the DAG states "
    "'eventpipeline-schema:2' or newer (3 message(s) held)"
)


def test_messages_waiting_for_the_dag_show_as_dag_behind_schema_with_both_versions() -> None:
    reported = ListenerStatus(replica="l", updated_at="2026-11-30T11:59:58Z", error=HELD)
    outcome = listener_outcome(SPEC, reported, NOW)
    assert outcome is not None
    assert (outcome.type, outcome.status, outcome.reason) == ("ListenerReady", "False", "DagBehindSchema")
    assert "up to 1" in outcome.message and "version 2 wait" in outcome.message


def test_a_hold_does_not_overrule_ready_but_other_listener_errors_do() -> None:
    parts = [
        Outcome(part, "True", "Done", "")
        for part in ("TopicReady", "CredentialsReady", "AccessReady", "AirflowConnectionReady", "TriggerAuthorized")
    ]
    held = listener_outcome(SPEC, ListenerStatus(replica="l", updated_at="2026-11-30T11:59:58Z", error=HELD), NOW)
    ready, *_ = summarise(SPEC, parts, held)
    assert (ready.type, ready.status) == ("Ready", "True")
    failing = listener_outcome(
        SPEC, ListenerStatus(replica="l", updated_at="2026-11-30T11:59:58Z", error="Kafka: broker down"), NOW
    )
    ready, *_ = summarise(SPEC, parts, failing)
    assert (ready.status, ready.reason) == ("False", "ListenerError")
