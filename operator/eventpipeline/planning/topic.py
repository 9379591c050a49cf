"""Topic planning: what to create or change so the broker's topic matches the spec."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from eventpipeline.api.pipeline import EventPipelineSpec
from eventpipeline.planning import naming


@dataclass(frozen=True)
class DesiredTopic:
    name: str
    partitions: int
    replication_factor: int | None
    config: Mapping[str, str] = field(default_factory=dict)
    # Config keys the operator owns (the broker's topic policy): reset when left out of `config`.
    managed_keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ObservedTopic:
    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicChanges:
    """The steps that converge a topic; empty when it is up to date."""

    create: bool = False
    grow_partitions_to: int | None = None
    set_config: Mapping[str, str] = field(default_factory=dict)
    # Keys the operator manages that are set on the topic but gone from the spec: back to the default.
    reset_config: frozenset[str] = frozenset()
    # Partitions on the broker above the spec: never shrunk, reported.
    shrink_refused_from: int | None = None

    @property
    def up_to_date(self) -> bool:
        return not self.create and self.grow_partitions_to is None and not self.set_config and not self.reset_config


def plan_topic(
    desired: DesiredTopic, observed: ObservedTopic | None, managed_keys: Set[str] = frozenset()
) -> TopicChanges:
    """Compare desired and observed topic; partitions only ever grow.

    `managed_keys` are the config keys the operator owns on this broker (its topic policy's
    allowed keys): one set on the topic but no longer in the spec is reset to the broker's
    default. Other keys on the topic (set by an administrator) are left alone. `observed.config`
    holds only values set on the topic itself, not inherited defaults.
    """
    if observed is None:
        return TopicChanges(create=True)
    grow = desired.partitions if desired.partitions > observed.partitions else None
    refused = observed.partitions if desired.partitions < observed.partitions else None
    changed = {key: value for key, value in desired.config.items() if observed.config.get(key) != value}
    reset = frozenset(key for key in observed.config if key in managed_keys and key not in desired.config)
    return TopicChanges(grow_partitions_to=grow, set_config=changed, reset_config=reset, shrink_refused_from=refused)


def dead_letter_for(spec: EventPipelineSpec, topic: str) -> str | None:
    """The dead-letter topic of `topic` when the pipeline triggers Airflow with dead-lettering on."""
    trigger = spec.airflow.trigger if spec.airflow is not None else None
    if trigger is None or not trigger.dead_letter.enabled:
        return None
    return naming.dead_letter_topic(topic)
