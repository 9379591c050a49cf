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
