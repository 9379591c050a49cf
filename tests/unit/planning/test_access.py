from eventpipeline.api.pipeline import EventPipelineSpec
from eventpipeline.planning.access import (
    KafkaAcl,
    desired_kafka_acls,
    desired_pulsar_grants,
    diff_owned,
    diff_pulsar_grants,
    untyped_kafka_principals,
)
from eventpipeline.planning.principals import grantees

SPEC = EventPipelineSpec.model_validate(
    {
        "brokerRef": {"name": "k"},
        "producers": [{"name": "checkout"}],
        "externalPrincipals": [{"principal": "User:analytics", "access": "Consume"}],
        "airflow": {"instanceRef": {"name": "main"}},
    }
)
USERNAMES = {"checkout": ["ep.shop.orders.checkout-a"], "listener": ["ep.shop.orders.listener-a"]}


def test_producer_gets_write_and_describe_only() -> None:
    acls = desired_kafka_acls("shop.orders", grantees(SPEC, "shop", "orders", USERNAMES))
    producer = {acl for acl in acls if acl.principal == "User:ep.shop.orders.checkout-a"}
    assert producer == {
        KafkaAcl("User:ep.shop.orders.checkout-a", "TOPIC", "shop.orders", "WRITE"),
        KafkaAcl("User:ep.shop.orders.checkout-a", "TOPIC", "shop.orders", "DESCRIBE"),
    }


def test_listener_reads_topic_and_its_own_group() -> None:
    acls = desired_kafka_acls("shop.orders", grantees(SPEC, "shop", "orders", USERNAMES))
    listener = {acl for acl in acls if acl.principal == "User:ep.shop.orders.listener-a"}
    assert listener == {
        KafkaAcl("User:ep.shop.orders.listener-a", "TOPIC", "shop.orders", "READ"),
        KafkaAcl("User:ep.shop.orders.listener-a", "TOPIC", "shop.orders", "DESCRIBE"),
        KafkaAcl("User:ep.shop.orders.listener-a", "GROUP", "ep.shop.orders.listener", "READ"),
    }


def test_external_principal_is_used_as_given_and_has_no_wildcards() -> None:
    acls = desired_kafka_acls("shop.orders", grantees(SPEC, "shop", "orders", USERNAMES))
    assert {acl.principal for acl in acls} >= {"User:analytics"}
    assert all("*" not in acl.resource_name and "*" not in acl.principal for acl in acls)


def test_both_generations_have_access_during_grace() -> None:
    usernames = {"checkout": ["ep.shop.orders.checkout-b", "ep.shop.orders.checkout-a"]}
    spec = SPEC.model_copy(update={"airflow": None, "external_principals": []})
    acls = desired_kafka_acls("shop.orders", grantees(spec, "shop", "orders", usernames))
    assert {acl.principal for acl in acls} == {"User:ep.shop.orders.checkout-a", "User:ep.shop.orders.checkout-b"}


def test_diff_removes_only_owned_acls() -> None:
    wanted = KafkaAcl("User:ep.a", "TOPIC", "t", "WRITE")
    stale = KafkaAcl("User:ep.old", "TOPIC", "t", "WRITE")
    foreign = KafkaAcl("User:someone", "TOPIC", "t", "READ")
    result = diff_owned({wanted}, {stale, foreign}, owned={stale})
    assert result.to_add == {wanted}
    assert result.to_remove == {stale}


def test_pulsar_grants_diff() -> None:
    desired = desired_pulsar_grants(grantees(SPEC, "shop", "orders", USERNAMES))
    assert desired["ep.shop.orders.checkout-a"] == {"produce"}
    assert desired["ep.shop.orders.listener-a"] == {"consume"}
    actual = {
        "ep.shop.orders.checkout-a": frozenset({"produce"}),
        "ep.shop.orders.gone-a": frozenset({"produce"}),
        "admin-team": frozenset({"consume"}),
    }
    to_grant, to_revoke = diff_pulsar_grants(desired, actual, owned_roles={"ep.shop.orders.gone-a"})
    assert "ep.shop.orders.checkout-a" not in to_grant
    assert "ep.shop.orders.listener-a" in to_grant
    assert to_revoke == {"ep.shop.orders.gone-a"}


def test_only_the_listener_may_write_the_dead_letter_topic() -> None:
    acls = desired_kafka_acls("shop.orders", grantees(SPEC, "shop", "orders", USERNAMES), "shop.orders.dlq")
    on_dlq = {acl for acl in acls if acl.resource_name == "shop.orders.dlq"}
    assert on_dlq == {
        KafkaAcl("User:ep.shop.orders.listener-a", "TOPIC", "shop.orders.dlq", "WRITE"),
        KafkaAcl("User:ep.shop.orders.listener-a", "TOPIC", "shop.orders.dlq", "DESCRIBE"),
    }
    grants = desired_pulsar_grants(grantees(SPEC, "shop", "orders", USERNAMES), dead_letter_topic=True)
    assert grants == {"ep.shop.orders.listener-a": frozenset({"produce"})}


def test_kafka_principals_without_a_type_are_refused() -> None:
    given = ["User:analytics", "Group:ops", "User:CN=bi,OU=data", "analytics", "ünï", ":x", "User:", "1:x"]
    assert untyped_kafka_principals(given) == sorted(["analytics", "ünï", ":x", "User:", "1:x"])
