"""Which listener replica serves a pipeline, and what its worker needs from the pipeline."""

from __future__ import annotations

from collections import Counter

from eventpipeline.planning import handoff
from eventpipeline.planning import serving as planning
from eventpipeline.planning.serving import Shard

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
        {"name": "listener", "role": "listener", "secretName": "orders.listener.credentials", "username": "u",
         "generation": 1},
    ],
}  # fmt: skip
HANDED_OVER = {
    "username": "u",
    "password": "p",
    **handoff.describe("shop.orders", "shop.orders.dlq", "Kafka", None),
}


def test_a_pipeline_gets_a_worker_once_the_operator_handed_over_topic_and_credential() -> None:
    assert isinstance(planning.wanted_pipeline(pipeline_body(**READY_STATUS), None), str)
    wanted = planning.wanted_pipeline(pipeline_body(), HANDED_OVER)
    assert isinstance(wanted, planning.Wanted)
    config = wanted.config
    assert (config.topic, config.broker_type) == ("shop.orders", "Kafka")
    assert config.group == "ep.shop.orders.listener"
    assert config.dead_letter_topic == "shop.orders.dlq"
    # The listener's own copy in its own namespace, never a name taken from status.
    assert (config.secret_namespace, config.secret_name) == ("eventpipeline-system", "listener.shop.orders")
    assert config.trigger.dag_id == "process"


def test_the_topic_comes_from_the_hand_off_never_from_status() -> None:
    forged = {**READY_STATUS, "topic": "payments.ledger", "brokerType": "Pulsar"}
    wanted = planning.wanted_pipeline(pipeline_body(**forged), HANDED_OVER)
    assert isinstance(wanted, planning.Wanted)
    assert (wanted.config.topic, wanted.config.broker_type) == ("shop.orders", "Kafka")
    odd = {**HANDED_OVER, "brokerType": "Rabbit"}
    assert isinstance(planning.wanted_pipeline(pipeline_body(), odd), str)


def test_suspended_deleted_and_trigger_less_pipelines_get_no_worker() -> None:
    body = pipeline_body()
    body["spec"]["suspend"] = True  # type: ignore[index]
    assert planning.wanted_pipeline(body, HANDED_OVER) == "suspended"
    body = pipeline_body()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
    assert planning.wanted_pipeline(body, HANDED_OVER) == "being deleted"
    body = pipeline_body()
    del body["spec"]["airflow"]["trigger"]  # type: ignore[index]
    assert planning.wanted_pipeline(body, HANDED_OVER) == "no airflow.trigger"
