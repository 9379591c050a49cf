from eventpipeline.planning.topic import DesiredTopic, ObservedTopic, plan_topic


def test_missing_topic_is_created() -> None:
    assert plan_topic(DesiredTopic("t", 3, 1), None).create


def test_partitions_grow() -> None:
    changes = plan_topic(DesiredTopic("t", 6, 1), ObservedTopic("t", 3))
    assert changes.grow_partitions_to == 6


def test_partitions_never_shrink() -> None:
    changes = plan_topic(DesiredTopic("t", 2, 1), ObservedTopic("t", 3))
    assert changes.grow_partitions_to is None
    assert changes.shrink_refused_from == 3
    assert changes.up_to_date


def test_only_differing_config_is_set() -> None:
    changes = plan_topic(
        DesiredTopic("t", 1, 1, {"retention.ms": "1000", "cleanup.policy": "delete"}),
        ObservedTopic("t", 1, {"retention.ms": "5000", "cleanup.policy": "delete"}),
    )
    assert changes.set_config == {"retention.ms": "1000"}


def test_a_managed_key_removed_from_the_spec_is_reset() -> None:
    changes = plan_topic(
        DesiredTopic("t", 1, 1, {"retention.ms": "1000"}),
        ObservedTopic("t", 1, {"retention.ms": "1000", "cleanup.policy": "compact", "segment.ms": "5"}),
        managed_keys={"retention.ms", "cleanup.policy"},
    )
    assert changes.reset_config == {"cleanup.policy"}
    assert not changes.set_config
    assert not changes.up_to_date


def test_keys_the_operator_does_not_manage_are_left_alone() -> None:
    changes = plan_topic(DesiredTopic("t", 1, 1), ObservedTopic("t", 1, {"segment.ms": "5"}), managed_keys={"x"})
    assert changes.reset_config == frozenset()
    assert changes.up_to_date
