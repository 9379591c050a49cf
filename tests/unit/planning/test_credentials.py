from datetime import UTC, datetime, timedelta

from eventpipeline.planning.credentials import iso, plan_credential, status_after, valid_usernames

BASE = "ep.shop.orders.checkout"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def _apply(plan, current, now):  # type: ignore[no-untyped-def]
    return status_after(
        plan,
        current,
        name="checkout",
        role="producer",
        secret_name="s",
        now=now,
        rotate_every=timedelta(hours=24),
        grace_period=timedelta(hours=1),
    )


def test_first_credential_is_generation_one() -> None:
    plan = plan_credential(BASE, None, NOW, rotate_requested=False)
    assert (plan.step, plan.username, plan.generation) == ("issue", f"{BASE}-a", 1)
    status = _apply(plan, None, NOW)
    assert status.next_rotation_at == iso(NOW + timedelta(hours=24))


def test_rotation_keeps_the_previous_generation_valid_during_grace() -> None:
    issued = _apply(plan_credential(BASE, None, NOW, False), None, NOW)
    later = NOW + timedelta(hours=25)
    plan = plan_credential(BASE, issued, later, False)
    assert (plan.step, plan.username) == ("rotate", f"{BASE}-b")
    rotated = _apply(plan, issued, later)
    assert valid_usernames(rotated) == [f"{BASE}-b", f"{BASE}-a"]
    # Mid-grace nothing else happens, even when asked to rotate again.
    assert plan_credential(BASE, rotated, later + timedelta(minutes=5), True).step == "none"
    revoke = plan_credential(BASE, rotated, later + timedelta(hours=2), False)
    assert (revoke.step, revoke.revoke_username) == ("revoke-previous", f"{BASE}-a")
    assert valid_usernames(_apply(revoke, rotated, later + timedelta(hours=2))) == [f"{BASE}-b"]


def test_annotation_rotates_before_schedule() -> None:
    issued = _apply(plan_credential(BASE, None, NOW, False), None, NOW)
    assert plan_credential(BASE, issued, NOW + timedelta(minutes=1), True).step == "rotate"
