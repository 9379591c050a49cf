"""Commit tracking: per partition, only past the longest finished prefix of offsets."""

from __future__ import annotations

import pytest

from eventpipeline.listener.commits import CommitTracker, PartitionTracker


def test_commit_moves_only_past_the_longest_finished_prefix() -> None:
    tracker = PartitionTracker()
    for offset in (10, 11, 12, 13):
        tracker.take(offset)
    assert tracker.finish(12) is None
    assert tracker.finish(11) is None
    assert tracker.finish(10) == 13
    assert len(tracker) == 1
    assert tracker.finish(13) == 14
    assert len(tracker) == 0


def test_offsets_must_be_taken_in_order() -> None:
    tracker = PartitionTracker()
    tracker.take(5)
    with pytest.raises(ValueError, match="out of order"):
        tracker.take(5)


def test_partitions_commit_independently_and_a_stuck_head_holds_only_its_partition() -> None:
    tracker = CommitTracker()
    for offset in range(3):
        tracker.take(0, offset)
        tracker.take(1, offset)
    tracker.finish(1, 0)
    tracker.finish(1, 1)
    tracker.finish(0, 1)  # partition 0's head (offset 0) is still retrying
    tracker.finish(0, 2)
    assert tracker.pending_commits() == {1: 2}
    assert tracker.uncommitted == 4
    assert tracker.pending_commits() == {}
    tracker.finish(0, 0)
    assert tracker.pending_commits() == {0: 3}


def test_a_failed_commit_is_restored_unless_a_newer_one_came() -> None:
    tracker = CommitTracker()
    tracker.restore({0: 5})
    tracker.take(0, 7)
    tracker.finish(0, 7)
    tracker.restore({0: 6})
    assert tracker.pending_commits() == {0: 8}


def test_dropped_partitions_forget_their_offsets() -> None:
    tracker = CommitTracker()
    tracker.take(0, 1)
    tracker.drop([0])
    tracker.finish(0, 1)
    assert tracker.pending_commits() == {}
    assert tracker.uncommitted == 0
