from eventpipeline.planning.conditions import Outcome, changed, merge_conditions, ready_summary


def test_transition_time_moves_only_when_status_flips() -> None:
    first = merge_conditions([], [Outcome("TopicReady", "False", "Pending")], 1, "T1")
    same = merge_conditions(first, [Outcome("TopicReady", "False", "StillPending")], 2, "T2")
    flipped = merge_conditions(same, [Outcome("TopicReady", "True", "Created")], 2, "T3")
    assert same[0].last_transition_time == "T1"
    assert flipped[0].last_transition_time == "T3"
    assert changed(first, same)[0].reason == "StillPending"


def test_ready_summarises_the_first_failing_part() -> None:
    outcomes = [Outcome("TopicReady", "True", "Ok"), Outcome("AccessReady", "False", "KafkaError", "broker down")]
    summary = ready_summary(outcomes)
    assert (summary.status, summary.reason, summary.message) == ("False", "KafkaError", "broker down")
    assert ready_summary(outcomes[:1]).status == "True"


def test_ready_comes_first() -> None:
    merged = merge_conditions([], [Outcome("TopicReady", "True", "Ok"), Outcome("Ready", "True", "Ok")], 1, "T")
    assert [condition.type for condition in merged] == ["Ready", "TopicReady"]
