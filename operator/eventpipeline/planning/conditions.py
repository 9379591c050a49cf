"""Conditions as the Kubernetes API conventions want them, and the `Ready` summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eventpipeline.api.common import Condition, ConditionStatus

PART_CONDITIONS = (
    "TopicReady",
    "AccessReady",
    "CredentialsReady",
    "AirflowConnectionReady",
    "ProducerConnectionsReady",
    "TriggerAuthorized",
    "ListenerReady",
)


@dataclass(frozen=True)
class Outcome:
    """What one part of a reconciliation found: a condition without its timestamps."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def merge_conditions(
    current: Sequence[Condition], outcomes: Sequence[Outcome], generation: int | None, now: str
) -> list[Condition]:
    """New conditions; `lastTransitionTime` moves only when a condition's status flips."""
    by_type = {condition.type: condition for condition in current}
    for outcome in outcomes:
        previous = by_type.get(outcome.type)
        moved = previous is None or previous.status != outcome.status
        by_type[outcome.type] = Condition(
            type=outcome.type,
            status=outcome.status,
            reason=outcome.reason,
            message=outcome.message,
            last_transition_time=now if moved or previous is None else previous.last_transition_time,
            observed_generation=generation,
        )
    return sorted(by_type.values(), key=lambda condition: _order(condition.type))


def _order(condition_type: str) -> int:
    order = ("Ready", *PART_CONDITIONS)
    return order.index(condition_type) if condition_type in order else len(order)


def ready_summary(outcomes: Sequence[Outcome]) -> Outcome:
    """`Ready` is True when every part is; otherwise it carries the first failing part's reason."""
    failing = [outcome for outcome in outcomes if outcome.status != "True"]
    if not failing:
        return Outcome("Ready", "True", "Reconciled", "topic, access, credentials and connection are in place")
    first = failing[0]
    return Outcome("Ready", "False" if first.status == "False" else "Unknown", first.reason, first.message)


def changed(before: Sequence[Condition], after: Sequence[Condition]) -> list[Condition]:
    """Conditions whose status, reason or message differ: each is worth an Event."""
    old = {condition.type: condition for condition in before}
    return [
        condition
        for condition in after
        if (previous := old.get(condition.type)) is None
        or (previous.status, previous.reason, previous.message)
        != (condition.status, condition.reason, condition.message)
    ]
