"""Stall detection on a fake clock: a message past every deadline the listener knows of."""

from __future__ import annotations

from eventpipeline.listener.stalls import StallDetector
from eventpipeline.listener.trigger import Answer
from eventpipeline.planning.delivery import Message
from tests.unit.listener.fakes import FakeAirflow, FakeClock, FakeSource, HeldExecutor, messages
from tests.unit.listener.test_worker import rig


def test_a_request_on_its_way_is_explained_for_the_allowance_then_stalls_its_partition() -> None:
    clock = FakeClock()
    stalls = StallDetector(clock, request_allowance=60)
    stalls.expect((0, "1"), 0)
    stalls.expect((1, "1"), 1)
    clock.advance(59)
    assert stalls.stalled() == []
    stalls.finished((1, "1"))
    clock.advance(2)
    assert stalls.stalled() == [0]
    stalls.clear()
    assert stalls.stalled() == []


def test_a_retry_backoff_explains_the_wait() -> None:
    clock = FakeClock()
    stalls = StallDetector(clock, request_allowance=60)
    stalls.retry_at((3, "9"), 3, wait=300)  # retried in 5 minutes: not a stall before then
    clock.advance(350)
    assert stalls.stalled() == [] and stalls.waiting(3) == 1
    clock.advance(11)
    assert stalls.stalled() == [3]


class SlowAirflow(FakeAirflow):
    """Answers, but each answer takes `seconds`: slower than congestion's threshold, so the
    concurrency limit stays down."""

    def __init__(self, seconds: float, down: list[bool]) -> None:
        super().__init__(lambda _run, _attempt: None if down[0] else 200)
        self.seconds = seconds

    def dag_run(self, dag_id: str, message: Message, broker_type: str) -> Answer:
        answer = super().dag_run(dag_id, message, broker_type)
        return Answer(answer.status_code, answer.detail, self.seconds)


def test_messages_waiting_for_a_throttled_slot_are_no_stall_while_answers_keep_coming() -> None:
    """The loop seen under load: an outage fills the window with retries, Airflow then answers
    slowly, the limit stays at 1, and retries wait for a slot far beyond their backoff. That is
    throttling, not a stall: no ListenerStalled and no reopen (which would redeliver the window
    and add load), and every message finishes."""
    down = [True]
    source, pool = FakeSource(messages(40, partitions=2)), HeldExecutor()
    airflow = SlowAirflow(20.0, down)
    r = rig(source, airflow, pool)
    for _ in range(60):  # a 30 s outage: every attempt fails, the window fills with retries
        r.steps(1)
        pool.release()
        r.clock.advance(0.5)
    assert source.window() > 20 and not airflow.created
    down[0] = False
    reported: list[list[int]] = []
    for _ in range(200):  # one slow answer every 20 s: 40 messages take about 800 s
        r.steps(1)
        assert not r.worker._reopen, f"a reopen at {r.clock.now - 1000:.0f} s while answers kept coming"
        reported.append(r.worker.status().stalled_partitions or [])
        if source.committed == {0: 20, 1: 20}:
            break
        r.clock.advance(20.0)
        pool.release()
    assert source.committed == {0: 20, 1: 20} and len(airflow.created) == 40
    assert r.worker._dispatcher.congestion.limit == 1, "the slow answers kept the limit down throughout"
    assert not any(reported), "no ListenerStalled while answers kept coming"


def test_a_hung_request_holding_every_slot_stalls_the_waiting_partitions() -> None:
    """With the limit at its floor, one request that never answers blocks every retry behind
    it: the in-flight one is past its allowance, and so are the ones waiting with no answer."""
    clock = FakeClock()
    stalls = StallDetector(clock, request_allowance=60)
    stalls.expect((0, "1"), 0)  # on its way, never answers
    stalls.retry_at((1, "4"), 1, wait=5)  # waits for a slot once due
    clock.advance(61)
    assert stalls.stalled() == [0]
    clock.advance(5)
    assert stalls.stalled() == [0, 1], "due for 61 s with no answer at all"
    stalls.answered()
    assert stalls.stalled() == [0], "an answer explains the wait for a slot again"
