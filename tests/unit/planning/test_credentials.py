from datetime import UTC, datetime, timedelta

from eventpipeline.api.claim import CredentialRecord
from eventpipeline.planning.clock import iso
from eventpipeline.planning.credentials import (
    IssueCredential,
    ObservedCredential,
    RevokeCredential,
    RotationPolicy,
    next_due,
    plan_credential,
    plan_removal,
)

BASE = "ep.shop.orders.checkout.1234abcd"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
POLICY = RotationPolicy(timedelta(hours=24), timedelta(hours=1))
INTACT = ObservedCredential(secret_intact=True, on_broker=True)


def _plan(record: CredentialRecord | None, now: datetime, request: str | None = None, observed=INTACT):  # type: ignore[no-untyped-def]
    return plan_credential(
        username_base=BASE,
        role="producer",
        record=record,
        observed=observed if record is not None else None,
        now=now,
        policy=POLICY,
        rotate_request=request,
    )


def test_first_credential_is_generation_one() -> None:
    plan = _plan(None, NOW)
    assert plan.actions == (IssueCredential(f"{BASE}-g1", "issue"),)
    assert plan.record is not None
    assert (plan.record.generation, plan.record.next_rotation_at) == (1, iso(NOW + timedelta(hours=24)))


def test_rotation_keeps_the_previous_generation_valid_during_grace() -> None:
    issued = _plan(None, NOW).record
    later = NOW + timedelta(hours=25)
    rotate = _plan(issued, later)
    assert rotate.actions == (IssueCredential(f"{BASE}-g2", "rotate"),)
    assert rotate.valid_usernames == [f"{BASE}-g2", f"{BASE}-g1"]
    # Mid-grace nothing else happens, even when asked to rotate again.
    assert _plan(rotate.record, later + timedelta(minutes=5), request="again").actions == ()
    revoke = _plan(rotate.record, later + timedelta(hours=1))
    assert revoke.actions == (RevokeCredential(f"{BASE}-g1", "grace-ended"),)
    assert revoke.valid_usernames == [f"{BASE}-g2"]


def test_generation_names_are_never_reused() -> None:
    record = _plan(None, NOW).record
    names = set()
    moment = NOW
    for _ in range(5):
        moment += timedelta(hours=24)
        record = _plan(record, moment).record
        names.add(record.username if record else "")
        moment += timedelta(hours=1)
        record = _plan(record, moment).record
    assert len(names) == 5


def test_annotation_rotates_before_schedule_once() -> None:
    issued = _plan(None, NOW).record
    rotate = _plan(issued, NOW + timedelta(minutes=1), request="r1")
    assert rotate.issue == IssueCredential(f"{BASE}-g2", "rotate")
    after_grace = _plan(rotate.record, NOW + timedelta(hours=2), request="r1").record
    assert _plan(after_grace, NOW + timedelta(hours=3), request="r1").actions == ()


def test_a_request_present_at_creation_asks_for_nothing() -> None:
    issued = _plan(None, NOW, request="old").record
    assert _plan(issued, NOW + timedelta(minutes=1), request="old").actions == ()


def test_a_broken_secret_or_missing_broker_credential_is_repaired_in_place() -> None:
    issued = _plan(None, NOW).record
    for observed in (ObservedCredential(False, True), ObservedCredential(True, False)):
        plan = _plan(issued, NOW + timedelta(minutes=1), observed=observed)
        assert plan.actions == (IssueCredential(f"{BASE}-g1", "repair"),)
        assert plan.record == issued


def test_removal_revokes_every_valid_generation() -> None:
    rotated = _plan(_plan(None, NOW).record, NOW + timedelta(hours=24)).record
    assert rotated is not None
    plan = plan_removal(rotated, "principal-removed")
    assert plan.revoked == [f"{BASE}-g2", f"{BASE}-g1"]
    assert plan.record is not None and plan.record.withdrawn and plan.valid_usernames == []


def test_a_principal_that_comes_back_gets_a_new_generation() -> None:
    rotated = _plan(_plan(None, NOW).record, NOW + timedelta(hours=24)).record
    assert rotated is not None
    withdrawn = plan_removal(rotated, "access-withdrawn").record
    back = _plan(withdrawn, NOW + timedelta(hours=30))
    assert back.actions == (IssueCredential(f"{BASE}-g3", "issue"),)


def test_next_due_is_the_earliest_step() -> None:
    assert next_due([None, "2026-11-24T12:00:00Z", "2026-11-23T13:00:00Z"]) == NOW + timedelta(hours=1)
    assert next_due([]) is None
