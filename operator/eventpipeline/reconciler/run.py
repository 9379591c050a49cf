"""One reconciliation's working record: the pipeline as read, the outcomes and Events so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from eventpipeline.adapters.kube import Owner
from eventpipeline.api.claim import ClaimingPipeline
from eventpipeline.api.common import API_VERSION, GROUP
from eventpipeline.api.pipeline import EventPipelineSpec, EventPipelineStatus
from eventpipeline.planning.conditions import Outcome

ROTATE_ANNOTATION = f"{GROUP}/rotate"

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Note:
    """An Event to emit on the pipeline."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class PipelineObject:
    """The parts of an EventPipeline object a reconciliation needs, parsed once.

    `status` is what was last reported; the reconciler reads it only to keep condition
    transition times and the listener's report, never to decide whom or what to act on.
    """

    namespace: str
    name: str
    uid: str
    generation: int | None
    annotations: dict[str, str]
    spec: EventPipelineSpec
    status: EventPipelineStatus

    @property
    def owner(self) -> Owner:
        return Owner(API_VERSION, "EventPipeline", self.name, self.uid)

    @property
    def identity(self) -> ClaimingPipeline:
        return ClaimingPipeline(namespace=self.namespace, name=self.name, uid=self.uid)

    @property
    def rotate_request(self) -> str | None:
        return self.annotations.get(ROTATE_ANNOTATION)


# What an Event's message may hold (the handlers cut longer ones).
EVENT_MESSAGE_LIMIT = 1000
PROVISIONED = "Provisioned"


def provisioned(notes: list[Note]) -> list[Note]:
    """A new pipeline's first run: its Normal notes (what it set up, in order) as one Event,
    `Provisioned`, instead of one per step (a creation emitted five); Warnings stay apart.

    Steps go into as many Events as the message limit needs, none cut short.
    """
    folded: list[Note] = []
    steps: list[str] = []
    for note in notes:
        if note.type != "Normal":
            continue
        if steps and len("; ".join([*steps, note.message])) > EVENT_MESSAGE_LIMIT:
            folded.append(Note("Normal", PROVISIONED, "; ".join(steps)))
            steps = []
        steps.append(note.message)
    if len(steps) == 1 and not folded:
        return notes  # a single step keeps its own reason
    if steps:
        folded.append(Note("Normal", PROVISIONED, "; ".join(steps)))
    return folded + [note for note in notes if note.type != "Normal"]


class StepFailedError(Exception):
    """A step ended the reconciliation early; its outcome is already recorded."""


@dataclass
class Run:
    """The mutable record of one reconciliation: outcomes, Events, the status report being built."""

    pipeline: PipelineObject
    now: datetime
    report: EventPipelineStatus
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def ok(self, condition: str, reason: str, message: str) -> None:
        self.outcomes.append(Outcome(condition, "True", reason, message))

    def fail(self, condition: str, reason: str, message: str) -> StepFailedError:
        self.outcomes.append(Outcome(condition, "False", reason, message))
        return StepFailedError(message)

    def note(self, type_: EventType, reason: str, message: str) -> None:
        self.notes.append(Note(type_, reason, message))


def parse_pipeline(body: dict[str, Any]) -> PipelineObject:
    """Parse a kopf body once, at the boundary."""
    metadata = body["metadata"]
    return PipelineObject(
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata["uid"],
        generation=metadata.get("generation"),
        annotations=dict(metadata.get("annotations") or {}),
        spec=EventPipelineSpec.model_validate(body.get("spec") or {}),
        status=EventPipelineStatus.model_validate(_own_status(body.get("status") or {})),
    )


def _own_status(status: dict[str, Any]) -> dict[str, Any]:
    """Status fields of ours only (kopf or older versions may have left others)."""
    known = set(EventPipelineStatus.model_fields) | {
        field.alias for field in EventPipelineStatus.model_fields.values() if field.alias
    }
    return {key: value for key, value in status.items() if key in known}
