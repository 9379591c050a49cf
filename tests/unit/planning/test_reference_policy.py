from eventpipeline.planning.reference_policy import (
    allow_namespaced_references,
    namespaced_reference_allowed,
    namespaced_reference_refusal,
)


def test_namespaced_brokers_and_airflow_instances_are_off_by_default() -> None:
    assert not allow_namespaced_references({})
    assert not allow_namespaced_references({"EVENTPIPELINE_ALLOW_NAMESPACED_REFERENCES": "no"})
    assert allow_namespaced_references({"EVENTPIPELINE_ALLOW_NAMESPACED_REFERENCES": "true"})


def test_cluster_kinds_are_always_allowed() -> None:
    assert namespaced_reference_allowed("ClusterBroker", False)
    assert namespaced_reference_allowed("ClusterAirflowInstance", False)


def test_namespaced_kinds_follow_the_setting() -> None:
    assert not namespaced_reference_allowed("Broker", False)
    assert not namespaced_reference_allowed("AirflowInstance", False)
    assert namespaced_reference_allowed("Broker", True)


def test_the_refusal_says_what_to_reference_instead() -> None:
    message = namespaced_reference_refusal("Broker", "mine", False)
    assert message is not None
    assert "ClusterBroker" in message
    assert namespaced_reference_refusal("Broker", "mine", True) is None
