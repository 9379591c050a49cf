"""Poison never wedges a pipeline: failing jobs and dead-letter writes are handled per message,
Airflow's answers are classified deliberately, stalls are seen and recovered from, and a slow
Airflow gets fewer requests. Fakes, a fake clock and a trigger pool the test controls."""

from __future__ import annotations

from collections.abc import Mapping

from eventpipeline.listener import metrics
from eventpipeline.listener.dead_letter import VALUE_OMITTED_HEADER
from eventpipeline.listener.stalls import REQUEST_ALLOWANCE_SECONDS
from eventpipeline.listener.trigger import Answer
from eventpipeline.planning.delivery import Message
from tests.unit.listener.fakes import FakeAirflow, FakeSource, HeldExecutor, config, messages
from tests.unit.listener.test_worker import rig


class TooLargeForTheDeadLetterTopic(FakeSource):
    """A dead-letter producer that refuses a message with its value, as librdkafka does for one
    larger than message.max.bytes (raised at produce, not a SourceError)."""

    def dead_letter(self, message: Message, headers: Mapping[str, str]) -> None:
        if message.value is not None:
            raise BufferError("Broker: Message size too large")
        super().dead_letter(message, headers)


def test_a_message_too_large_for_the_dead_letter_topic_goes_there_without_its_value() -> None:
    source = TooLargeForTheDeadLetterTopic(messages(4, partitions=1))
    airflow = FakeAirflow(lambda run, _attempt: 413 if run == "run-0-1" else 200)
    r = rig(source, airflow)
    r.run(lambda: source.committed.get(0) == 4, tick=1.0)
    assert airflow.attempts["run-0-1"] == 3, "413 is a refusal: the first attempt and retry.limit retries"
    [(run_id, headers)] = source.dead
    assert run_id == "run-0-1" and headers["eventpipeline.error-status"] == "413"
    assert "too large" in headers[VALUE_OMITTED_HEADER]
    assert r.worker._dispatcher.running == 0, "no slot leaked"
    assert [reason for _type, reason, _msg in r.events] == ["MessageDeadLettered"]
    assert "without its value" in r.events[0][2]


def test_airflow_forbidding_the_run_is_a_refusal_that_ends_in_the_dead_letter_topic() -> None:
    source = FakeSource(messages(3, partitions=1))
    r = rig(source, FakeAirflow(lambda run, _attempt: 403 if run == "run-0-0" else 200))
    r.run(lambda: source.committed.get(0) == 3, tick=1.0)
    assert [run for run, _ in source.dead] == ["run-0-0"]


class Exploding(FakeAirflow):
    """The first attempt of each run raises inside the trigger (a bug, an odd message)."""

    def dag_run(self, dag_id: str, message: Message, broker_type: str) -> Answer:
        answer = super().dag_run(dag_id, message, broker_type)
        if self.attempts[message.run_id] == 1:
            self.created.discard(message.run_id)
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")
        return answer


def test_a_job_that_raises_is_retried_and_leaks_no_slot() -> None:
    source, airflow = FakeSource(messages(6, partitions=2)), Exploding()
    r = rig(source, airflow)
    r.run(lambda: source.committed == {0: 3, 1: 3}, tick=0.5)
    assert len(airflow.created) == 6 and set(airflow.attempts.values()) == {2}
    assert r.worker._dispatcher.running == 0


def test_a_message_that_never_finishes_stalls_its_partition_until_the_session_is_reopened() -> None:
    source, airflow, pool = FakeSource(messages(6, partitions=2)), FakeAirflow(), HeldExecutor()
    r = rig(source, airflow, pool)
    r.steps(1)

    def lost(message: Message) -> bool:  # a job that never comes back (a lost job, a hung request)
        return message.partition == 1 and message.offset == 0

    for _ in range(4):
        pool.release(keep=lost)
        r.steps(1)
    r.clock.advance(REQUEST_ALLOWANCE_SECONDS - 1)
    r.steps(1)
    assert r.worker.status().stalled_partitions is None, "within the request allowance"
    r.clock.advance(2)
    r.steps(1)
    status = r.worker.status()
    assert status.stalled_partitions == [1]
    assert status.error is not None and status.error.startswith("ListenerStalled: partition(s) 1 ")
    assert metrics.STALLED_PARTITIONS.labels("ns/p")._value.get() == 1
    assert r.worker._reopen, "the worker reopens its session"
    assert source.committed.get(0) == 3 and source.committed.get(1) is None

    # The reopened session delivers the message again; once its partition moves, the report clears.
    second = FakeSource([m for m in messages(6, partitions=2) if m.partition == 1])
    r.worker.session._source_factory = lambda _config, _secret: second
    r.worker._reopen = False
    connection = r.worker.connect()
    assert connection is not None
    r.connection = connection
    pool.held.clear()
    r.steps(1)
    pool.release()
    r.steps(2)
    assert second.committed == {1: 3}
    assert r.worker.status().stalled_partitions is None and r.worker.status().error is None


def test_a_congested_airflow_gets_fewer_concurrent_requests_and_status_says_so() -> None:
    source, pool = FakeSource(messages(40, partitions=4)), HeldExecutor()
    answers = {"status": 503}
    r = rig(source, FakeAirflow(lambda _run, _attempt: answers["status"]), pool)
    r.steps(1)
    assert len(pool.held) == 8, "maxInFlight running, as many queued behind them"
    pool.release()
    r.steps(1)
    assert r.worker._dispatcher.congestion.limit == 2
    assert "at most 2 of 4" in str(r.worker.status().throttled)
    assert metrics.CONCURRENCY_LIMIT.labels("ns/p")._value.get() == 2
    answers["status"] = 200
    r.clock.advance(10)
    r.steps(1)
    assert len(pool.held) <= 2, "at most the lowered limit at once, and none queued while throttled"
    for _ in range(30):
        pool.release()
        r.steps(1)
        r.clock.advance(1)
    assert r.worker._dispatcher.congestion.limit == 4 and r.worker.status().throttled is None


def test_once_airflow_answers_again_the_retries_of_the_outage_go_out_without_waiting_their_backoff() -> None:
    """After an outage the retries wait a backoff stretched by throttling (here up to 5 minutes);
    the first good answer shows Airflow is back, so they go out at once — still no more at a time
    than the concurrency limit allows — instead of idling a full window for minutes."""
    down = [True]
    source = FakeSource(messages(12, partitions=2))
    airflow = FakeAirflow(lambda _run, _attempt: None if down[0] else 200)
    r = rig(source, airflow, pipeline=config(backoff="5s", maxBackoff="5m"))
    for _ in range(30):  # a 30 s outage: every message fails at least once, some several times
        r.steps(1)
        r.clock.advance(1)
    assert not airflow.created and len(r.worker._dispatcher._retries) == 12
    longest = max(due.at for due in r.worker._dispatcher._retries._heap) - r.clock.now
    assert longest > 30, "the stretched backoff would hold them for long"
    down[0] = False
    r.clock.advance(r.worker._dispatcher.next_retry_in(600))  # the first retry falls due
    r.steps(10)  # no time passes: what goes out now goes out because Airflow answered
    assert source.committed == {0: 6, 1: 6} and len(airflow.created) == 12
