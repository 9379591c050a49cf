"""A new pipeline's first run records what it set up as one Event (or a few, never cut short)."""

from __future__ import annotations

from eventpipeline.reconciler.run import EVENT_MESSAGE_LIMIT, PROVISIONED, Note, provisioned
from tests.unit.reconciler.world import World, spec


def test_the_normal_steps_of_a_run_become_one_event_and_warnings_stay_apart() -> None:
    notes = [
        Note("Normal", "TopicCreated", "created topic shop.orders with 1 partition(s)"),
        Note("Warning", "AccessRepaired", "1 grant(s) added"),
        Note("Normal", "CredentialIssued", "producer app: issued generation 1 (u-g1)"),
    ]
    assert provisioned(notes) == [
        Note(
            "Normal",
            PROVISIONED,
            "created topic shop.orders with 1 partition(s); producer app: issued generation 1 (u-g1)",
        ),
        Note("Warning", "AccessRepaired", "1 grant(s) added"),
    ]


def test_a_single_step_keeps_its_own_reason() -> None:
    notes = [Note("Normal", "TopicCreated", "created topic t"), Note("Warning", "X", "y")]
    assert provisioned(notes) == notes
    assert provisioned([]) == []


def test_a_long_list_of_steps_goes_on_in_another_event_never_cut() -> None:
    steps = [Note("Normal", "CredentialIssued", f"producer p{index}: " + "x" * 90) for index in range(25)]
    events = provisioned(steps)
    assert len(events) > 1
    assert all(event.reason == PROVISIONED and len(event.message) <= EVENT_MESSAGE_LIMIT for event in events)
    assert "; ".join(event.message for event in events) == "; ".join(step.message for step in steps)


def test_a_new_pipeline_emits_provisioned_then_every_later_step_under_its_own_reason() -> None:
    world = World()
    world.apply("shop", "orders", spec())
    first = world.reconcile("shop", "orders")
    assert [(note.type, note.reason) for note in first.notes] == [
        ("Normal", PROVISIONED),
        ("Normal", "Reconciled"),
        ("Warning", "WaitingForListener"),
    ]
    assert first.notes[0].message.startswith("created topic shop.orders")
    assert "Airflow connection shop.orders written" in first.notes[0].message
    world.advance(hours=24)
    rotation = world.reconcile("shop", "orders")
    assert [note.reason for note in rotation.notes].count("CredentialRotated") == 2
    assert PROVISIONED not in {note.reason for note in rotation.notes}
