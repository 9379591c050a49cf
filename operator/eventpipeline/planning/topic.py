"""Topic planning: what to create or change so the broker's topic matches the spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DesiredTopic:
    name: str
    partitions: int
    replication_factor: int | None
    config: Mapping[str, str] = field(default_factory=dict)


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
    # Partitions on the broker above the spec: never shrunk, reported.
    shrink_refused_from: int | None = None

    @property
    def up_to_date(self) -> bool:
        return not self.create and self.grow_partitions_to is None and not self.set_config


def plan_topic(desired: DesiredTopic, observed: ObservedTopic | None) -> TopicChanges:
    """Compare desired and observed topic; partitions only ever grow."""
    if observed is None:
        return TopicChanges(create=True)
    grow = desired.partitions if desired.partitions > observed.partitions else None
    refused = observed.partitions if desired.partitions < observed.partitions else None
    changed = {key: value for key, value in desired.config.items() if observed.config.get(key) != value}
    return TopicChanges(grow_partitions_to=grow, set_config=changed, shrink_refused_from=refused)
