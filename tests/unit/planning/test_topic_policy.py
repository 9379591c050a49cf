from eventpipeline.api.broker import TopicPolicy
from eventpipeline.planning.topic_policy import QUOTA_EXCEEDED, TOPIC_CONFIG_NOT_ALLOWED, Violation, check_topic_policy

DEFAULT = TopicPolicy()


def reasons(violations: list[Violation]) -> list[str]:
    return [violation.reason for violation in violations]


def test_the_default_policy_accepts_ordinary_topics() -> None:
    config = {"retention.ms": "604800000", "cleanup.policy": "compact", "max.message.bytes": "1048576"}
    assert check_topic_policy(DEFAULT, 6, config, namespace_partitions_in_use=10) == []


def test_keys_that_tax_the_cluster_are_not_allowed_by_default() -> None:
    violations = check_topic_policy(DEFAULT, 1, {"flush.messages": "1", "segment.ms": "1000"}, 0)
    assert reasons(violations) == [TOPIC_CONFIG_NOT_ALLOWED]
    assert "flush.messages, segment.ms" in violations[0].message
    assert "retention.ms" in violations[0].message  # says what is allowed


def test_infinite_retention_is_refused_unless_allowed() -> None:
    violations = check_topic_policy(DEFAULT, 1, {"retention.ms": "-1"}, 0)
    assert reasons(violations) == [TOPIC_CONFIG_NOT_ALLOWED]
    assert "keep forever" in violations[0].message
    assert check_topic_policy(TopicPolicy(allow_infinite_retention=True), 1, {"retention.ms": "-1"}, 0) == []


def test_retention_bounds_and_numbers() -> None:
    assert reasons(check_topic_policy(DEFAULT, 1, {"retention.ms": "10"}, 0)) == [TOPIC_CONFIG_NOT_ALLOWED]
    assert reasons(check_topic_policy(DEFAULT, 1, {"retention.ms": "soon"}, 0)) == [TOPIC_CONFIG_NOT_ALLOWED]
    bounded = TopicPolicy(max_retention_ms=86400000)
    assert "maximum" in check_topic_policy(bounded, 1, {"retention.ms": "86400001"}, 0)[0].message


def test_message_size_is_bounded() -> None:
    violations = check_topic_policy(DEFAULT, 1, {"max.message.bytes": str(64 * 1024 * 1024)}, 0)
    assert reasons(violations) == [TOPIC_CONFIG_NOT_ALLOWED]


def test_a_broker_may_allow_more_keys() -> None:
    policy = TopicPolicy(allowed_config_keys=["segment.ms"])
    assert check_topic_policy(policy, 1, {"segment.ms": "1000"}, 0) == []
    assert reasons(check_topic_policy(policy, 1, {"retention.ms": "100000"}, 0)) == [TOPIC_CONFIG_NOT_ALLOWED]


def test_partitions_per_pipeline_are_bounded() -> None:
    violations = check_topic_policy(DEFAULT, 65, {}, 0)
    assert reasons(violations) == [QUOTA_EXCEEDED]
    assert "at most 64" in violations[0].message


def test_partitions_per_namespace_are_bounded() -> None:
    violations = check_topic_policy(DEFAULT, 10, {}, namespace_partitions_in_use=250)
    assert reasons(violations) == [QUOTA_EXCEEDED]
    assert "at most 6" in violations[0].message
    assert check_topic_policy(DEFAULT, 6, {}, namespace_partitions_in_use=250) == []


def test_a_topic_that_has_its_partitions_already_is_not_reported_after_a_lower_quota() -> None:
    policy = TopicPolicy(max_partitions_per_pipeline=4, max_partitions_per_namespace=8)
    assert check_topic_policy(policy, 6, {}, namespace_partitions_in_use=20, current_partitions=6) == []
    assert reasons(check_topic_policy(policy, 7, {}, 20, current_partitions=6)) == [QUOTA_EXCEEDED]
