"""The one scheduler's due times: drift once per period, hints spaced, retries backing off."""

from __future__ import annotations

from eventpipeline.planning.schedule import DueSchedule, Handled, drift_period, repeats_last_run

RESYNC, SPACING = 300.0, 30.0


def _schedule() -> DueSchedule:
    return DueSchedule(RESYNC, SPACING, max_backoff=60.0)


def _run(schedule: DueSchedule, now: float, *, failed: bool = False) -> list[tuple[str, str]]:
    """What is due at `now`; each due pipeline is reconciled at once (started, then finished)."""
    due = schedule.pop_due(now)
    for uid, _ in due:
        schedule.started(uid, now)
        schedule.finished(uid, now, transient_failure=failed)
    return [(uid, str(reason)) for uid, reason in due]


def test_a_pipeline_is_checked_for_drift_once_per_period_after_its_last_run() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    checks = [now for now in range(0, 1201, 10) if _run(schedule, float(now))]
    assert checks == [300, 600, 900, 1200]


def test_a_run_from_a_change_pushes_the_next_drift_check_back() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    schedule.started("a", 200.0)  # an update reconciled it
    assert _run(schedule, 300.0) == []
    assert _run(schedule, 500.0) == [("a", "drift")]


def test_nothing_is_checked_before_the_change_handlers_ran_it_once() -> None:
    schedule = _schedule()
    schedule.hinted("a", None)
    assert schedule.next_at() is None and _run(schedule, 10_000.0) == []


def test_a_due_rotation_wakes_exactly_then_and_reads_fresh() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    schedule.hinted("a", 120.0)
    assert schedule.next_at() == 120.0
    assert _run(schedule, 119.0) == []
    assert _run(schedule, 120.0) == [("a", "hint")]
    assert _run(schedule, 121.0) == []  # the hint was used; the run's new report hints again


def test_a_hint_that_stays_due_is_retried_spaced_not_in_a_loop() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    schedule.hinted("a", 0.0)
    assert _run(schedule, 1.0) == []  # a run just happened
    assert _run(schedule, 30.0) == [("a", "hint")]
    schedule.hinted("a", 30.0)  # its status still says due
    assert _run(schedule, 45.0) == []
    assert _run(schedule, 60.0) == [("a", "hint")]


def test_a_replaced_hint_supersedes_the_earlier_one() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    schedule.hinted("a", 100.0)
    schedule.hinted("a", 250.0)  # the listener reported again
    assert _run(schedule, 100.0) == []
    assert _run(schedule, 250.0) == [("a", "hint")]


def test_a_transient_failure_is_retried_from_one_second_doubling_to_a_minute() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    now, retries = 300.0, []
    assert _run(schedule, now, failed=True) == [("a", "drift")]
    for _ in range(9):
        due_at = schedule.next_at()
        assert due_at is not None
        retries.append(due_at - now)
        now = due_at
        assert _run(schedule, now, failed=True) == [("a", "retry")]
    assert retries == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    _run(schedule, schedule.next_at() or 0.0)  # success: back to one drift check per period
    assert schedule.next_at() == now + 60.0 + RESYNC


def test_a_running_pipeline_is_not_handed_out_twice() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    assert schedule.pop_due(300.0) == [("a", "drift")]
    schedule.hinted("a", 0.0)  # its status changes while it runs
    assert schedule.pop_due(400.0) == []
    schedule.finished("a", 400.0, transient_failure=False)
    assert schedule.pop_due(400.0) == [("a", "hint")]


def test_a_run_that_ends_early_is_not_due_again_at_once() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    assert schedule.pop_due(300.0) == [("a", "drift")]
    schedule.finished("a", 300.0, transient_failure=False)  # the object was gone: it never started
    assert schedule.pop_due(301.0) == []
    assert schedule.next_at() == 600.0


def test_forgotten_pipelines_are_never_due() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)
    schedule.forget("a")
    assert _run(schedule, 1000.0) == []


def test_a_thousand_pipelines_cost_one_check_each_per_period() -> None:
    schedule = _schedule()
    for index in range(1000):
        schedule.started(f"p{index}", index * 0.2)  # created over 200 s
    checks: dict[str, int] = {}
    for tick in range(0, 3000):
        for uid, reason in _run(schedule, tick * 0.2 + 300.0):
            assert reason == "drift"
            checks[uid] = checks.get(uid, 0) + 1
    # 600 s of checking: two periods, each pipeline twice, none more.
    assert set(checks.values()) == {2} and len(checks) == 1000


def test_a_change_handler_run_on_what_the_last_clean_run_reconciled_is_a_repeat() -> None:
    # kopf took a stale event of its own for a creation: same generation, same rotation request.
    assert repeats_last_run(Handled((1, None)), (1, None))
    assert repeats_last_run(Handled((3, "r1")), (3, "r1"))


def test_a_new_generation_a_new_rotate_request_or_no_clean_run_always_runs() -> None:
    last = Handled((1, None))
    assert not repeats_last_run(last, (2, None))
    assert not repeats_last_run(last, (1, "2026-11-30T23:00:00Z"))
    assert not repeats_last_run(Handled((1, "r1")), (1, None))  # the request withdrawn
    assert not repeats_last_run(None, (1, None))  # never ran in this process, or the last run failed


def test_after_a_skipped_repeat_the_drift_check_still_comes_a_period_after_the_last_run() -> None:
    schedule = _schedule()
    schedule.started("a", 0.0)  # the creation's run; kopf's repeat at 200 s runs nothing
    assert _run(schedule, 200.0) == []
    assert _run(schedule, RESYNC) == [("a", "drift")]


def test_the_drift_period_stretches_only_where_the_checks_would_exceed_their_rate() -> None:
    assert drift_period(300.0, 1_000, 10.0) == 300.0  # 3.3 checks a second: the resync period
    assert drift_period(300.0, 3_000, 10.0) == 300.0
    assert drift_period(300.0, 10_000, 10.0) == 1_000.0  # 10 a second at most
    assert drift_period(300.0, 10_000, None) == 300.0


def test_many_pipelines_are_checked_no_faster_than_the_rate_allows_and_hints_are_not_held_back() -> None:
    schedule = DueSchedule(RESYNC, SPACING, max_backoff=60.0, max_drift_checks_per_second=2.0)
    for index in range(1_000):  # the watch shows them all …
        schedule.hinted(f"p{index}", None)
    for index in range(1_000):  # … and a wave reconciles one every 0.1 s
        schedule.started(f"p{index}", index / 10)
        schedule.finished(f"p{index}", index / 10, transient_failure=False)
    assert schedule.drift_period() == 500.0
    checks = {now: [uid for uid, _ in _run(schedule, float(now))] for now in range(0, 1000)}
    checked = [uid for uids in checks.values() for uid in uids]
    assert sorted(checked) == sorted(f"p{index}" for index in range(1_000))  # each once, …
    assert {now for now, uids in checks.items() if uids} <= set(range(500, 601))  # … 500 s after its run
    schedule.hinted("p900", 1010.0)  # a rotation due: at its time, not when the drift check is
    assert ("p900", "hint") in _run(schedule, 1010.0)  # its drift check is due at 1090
