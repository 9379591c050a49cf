"""Messages that wait for their DAG: a message whose schema version is newer than the DAG states
(tag `eventpipeline-schema:<version>`) is held — not triggered again until it is due, not
committed, not dead-lettered — and so is everything after it on its partition, in order.

Every `recheck` seconds the first held message of each partition is tried again (a probe: the
trigger reads the DAG's tags, which it re-reads at least that often while a DAG is behind). A
probe that gets past the version check ends the partition's hold: the messages behind it go to
Airflow in the order they came. A held message is waiting for a person (the DAG's owner), not
for the listener, so it is no stall; the worker's window still bounds how many are held.

Used from the worker's thread only.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

# How often a held partition's first message is tried again; the trigger re-reads the DAG's tags
# at this period too while the DAG is behind, so a DAG update releases within about twice this.
HOLD_RECHECK_SECONDS = 10.0


class Holdable(Protocol):
    @property
    def sequence(self) -> int: ...  # the order the worker took the messages in

    @property
    def partition(self) -> int: ...

    @property
    def schema_version(self) -> int | None: ...


T = TypeVar("T", bound=Holdable)


@dataclass
class _Partition(Generic[T]):
    dag_version: int
    probe_at: float
    items: list[T] = field(default_factory=list)  # in the order taken; the first is the probe
    probing: bool = False


@dataclass(frozen=True)
class HoldSummary:
    """What status says about the holds: both versions and where."""

    dag_version: int
    held_versions: tuple[int, ...]
    partitions: tuple[int, ...]
    messages: int


class Holds(Generic[T]):
    def __init__(self, clock: Callable[[], float] = time.monotonic, recheck: float = HOLD_RECHECK_SECONDS) -> None:
        self._clock = clock
        self._recheck = recheck
        self._partitions: dict[int, _Partition[T]] = {}

    def __len__(self) -> int:
        return sum(len(p.items) for p in self._partitions.values())

    def hold(self, item: T, dag_version: int) -> bool:
        """The DAG handles versions up to `dag_version` only: `item` waits. True when its partition
        was not held before (a hold begins)."""
        held = self._partitions.get(item.partition)
        begins = held is None
        if held is None:
            held = self._partitions[item.partition] = _Partition(dag_version, self._clock() + self._recheck)
        elif held.probing and held.items and held.items[0] is item:
            held.probing = False  # the probe was turned back: try again after `recheck`
            held.probe_at = self._clock() + self._recheck
        held.dag_version = dag_version
        if not any(existing is item for existing in held.items):
            bisect.insort(held.items, item, key=lambda entry: entry.sequence)
        return begins

    def queue_behind(self, item: T) -> bool:
        """If `item`'s partition is held, `item` waits behind (True); else it may go (False)."""
        held = self._partitions.get(item.partition)
        if held is None:
            return False
        bisect.insort(held.items, item, key=lambda entry: entry.sequence)
        return True

    def due_probes(self) -> list[T]:
        """The first message of each held partition whose recheck is due; each is tried again."""
        now = self._clock()
        due = []
        for held in self._partitions.values():
            if not held.probing and held.items and held.probe_at <= now:
                held.probing = True
                due.append(held.items[0])
        return due

    def next_probe_in(self, longest: float) -> float:
        """Seconds until the next probe is due, at most `longest`."""
        times = [held.probe_at for held in self._partitions.values() if not held.probing]
        if not times:
            return longest
        return max(0.0, min(longest, min(times) - self._clock()))

    def passed(self, item: T) -> list[T] | None:
        """`item` got past the version check. If it was its partition's probe, the hold ends:
        the messages behind it, in order, to be sent on; else None (nothing changes)."""
        held = self._partitions.get(item.partition)
        if held is None or not held.probing or not held.items or held.items[0] is not item:
            return None
        del self._partitions[item.partition]
        return held.items[1:]

    def clear(self) -> None:
        """A new consumer delivers every held message again."""
        self._partitions.clear()

    def summary(self) -> HoldSummary | None:
        if not self._partitions:
            return None
        dag_version = min(held.dag_version for held in self._partitions.values())
        versions = {
            item.schema_version
            for held in self._partitions.values()
            for item in held.items
            if item.schema_version is not None and item.schema_version > dag_version
        }
        return HoldSummary(
            dag_version=dag_version,
            held_versions=tuple(sorted(versions)),
            partitions=tuple(sorted(self._partitions)),
            messages=len(self),
        )
