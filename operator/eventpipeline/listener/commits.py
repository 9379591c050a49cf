"""Which Kafka offsets may be committed: per partition, just past the longest finished prefix.

Pure bookkeeping (no client library), used by the Kafka source; tested in milliseconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping


class PartitionTracker:
    """Offsets of one Kafka partition taken but not yet committable.

    Triggers finish out of order (maxInFlight of them run at once); the committed offset only
    ever moves to just past the longest finished prefix, so a crash re-delivers every message
    whose run is not known to exist — and a redelivery is a harmless 409.
    """

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()

    def __len__(self) -> int:
        return len(self._order)

    def take(self, offset: int) -> None:
        if self._order and offset <= self._order[-1]:
            raise ValueError(f"offset {offset} taken out of order after {self._order[-1]}")
        self._order.append(offset)

    def finish(self, offset: int) -> int | None:
        """Mark one offset done; the new offset to commit (next to read), or None if unchanged."""
        if offset not in self._order:  # already committed, or from before a rebalance/seek
            return None
        self._done.add(offset)
        committable = None
        while self._order and self._order[0] in self._done:
            head = self._order.popleft()
            self._done.discard(head)
            committable = head + 1
        return committable


class CommitTracker:
    """PartitionTrackers by partition, and the offsets waiting to be committed."""

    def __init__(self) -> None:
        self._partitions: dict[int, PartitionTracker] = {}
        self._to_commit: dict[int, int] = {}

    @property
    def uncommitted(self) -> int:
        """Messages taken and not yet committable: the window maxInFlight bounds."""
        return sum(len(tracker) for tracker in self._partitions.values())

    def take(self, partition: int, offset: int) -> None:
        self._partitions.setdefault(partition, PartitionTracker()).take(offset)

    def finish(self, partition: int, offset: int) -> None:
        tracker = self._partitions.get(partition)
        if tracker is None:
            return
        committable = tracker.finish(offset)
        if committable is not None:
            self._to_commit[partition] = committable

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget partitions taken away (rebalance) or rewound (replay): their messages come again."""
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._to_commit.pop(partition, None)

    def pending_commits(self) -> dict[int, int]:
        """Offsets to commit now (partition → next offset to read); cleared by the call."""
        pending, self._to_commit = self._to_commit, {}
        return pending

    def restore(self, pending: Mapping[int, int]) -> None:
        """Put back commits that failed, unless a newer one came meanwhile."""
        for partition, offset in pending.items():
            if self._to_commit.get(partition, -1) < offset:
                self._to_commit[partition] = offset
