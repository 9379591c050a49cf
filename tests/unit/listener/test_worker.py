"""The worker loop, one step at a time, against a fake broker, a fake Airflow, a fake clock and a
trigger pool the test controls: deterministic, no threads, no sleeps."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from eventpipeline.listener.session import Connection
from eventpipeline.listener.source import Lag
from eventpipeline.listener.worker import Worker
from eventpipeline.planning.serving import PipelineConfig
from tests.unit.listener.fakes import (
    FakeAirflow,
    FakeClock,
    FakeSource,
    HeldExecutor,
    InlineExecutor,
    config,
    messages,
)


@dataclass
class Rig:
    worker: Worker
    connection: Connection
    clock: FakeClock
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def run(self, until: Callable[[], bool], *, tick: float = 0.05, steps: int = 2000) -> None:
        """Step (moving the clock by `tick` each time) until `until()` holds."""
        for _ in range(steps):
            if until():
                return
            self.worker.step(self.connection)
            self.clock.advance(tick)
        raise AssertionError("the condition never held")

    def steps(self, count: int, tick: float = 0.0) -> None:
        for _ in range(count):
            self.worker.step(self.connection)
            self.clock.advance(tick)


def rig(
    source: FakeSource, airflow: FakeAirflow, executor: Executor | None = None, pipeline: PipelineConfig | None = None
) -> Rig:
    clock, events = FakeClock(), []
    worker = Worker(
        pipeline or config(),
        replica="test",
        source_factory=lambda _config, _secret: source,
        read_secret=lambda _ns, _name: ({"k": "v"}, "fp"),
        resolve_trigger=lambda _ref, _ns: airflow,
        emit_event=lambda _config, *event: events.append(event),
        clock=clock,
        executor=executor or InlineExecutor(),
        receive_timeout=0.0,
    )
    connection = worker.connect()
    assert connection is not None
    return Rig(worker, connection, clock, events)


def test_every_message_gets_a_run_and_every_offset_is_committed() -> None:
    source, airflow = FakeSource(messages(40)), FakeAirflow()
    r = rig(source, airflow)
    r.run(lambda: source.committed == {0: 20, 1: 20})
    assert len(airflow.created) == 40 and set(airflow.attempts.values()) == {1}
    status = r.worker.status()
    assert (status.consumed, status.runs_created, status.duplicates, status.retries) == (40, 40, 0, 0)
    assert status.last_run_id is not None and status.replica == "test"


def test_an_airflow_outage_holds_the_position_and_is_retried_with_backoff() -> None:
    down = [True]
    source = FakeSource(messages(3, partitions=1))
    airflow = FakeAirflow(lambda _run, _attempt: None if down[0] else 200)
    r = rig(source, airflow)
    r.steps(2)
    assert airflow.attempts == {"run-0-0": 1, "run-0-1": 1, "run-0-2": 1}
    # No answer is congestion: maxInFlight 4 halves to 2, and the 1 s backoff doubles with it.
    assert r.worker.status().throttled is not None and "at most 2 of 4" in str(r.worker.status().throttled)
    r.clock.advance(1.9)
    r.steps(3)
    assert sum(airflow.attempts.values()) == 3
    r.clock.advance(0.2)
    r.steps(3)
    assert sum(airflow.attempts.values()) == 6
    assert source.committed == {}, "nothing may be committed while Airflow is down"
    status = r.worker.status()
    assert status.error is not None and "DAG d (no answer" in status.error and status.retries == 6

    down[0] = False
    r.run(lambda: source.committed == {0: 3})
    assert len(airflow.created) == 3
    assert r.worker.status().error is None


def test_a_refused_message_goes_to_the_dead_letter_topic_after_the_limit_and_the_rest_flows() -> None:
    source = FakeSource(messages(6, partitions=1))
    airflow = FakeAirflow(lambda run, _attempt: 404 if run == "run-0-2" else 200)
    r = rig(source, airflow)
    r.run(lambda: source.committed.get(0) == 6, tick=1.0)
    assert airflow.attempts["run-0-2"] == 3  # the first attempt and retry.limit = 2 retries
    assert [run for run, _ in source.dead] == ["run-0-2"]
    headers = source.dead[0][1]
    assert headers["eventpipeline.error-status"] == "404" and headers["eventpipeline.attempts"] == "3"
    assert len(airflow.created) == 5
    assert r.worker.status().dead_lettered == 1
    assert [reason for _type, reason, _msg in r.events] == ["MessageDeadLettered"]


def test_without_dead_lettering_a_refused_message_is_committed_without_a_run_and_said_so() -> None:
    source = FakeSource(messages(2, partitions=1))
    airflow = FakeAirflow(lambda run, _attempt: 422 if run == "run-0-0" else 200)
    r = rig(source, airflow, pipeline=config(dead_letter=False))
    r.run(lambda: source.committed.get(0) == 2, tick=1.0)
    assert source.dead == [] and airflow.created == {"run-0-1"}
    assert [reason for _type, reason, _msg in r.events] == ["MessageDropped"]


def test_a_409_counts_as_a_duplicate_and_is_committed() -> None:
    source = FakeSource(messages(4, partitions=1))
    r = rig(source, FakeAirflow(lambda _run, _attempt: 409))
    r.run(lambda: source.committed.get(0) == 4)
    assert r.worker.status().duplicates == 4 and r.worker.status().runs_created == 0


def test_concurrent_triggers_never_exceed_max_in_flight() -> None:
    source, airflow, pool = FakeSource(messages(30, partitions=3)), FakeAirflow(), HeldExecutor()
    r = rig(source, airflow, pool)
    r.steps(3)
    # maxInFlight (4) for the pool's threads, and as many queued behind them: a thread that gets
    # its answer goes on at once, without waiting for the worker's thread.
    assert len(pool.held) == 8, "maxInFlight running and as many queued, and used in full"
    assert r.worker._dispatcher.in_flight == 4
    assert pool.release() == 8
    r.steps(2)
    assert len(pool.held) == 8 and len(airflow.created) == 8
    # The real pool runs at most maxInFlight requests at once, whatever waits in its queue.
    own = Worker(
        config(), replica="test", source_factory=lambda _c, _s: source, read_secret=lambda _n, _m: None,
        resolve_trigger=lambda _r, _n: airflow, emit_event=lambda *_: None,
    )  # fmt: skip
    assert own._dispatcher._pool._max_workers == 4  # type: ignore[attr-defined]
    own.stop(0)


def test_a_slow_head_of_partition_does_not_idle_the_other_trigger_slots() -> None:
    """One answer takes long; the others keep flowing, and the commit waits for the slow one."""
    source, airflow, pool = FakeSource(messages(40, partitions=1)), FakeAirflow(), HeldExecutor()
    r = rig(source, airflow, pool)

    def head(message: Any) -> bool:
        return bool(message.run_id == "run-0-0")

    for _ in range(20):
        r.steps(1)
        pool.release(keep=head)
    assert len(airflow.created) == 39, "the other slots kept triggering"
    assert source.committed == {}, "nothing is committed past the unfinished head"
    pool.release()
    r.steps(1)
    assert source.committed == {0: 40}


def test_answers_for_an_earlier_consumer_are_not_marked_done_on_the_new_one() -> None:
    source, airflow, pool = FakeSource(messages(2, partitions=1)), FakeAirflow(), HeldExecutor()
    r = rig(source, airflow, pool)
    r.steps(1)
    assert len(pool.held) == 2
    r.worker.secret_changed("rotated")  # the credential rotated: a new consumer
    assert r.worker.session.reconnect_wanted()
    second = FakeSource(messages(2, partitions=1))
    r.worker.session._source_factory = lambda _config, _secret: second
    connection = r.worker.connect()
    assert connection is not None and connection.source is second
    pool.release()
    r.connection = connection
    r.steps(1)
    assert second.committed == {} and second.window() == 2, "redelivered messages wait for their own answers"
    assert r.worker.status().runs_created == 2
    pool.release()
    r.steps(1)
    assert second.committed == {0: 2}
    assert r.worker.status().duplicates == 2  # the redeliveries: Airflow answers 409


def test_lag_is_read_every_ten_seconds_of_the_clock() -> None:
    source = FakeSource(messages(0))
    r = rig(source, FakeAirflow())
    r.steps(1)
    assert r.worker.status().lag is None
    r.clock.advance(2.0)
    r.steps(1)
    assert r.worker.status().lag == 0


class StuckSource(FakeSource):
    """A consumer that gives nothing although the topic holds messages for it (seen after broker
    faults: a group that never settled, a fetcher that never resumed)."""

    def __init__(self, backlog: int, *, uncommitted: int = 0) -> None:
        super().__init__([])
        self.backlog = backlog
        self.uncommitted = uncommitted  # offsets past the commit that are no message (a transaction marker)

    def receive(self, max_messages: int, timeout: float) -> list[Any]:
        return []

    def lag(self) -> Lag | None:
        return Lag(uncommitted=self.backlog + self.uncommitted, untaken=self.backlog)


def test_a_consumer_idle_in_front_of_a_backlog_is_reopened_and_reported() -> None:
    r = rig(StuckSource(backlog=25), FakeAirflow())
    r.steps(int(55 / 0.5), tick=0.5)
    assert not r.worker._reopen, "reopened before the allowance"
    r.steps(int(20 / 0.5), tick=0.5)
    assert r.worker._reopen
    error = r.worker.status().error or ""
    assert error.startswith("ListenerStalled: the consumer took no message") and "25 wait on the topic" in error


def test_an_idle_topic_never_reopens_the_consumer() -> None:
    # The lag says 1 (a transaction marker after the last message), but nothing waits to be taken.
    r = rig(StuckSource(backlog=0, uncommitted=1), FakeAirflow())
    r.steps(int(300 / 0.5), tick=0.5)
    assert not r.worker._reopen and r.worker.status().error is None


def test_the_first_message_after_a_quiet_spell_is_not_an_idle_consumer() -> None:
    # Nothing on the topic for minutes, then a message the consumer has not fetched yet when the
    # lag is read: not a stuck consumer. Still there a whole allowance later: it is.
    stuck = StuckSource(backlog=0)
    r = rig(stuck, FakeAirflow())
    r.steps(int(300 / 0.5), tick=0.5)
    stuck.backlog = 1
    r.steps(int(12 / 0.5), tick=0.5)
    assert not r.worker._reopen, "one lag read showing a message just written is no stall"
    r.steps(int(65 / 0.5), tick=0.5)
    assert r.worker._reopen


def test_a_full_window_waiting_for_airflow_is_not_an_idle_consumer() -> None:
    source = FakeSource(messages(400, partitions=1))
    airflow = FakeAirflow(lambda _run, _attempt: None)  # Airflow takes nothing: the window fills
    r = rig(source, airflow)
    r.steps(int(200 / 0.5), tick=0.5)
    assert source.window() > 0
    assert not (r.worker.status().error or "").startswith("ListenerStalled: the consumer")


def test_messages_coming_again_clear_the_idle_consumer_report() -> None:
    stuck = StuckSource(backlog=5)
    r = rig(stuck, FakeAirflow())
    r.steps(int(80 / 0.5), tick=0.5)
    assert (r.worker.status().error or "").startswith("ListenerStalled")
    r.worker.stats.consumed(1)
    assert r.worker.status().error is None
