import re

import pytest

from eventpipeline.planning import naming


def test_default_topic_comes_from_the_template() -> None:
    assert naming.topic_name("{namespace}.{name}", "shop", "orders", None) == "shop.orders"


def test_requested_topic_must_match_the_template() -> None:
    assert naming.topic_name("{namespace}.{name}", "shop", "orders", "shop.orders-v2") == "shop.orders-v2"
    with pytest.raises(naming.NamingError, match="does not match the broker's template"):
        naming.topic_name("{namespace}.{name}", "shop", "orders", "payments.ledger")


def test_generations_alternate_between_two_usernames() -> None:
    base = naming.principal_base("shop", "orders", "checkout")
    assert base == "ep.shop.orders.checkout"
    names = [naming.generation_username(base, generation) for generation in (1, 2, 3)]
    assert names == [f"{base}-a", f"{base}-b", f"{base}-a"]


def test_run_ids_are_deterministic_per_position() -> None:
    assert naming.kafka_run_id("shop.orders", 2, 17) == naming.kafka_run_id("shop.orders", 2, 17)
    assert naming.kafka_run_id("shop.orders", 2, 17) != naming.kafka_run_id("shop.orders", 2, 18)


def test_namespace_patterns() -> None:
    assert naming.namespace_allowed(["*"], "any")
    assert naming.namespace_allowed(["team-*"], "team-a")
    assert not naming.namespace_allowed(["team-*"], "other")
    assert not naming.namespace_allowed([], "any")


def test_connection_id_defaults_to_the_topic() -> None:
    assert naming.connection_id("shop.orders", None) == "shop_orders"
    assert naming.connection_id("shop.orders", "mine") == "mine"


AIRFLOW_RUN_ID = r"^[A-Za-z0-9_.~:+-]+$"


def test_run_ids_are_accepted_by_airflow_even_for_awkward_topics() -> None:
    for topic in ("shop.orders", "a..b", "x" * 245, "shop.orders-" + "y" * 200 + "..z"):
        run_id = naming.kafka_run_id(topic, 9999, 2**62)
        assert re.fullmatch(AIRFLOW_RUN_ID, run_id)
        assert ".." not in run_id
        assert len(run_id) <= naming.RUN_ID_MAX_LENGTH
    assert naming.kafka_run_id("a..b", 0, 1) != naming.kafka_run_id("a.b", 0, 1)
    assert naming.kafka_run_id("shop.orders", 0, 1) == "ep__shop.orders__0__1"


def test_pulsar_run_ids_use_the_short_topic_and_the_message_id() -> None:
    run_id = naming.pulsar_run_id("persistent://eventpipeline/shop/shop.orders", "12:3:-1:-1")
    assert run_id == "ep__shop.orders__12:3:-1:-1"
