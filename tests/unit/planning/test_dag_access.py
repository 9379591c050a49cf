from eventpipeline.planning.dag_access import (
    DAG_NOT_AUTHORIZED,
    DAG_NOT_FOUND,
    authorization_tag,
    check_asset_consumers,
    check_dag,
    dag_authorized,
)


def test_the_namespace_tag_authorizes_that_namespace_only() -> None:
    assert authorization_tag("shop") == "eventpipeline:shop"
    assert dag_authorized("shop", ["team-a", "eventpipeline:shop"])
    assert not dag_authorized("shop", ["eventpipeline:shop-eu"])
    assert not dag_authorized("shop-eu", ["eventpipeline:shop"])


def test_the_star_tag_authorizes_every_namespace() -> None:
    assert dag_authorized("anything", ["eventpipeline:*"])


def test_a_dag_without_tags_accepts_nobody() -> None:
    assert not dag_authorized("shop", [])
    assert not dag_authorized("shop", ["eventpipeline", "eventpipeline:", "shop"])


def test_an_unauthorized_dag_is_refused_with_the_tag_to_add() -> None:
    refusal = check_dag("shop", "process_orders", ["finance"])
    assert refusal is not None
    assert refusal.reason == DAG_NOT_AUTHORIZED
    assert "'eventpipeline:shop'" in refusal.message
    assert "'process_orders'" in refusal.message


def test_an_authorized_dag_passes() -> None:
    assert check_dag("shop", "process_orders", ["eventpipeline:shop"]) is None


def test_a_missing_dag_is_not_found() -> None:
    refusal = check_dag("shop", "nope", None)
    assert refusal is not None
    assert refusal.reason == DAG_NOT_FOUND


def test_every_dag_scheduled_on_an_asset_must_carry_the_tag() -> None:
    consumers = [("a", ["eventpipeline:shop"]), ("b", []), ("c", ["eventpipeline:other"])]
    refusal = check_asset_consumers("shop", "kafka://shop.orders", consumers)
    assert refusal is not None
    assert refusal.reason == DAG_NOT_AUTHORIZED
    assert "'b', 'c'" in refusal.message
    assert "'a'" not in refusal.message
    assert "'eventpipeline:shop'" in refusal.message


def test_an_asset_whose_dags_all_accept_passes() -> None:
    consumers = [("a", ["eventpipeline:shop"]), ("b", ["eventpipeline:*"])]
    assert check_asset_consumers("shop", "x://y", consumers) is None


def test_a_missing_asset_is_not_found() -> None:
    refusal = check_asset_consumers("shop", "x://y", None)
    assert refusal is not None
    assert refusal.reason == DAG_NOT_FOUND
