from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from eventpipeline.listener import planning
from eventpipeline.listener.planning import CommitTracker, Message, Outcome, PartitionTracker, Shard


def message(value: bytes | None = b"hello", key: bytes | None = b"k", offset: int = 7) -> Message:
    return Message(
        topic="shop.orders",
        partition=1,
        position=str(offset),
        run_id=f"ep__shop.orders__1__{offset}",
        key=key,
        value=value,
        headers=(("trace", b"abc"), ("bin", b"\xff\x00")),
        timestamp_ms=1_700_000_000_123,
        offset=offset,
    )


# -- sharding ---------------------------------------------------------------------------------


def test_every_pipeline_has_exactly_one_replica() -> None:
    keys = [f"ns-{i}/p-{i}" for i in range(300)]
    for replicas in (1, 2, 3, 5):
        owners = [planning.owner_replica(key, replicas) for key in keys]
        assert all(0 <= owner < replicas for owner in owners)
        if replicas > 1:
            counts = Counter(owners)
            assert min(counts.values()) > len(keys) / replicas / 2, counts


def test_adding_a_replica_moves_only_the_pipelines_it_wins() -> None:
    keys = [f"ns/p-{i}" for i in range(500)]
    before = {key: planning.owner_replica(key, 3) for key in keys}
    after = {key: planning.owner_replica(key, 4) for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert all(after[key] == 3 for key in moved)
    assert len(moved) < len(keys) / 2


def test_dedicated_pipelines_are_served_only_by_their_dedicated_listener() -> None:
    shared = Shard(replicas=1, index=0)
    dedicated = Shard(dedicated=frozenset({"shop/orders"}))
    assert shared.serves("shop/other", wants_dedicated=False)
    assert not shared.serves("shop/orders", wants_dedicated=True)
    assert dedicated.serves("shop/orders", wants_dedicated=True)
    assert not dedicated.serves("shop/other", wants_dedicated=False)


def test_replica_index_comes_from_the_pod_ordinal() -> None:
    assert planning.replica_index_from_hostname("eventpipeline-listener-3") == 3
    assert planning.replica_index_from_hostname("laptop") is None


# -- retries ----------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum() -> None:
    delays = [planning.backoff_delay(n, timedelta(seconds=5), timedelta(seconds=60)) for n in range(1, 7)]
    assert delays == [5, 10, 20, 40, 60, 60]
    assert planning.backoff_delay(10_000, timedelta(seconds=1), timedelta(minutes=5)) == 300


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.CREATED),
        (201, Outcome.CREATED),
        (409, Outcome.DUPLICATE),
        (400, Outcome.REFUSED),
        (404, Outcome.REFUSED),
        (422, Outcome.REFUSED),
        (401, Outcome.TRANSIENT),
        (403, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (None, Outcome.TRANSIENT),
    ],
)
def test_airflow_answers_map_to_what_happens_to_the_message(status: int | None, outcome: Outcome) -> None:
    assert planning.classify(status) is outcome


def test_a_refused_message_is_dead_lettered_after_the_retry_limit() -> None:
    assert not planning.dead_letter_due(1, 2)
    assert not planning.dead_letter_due(2, 2)
    assert planning.dead_letter_due(3, 2)
    assert planning.dead_letter_due(1, 0)


# -- run conf ---------------------------------------------------------------------------------


def test_run_body_has_the_deterministic_id_and_the_message_in_conf() -> None:
    body = planning.dag_run_body(message(), "Kafka")
    assert body["dag_run_id"] == "ep__shop.orders__1__7"
    assert body["logical_date"] is None
    conf = body["conf"]
    assert conf["topic"] == "shop.orders" and conf["partition"] == 1 and conf["offset"] == 7
    assert conf["key"] == "k" and conf["value"] == "hello"
    assert "valueEncoding" not in conf
    assert conf["headers"] == {"trace": "abc", "bin": "base64:" + base64.b64encode(b"\xff\x00").decode()}
    assert conf["timestamp"] == "2023-11-14T22:13:20.123Z"


def test_binary_values_travel_as_base64_and_say_so() -> None:
    conf = planning.run_conf(message(value=b"\x80\x81", key=None), "Pulsar")
    assert conf["value"] == base64.b64encode(b"\x80\x81").decode()
    assert conf["valueEncoding"] == "base64"
    assert conf["key"] is None
    assert "offset" not in conf and conf["messageId"] == "7"


# -- commits ----------------------------------------------------------------------------------


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


# -- replay -----------------------------------------------------------------------------------


def test_replay_time_is_rfc3339_with_a_zone() -> None:
    assert planning.parse_replay_from("2026-01-31T12:00:00Z") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert planning.parse_replay_from("2026-01-31T13:00:00+01:00") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    with pytest.raises(planning.ReplayRequestError, match="no time zone"):
        planning.parse_replay_from("2026-01-31T12:00:00")
    with pytest.raises(planning.ReplayRequestError, match="not an RFC 3339 time"):
        planning.parse_replay_from("yesterday")


def test_a_replay_runs_once_per_annotation_value() -> None:
    assert planning.replay_wanted("2026-01-31T12:00:00Z", None)
    assert not planning.replay_wanted("2026-01-31T12:00:00Z", "2026-01-31T12:00:00Z")
    assert planning.replay_wanted("2026-01-31T13:00:00Z", "2026-01-31T12:00:00Z")
    assert not planning.replay_wanted(None, None)


# -- which pipelines ----------------------------------------------------------------------------


def pipeline_body(**status: object) -> dict[str, object]:
    return {
        "metadata": {"namespace": "shop", "name": "orders", "uid": "u1", "annotations": {}},
        "spec": {
            "brokerRef": {"name": "local-kafka"},
            "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": "process"}},
        },
        "status": status,
    }


READY_STATUS = {
    "topic": "shop.orders",
    "brokerType": "Kafka",
    "principals": [
        {"name": "listener", "role": "listener", "secretName": "orders-listener-credentials", "username": "u",
         "generation": 1},
    ],
}  # fmt: skip


def test_a_pipeline_gets_a_worker_once_the_operator_resolved_topic_and_credential() -> None:
    assert isinstance(planning.wanted_pipeline(pipeline_body()), str)
    wanted = planning.wanted_pipeline(pipeline_body(**READY_STATUS))
    assert isinstance(wanted, planning.Wanted)
    config = wanted.config
    assert config.group == "ep.shop.orders.listener"
    assert config.dead_letter_topic == "shop.orders.dlq"
    assert config.secret_name == "orders-listener-credentials"
    assert config.trigger.dag_id == "process"


def test_suspended_deleted_and_trigger_less_pipelines_get_no_worker() -> None:
    body = pipeline_body(**READY_STATUS)
    body["spec"]["suspend"] = True  # type: ignore[index]
    assert planning.wanted_pipeline(body) == "suspended"
    body = pipeline_body(**READY_STATUS)
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
    assert planning.wanted_pipeline(body) == "being deleted"
    body = pipeline_body(**READY_STATUS)
    del body["spec"]["airflow"]["trigger"]  # type: ignore[index]
    assert planning.wanted_pipeline(body) == "no airflow.trigger"
