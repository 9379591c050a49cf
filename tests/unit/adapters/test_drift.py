"""A broker's drift snapshot: one listing per period shared by every pipeline, own writes read fresh."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eventpipeline.adapters.drift import Listing, RecentReads, Snapshot, WatchedCopies, drift_reads
from eventpipeline.adapters.kafka import SCRAM_DESCRIBE_BATCH, KafkaState, acl_users, chunks
from eventpipeline.planning.access import KafkaAcl


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _snapshot(clock: Clock, acls: set[str], during: Callable[[], None] = lambda: None) -> Snapshot[set[str]]:
    def fetch() -> Listing[set[str]]:
        during()
        return Listing(set(acls), frozenset({("acl", "unreadable")}))

    return Snapshot(fetch, clock)


def _has(snapshot: Snapshot[set[str]], acl: str) -> bool | None:
    cached = snapshot.lookup([("acl", acl)], lambda state: acl in state)
    return None if cached is None else cached.value


def test_outside_a_drift_check_every_read_goes_to_the_broker() -> None:
    snapshot = _snapshot(Clock(), {"a"})
    assert _has(snapshot, "a") is None
    assert snapshot.listings == 0


def test_a_thousand_drift_reads_in_a_period_cost_one_listing() -> None:
    clock = Clock()
    snapshot = _snapshot(clock, {"a"})
    with drift_reads(300):
        answers = [_has(snapshot, "a" if i % 2 else "b") for i in range(1000)]
        clock.now += 299
        assert _has(snapshot, "a") is True
    assert answers.count(True) == 500 and answers.count(False) == 500
    assert snapshot.listings == 1


def test_a_snapshot_older_than_the_period_is_listed_again_and_sees_changes_by_hand() -> None:
    clock, acls = Clock(), {"a"}
    snapshot = _snapshot(clock, acls)
    with drift_reads(300):
        assert _has(snapshot, "a") is True
        acls.discard("a")  # deleted by hand
        clock.now += 300
        assert _has(snapshot, "a") is False
    assert snapshot.listings == 2


def test_what_the_operator_wrote_since_the_listing_is_read_fresh() -> None:
    clock = Clock()
    snapshot = _snapshot(clock, set())
    with drift_reads(300):
        assert _has(snapshot, "a") is False
        clock.now += 10
        snapshot.touched([("acl", "a")])
        assert _has(snapshot, "a") is None  # the caller asks the broker
        assert _has(snapshot, "b") is False
        clock.now += 300  # a listing after the write knows it
        assert _has(snapshot, "a") is False
        assert snapshot.listings == 2


def test_a_write_while_the_listing_is_on_its_way_stays_fresh_in_it() -> None:
    clock = Clock()
    snapshot: Snapshot[set[str]]

    def write_meanwhile() -> None:
        clock.now += 1
        snapshot.touched([("acl", "a")])

    snapshot = _snapshot(clock, set(), during=write_meanwhile)
    with drift_reads(300):
        assert _has(snapshot, "a") is None
        assert _has(snapshot, "b") is False


def test_what_the_listing_could_not_read_is_read_fresh() -> None:
    snapshot = _snapshot(Clock(), {"unreadable"})
    with drift_reads(300):
        assert _has(snapshot, "unreadable") is None


def test_a_failed_listing_raises_and_the_next_read_lists_again() -> None:
    clock, calls = Clock(), []

    def fetch() -> Listing[set[str]]:
        calls.append(clock.now)
        if len(calls) == 1:
            raise RuntimeError("broker down")
        return Listing({"a"})

    snapshot = Snapshot(fetch, clock)
    with drift_reads(300):
        with pytest.raises(RuntimeError):
            _has(snapshot, "a")
        assert _has(snapshot, "a") is True
    assert len(calls) == 2


def test_a_listing_slower_than_the_period_still_serves_the_checks_after_it() -> None:
    clock = Clock()

    def slow() -> Listing[set[str]]:
        clock.now += 5  # longer than the 4 s period
        return Listing({"a"})

    snapshot = Snapshot(slow, clock)
    with drift_reads(4):
        assert _has(snapshot, "a") is True
        clock.now += 3
        assert _has(snapshot, "a") is True
    assert snapshot.listings == 1


def test_a_read_every_pipeline_repeats_is_shared_by_the_drift_checks_of_a_period() -> None:
    clock, reads = Clock(), []
    recent: RecentReads[str, str] = RecentReads(clock)

    def read() -> str:
        reads.append(clock.now)
        return f"broker@{clock.now:.0f}"

    assert recent.get("broker", read) == "broker@1000"  # a change handler: fresh, and kept
    with drift_reads(300.0):
        assert {recent.get("broker", read) for _ in range(1000)} == {"broker@1000"}
        clock.now += 300.0  # a period later: read again, then shared again
        assert recent.get("broker", read) == recent.get("broker", read) == "broker@1300"
    assert recent.get("broker", read) == "broker@1300" and reads == [1000.0, 1300.0, 1300.0]


def test_a_failed_read_is_not_kept() -> None:
    recent: RecentReads[str, str] = RecentReads(Clock())

    def fail() -> str:
        raise RuntimeError("API server unreachable")

    with drift_reads(300.0), pytest.raises(RuntimeError):
        recent.get("broker", fail)
    with drift_reads(300.0):
        assert recent.get("broker", lambda: "read") == "read"


def _copy(copies: WatchedCopies[str, str], key: str = "p") -> str | None:
    found = copies.lookup(key)
    return None if found is None else found.value


def test_a_drift_check_takes_the_watchs_copy_and_every_other_run_reads_fresh() -> None:
    copies: WatchedCopies[str, str] = WatchedCopies(Clock())
    copies.seen("p", "7", "body at 7")
    assert _copy(copies) is None
    with drift_reads(300.0):
        assert _copy(copies) == "body at 7"
        assert _copy(copies, "unknown") is None


def test_after_our_own_write_the_copy_serves_once_the_watch_shows_that_write() -> None:
    clock = Clock()
    copies: WatchedCopies[str, str] = WatchedCopies(clock)
    copies.seen("p", "7", "body at 7")
    copies.written("p", "8")
    with drift_reads(300.0):
        assert _copy(copies) is None  # our write is not in the copy yet
        copies.seen("p", "8", "body at 8")
        assert _copy(copies) == "body at 8"
        copies.seen("p", "9", "the listener's report at 9")
        assert _copy(copies) == "the listener's report at 9"


def test_a_write_the_watch_showed_before_it_was_recorded_is_not_waited_for() -> None:
    copies: WatchedCopies[str, str] = WatchedCopies(Clock())
    copies.seen("p", "8", "body at 8")
    copies.written("p", "8")
    with drift_reads(300.0):
        assert _copy(copies) == "body at 8"


def test_a_write_never_seen_as_such_or_of_unknown_outcome_stops_counting_after_a_period() -> None:
    clock = Clock()
    copies: WatchedCopies[str, str] = WatchedCopies(clock)
    copies.seen("p", "9", "body at 9")  # a later event overtook our write at 8
    copies.written("p", "8")
    copies.seen("q", "1", "q at 1")
    copies.written("q", None)
    with drift_reads(300.0):
        assert _copy(copies) is None and _copy(copies, "q") is None
        clock.now += 300
        assert _copy(copies) == "body at 9" and _copy(copies, "q") == "q at 1"


def test_a_forgotten_object_is_read_fresh() -> None:
    copies: WatchedCopies[str, str] = WatchedCopies(Clock())
    copies.seen("p", "7", "body at 7")
    copies.forget("p")
    assert len(copies) == 0
    with drift_reads(300.0):
        assert _copy(copies) is None


def test_a_kafka_listing_answers_a_pipelines_acls_by_resource() -> None:
    acls = [
        KafkaAcl("User:a", "TOPIC", "shop.orders", "WRITE"),
        KafkaAcl("User:b", "TOPIC", "shop.orders", "READ"),
        KafkaAcl("User:b", "GROUP", "shop.orders", "READ"),
        KafkaAcl("User:c", "TOPIC", "other", "READ"),
    ]
    state = KafkaState.of({}, set(), acls)
    assert state.acls_on([("TOPIC", "shop.orders"), ("GROUP", "shop.orders")]) == set(acls[:3])
    assert state.acls_on([("TOPIC", "absent")]) == set()


def test_a_kafka_listing_answers_only_for_the_users_it_checked() -> None:
    acls = [KafkaAcl("User:a", "TOPIC", "t", "WRITE"), KafkaAcl("User:b", "TOPIC", "t", "READ")]
    checked = acl_users([*acls, KafkaAcl("Group:ops", "TOPIC", "t", "READ")])
    assert checked == {"a", "b"}
    state = KafkaState.of({}, {"a"}, acls, checked)
    assert state.users_among({"a", "b"}) == {"a"}  # b was asked for: it has no credential
    assert state.users_among({"a", "c"}) is None  # c has no ACL, so it was not asked for: read it fresh


def test_the_scram_listing_asks_for_users_in_batches_below_librdkafkas_limit() -> None:
    users = {f"user-{index:05d}" for index in range(20_001)}
    batches = list(chunks(users, SCRAM_DESCRIBE_BATCH))
    assert [len(batch) for batch in batches] == [SCRAM_DESCRIBE_BATCH] * 10 + [1]
    assert SCRAM_DESCRIBE_BATCH < 10_000
    assert {user for batch in batches for user in batch} == users
