import re

import pytest

from eventpipeline.planning import naming


def test_default_topic_comes_from_the_template() -> None:
    assert naming.topic_name("{namespace}.{name}", "shop", "orders", None) == "shop.orders"


def test_requested_topic_must_match_the_template() -> None:
    assert naming.topic_name("{namespace}.{name}", "shop", "orders", "shop.orders-v2") == "shop.orders-v2"
    with pytest.raises(naming.NamingError, match="does not match the broker's template"):
        naming.topic_name("{namespace}.{name}", "shop", "orders", "payments.ledger")


def test_every_generation_has_a_user_name_of_its_own() -> None:
    assert naming.principal_base("shop", "orders", "checkout") == "ep.shop.orders.checkout"
    base = naming.username_base("shop", "orders", "0a1b2c3d-4e5f-6789-abcd-ef0123456789", "checkout")
    assert base == "ep.shop.orders.checkout.0a1b2c3d"
    names = [naming.generation_username(base, generation) for generation in (1, 2, 3)]
    assert names == [f"{base}-g1", f"{base}-g2", f"{base}-g3"]


def test_a_pipeline_created_again_gets_other_user_names() -> None:
    first = naming.username_base("shop", "orders", "11111111-0000-0000-0000-000000000000", "app")
    again = naming.username_base("shop", "orders", "22222222-0000-0000-0000-000000000000", "app")
    assert naming.generation_username(first, 1) != naming.generation_username(again, 1)


@pytest.mark.parametrize(
    ("first", "second"),
    [(("db", "admin-x"), ("db-admin", "x")), (("a.b", "c"), ("a", "b")), (("a-b", "c"), ("a", "b-c"))],
)
def test_secret_names_never_collide(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert naming.secret_name(*first) != naming.secret_name(*second)


def test_principal_identities_never_collide_across_pipelines() -> None:
    assert naming.principal_base("shop", "a.b", "c") != naming.principal_base("shop", "a", "b-c")
    assert naming.principal_base("a-b", "c", "d") != naming.principal_base("a", "b-c", "d")


def test_dead_letter_names_are_reserved() -> None:
    with pytest.raises(naming.NamingError, match="reserved for dead-letter topics"):
        naming.topic_name("{namespace}.{name}", "shop", "orders.dlq", None)
    with pytest.raises(naming.NamingError, match="reserved for dead-letter topics"):
        naming.topic_name("{namespace}.{name}", "shop", "x", "shop.orders.dlq")


INCARNATION = naming.topic_incarnation("ClusterBroker//kafka", "zTkX0uPZQ2mT3m1yNBqL1A")


def test_run_ids_are_deterministic_per_position() -> None:
    assert naming.kafka_run_id("shop.orders", INCARNATION, 2, 17) == naming.kafka_run_id(
        "shop.orders", INCARNATION, 2, 17
    )
    assert naming.kafka_run_id("shop.orders", INCARNATION, 2, 17) != naming.kafka_run_id(
        "shop.orders", INCARNATION, 2, 18
    )


def test_a_recreated_topic_and_another_cluster_give_other_run_ids() -> None:
    recreated = naming.topic_incarnation("ClusterBroker//kafka", "Q7b0tVYbRbeiO2mJ0mZ0cw")
    other_cluster = naming.topic_incarnation("ClusterBroker//kafka-eu", "zTkX0uPZQ2mT3m1yNBqL1A")
    same = naming.topic_incarnation("ClusterBroker//kafka", "zTkX0uPZQ2mT3m1yNBqL1A")
    assert same == INCARNATION
    assert len({INCARNATION, recreated, other_cluster}) == 3
    ids = {naming.kafka_run_id("shop.orders", incarnation, 0, 5) for incarnation in (INCARNATION, recreated)}
    assert len(ids) == 2


def test_namespace_patterns() -> None:
    assert naming.namespace_allowed(["*"], "any")
    assert naming.namespace_allowed(["team-*"], "team-a")
    assert not naming.namespace_allowed(["team-*"], "other")
    assert not naming.namespace_allowed([], "any")


def test_default_connection_ids_of_two_namespaces_never_collide() -> None:
    assert naming.connection_id("a-b", "c", None) != naming.connection_id("a", "b-c", None)
    assert naming.connection_id("shop", "orders", None) == "shop.orders"
    assert naming.connection_id("shop", "orders", "mine") == "mine"
    assert naming.connection_id("shop", "orders", "shop.special") == "shop.special"


def test_a_requested_connection_id_cannot_look_like_another_namespaces() -> None:
    with pytest.raises(naming.NamingError, match="prefix of namespace 'payments'"):
        naming.connection_id("shop", "orders", "payments.ledger")


def test_reference_keys_round_trip() -> None:
    for scope in (None, "shop"):
        key = naming.reference_key("Broker", scope, "kafka")
        assert naming.parse_reference_key(key) == ("Broker", scope, "kafka")


AIRFLOW_RUN_ID = r"^[A-Za-z0-9_.~:+-]+$"


def test_run_ids_are_accepted_by_airflow_even_for_awkward_topics() -> None:
    for topic in ("shop.orders", "a..b", "x" * 245, "shop.orders-" + "y" * 200 + "..z"):
        longest_pulsar_id = f"{2**63}:{2**63}:{2**31}:{2**31}"
        for run_id in (
            naming.kafka_run_id(topic, INCARNATION, 2**31, 2**63),
            naming.pulsar_run_id(f"persistent://t/n/{topic}", INCARNATION, longest_pulsar_id),
        ):
            assert re.fullmatch(AIRFLOW_RUN_ID, run_id)
            assert ".." not in run_id
            assert len(run_id) <= naming.RUN_ID_MAX_LENGTH
    assert naming.kafka_run_id("a..b", INCARNATION, 0, 1) != naming.kafka_run_id("a.b", INCARNATION, 0, 1)
    assert naming.kafka_run_id("shop.orders", INCARNATION, 0, 1) == f"ep__shop.orders__{INCARNATION}__0__1"


def test_pulsar_run_ids_use_the_short_topic_and_the_message_id() -> None:
    run_id = naming.pulsar_run_id("persistent://eventpipeline/shop/shop.orders", INCARNATION, "12:3:-1:-1")
    assert run_id == f"ep__shop.orders__{INCARNATION}__12:3:-1:-1"
