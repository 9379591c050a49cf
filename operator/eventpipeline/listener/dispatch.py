"""What happens to each message between the consumer and the commit: trigger it on the pool,
read Airflow's answer, retry with backoff, dead-letter after `retry.limit`, then mark it done.

Answers come back on a queue and are handled on the worker's thread, in order, so the source
and the retry schedule are only touched from one thread. A job never ends without an answer on
the queue (whatever it raises becomes a failed answer), so no slot leaks and no message is
left behind. How many jobs run at once follows Airflow's health (`congestion`), and every
message in the dispatcher's care has a deadline (`stalls`). Each connection is an epoch: answers
for messages taken by an earlier consumer are counted but not marked done on the new one (the
new consumer delivers them again, and Airflow answers 409).
"""

from __future__ import annotations

import logging
import queue
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from eventpipeline.api.common import parse_duration
from eventpipeline.listener.congestion import SLOW_ANSWER_SECONDS, Congestion
from eventpipeline.listener.dead_letter import dead_letter_headers, write_dead_letter
from eventpipeline.listener.holding import Holds
from eventpipeline.listener.retries import Clock, RetrySchedule
from eventpipeline.listener.session import Connection, EventSink
from eventpipeline.listener.source import Source
from eventpipeline.listener.stalls import StallDetector
from eventpipeline.listener.stats import ListenerStats
from eventpipeline.listener.trigger import Answer, trigger_message
from eventpipeline.planning import delivery
from eventpipeline.planning.delivery import Message, Outcome
from eventpipeline.planning.schema_versions import UndecodableError, behind_message
from eventpipeline.planning.serving import PipelineConfig

LOG = logging.getLogger("eventpipeline.listener")
# While Airflow keeps up (not throttled), up to maxInFlight more jobs wait in the pool's queue behind
# the maxInFlight running ones: a trigger thread that gets its answer goes on to the next message at
# once, instead of idling until the worker's thread is scheduled, handles the answer and hands it a
# new one. On a loaded 2-core machine that hand-over left about a seventh of the slots idle
# (bench/listener/RESULTS.md, F). The pool's size still bounds the requests sent at once.
QUEUED_PER_SLOT = 1
# While Airflow does not take a pipeline's runs (no answer, 408, 429, 5xx, the DAG not authorized),
# the log says so when it begins and then at most this often; status.listener says it at once.
UNAVAILABLE_LOG_INTERVAL_SECONDS = 60.0


@dataclass
class Item:
    """One message on its way, with what happened to it so far."""

    message: Message
    transient_failures: int = 0
    refusals: int = 0
    last: Answer | None = None
    dead_letter_failures: int = 0
    dead_letter_error: str | None = None
    sequence: int = 0  # the order the worker took the messages in
    undecodable: bool = False  # the schema does not read it: it goes to the dead-letter topic

    @property
    def partition(self) -> int:
        return self.message.partition

    @property
    def schema_version(self) -> int | None:
        return self.message.decoded.schema.version if self.message.decoded else None


@dataclass(frozen=True)
class _Job:
    item: Item
    dead_letter: bool  # False: trigger Airflow; True: write to the dead-letter topic


@dataclass(frozen=True)
class _Done:
    epoch: int
    job: _Job
    failure: Answer | None  # trigger: Airflow's answer; dead letter: None when written


class Dispatcher:
    def __init__(
        self,
        config: PipelineConfig,
        stats: ListenerStats,
        emit_event: EventSink,
        *,
        clock: Clock,
        executor: Executor | None = None,
        stalls: StallDetector | None = None,
    ) -> None:
        self._config = config
        self._stats = stats
        self._emit_event = emit_event
        self._max_in_flight = config.trigger.max_in_flight
        self.congestion = Congestion(self._max_in_flight, clock)
        self.stalls = stalls or StallDetector(clock)
        retry = config.trigger.retry
        self._retries: RetrySchedule[_Job] = RetrySchedule(
            parse_duration(retry.backoff), parse_duration(retry.max_backoff), clock
        )
        self._pool = executor or ThreadPoolExecutor(
            max_workers=self._max_in_flight, thread_name_prefix=f"trigger-{config.name}"[:40]
        )
        self._done: queue.Queue[_Done] = queue.Queue()
        self._epoch = 0
        self._connection: Connection | None = None
        self.running = 0  # jobs submitted and not yet handled (running, queued, or answered)
        self._airflow_failed = False  # a transient failure since the last good answer
        self._clock = clock
        self._unavailable_logged_at: float | None = None  # the last warning that Airflow takes no runs
        self._unavailable: str | None = None  # why, from the batch of answers being handled
        self.holds: Holds[Item] = Holds(clock)  # messages waiting for the DAG to handle their schema
        self._taken = 0

    def begin(self, connection: Connection) -> None:
        """A new consumer: messages held for retry will come again from it."""
        self._epoch += 1
        self._connection = connection
        self._retries.clear()
        self.stalls.clear()
        self.holds.clear()
        self._stats.schema_hold(None, 0)

    def free_slots(self) -> int:
        """Jobs that may be submitted now. Throttled, none wait in the pool's queue, so the requests
        sent at once follow the lowered limit as soon as the queued ones have gone out."""
        queued = 0 if self.congestion.throttled else QUEUED_PER_SLOT * self._max_in_flight
        return self.congestion.limit + queued - self.running

    @property
    def in_flight(self) -> int:
        """Requests on their way at most now (the pool runs at most maxInFlight at once)."""
        return min(self.running, self._max_in_flight)

    def next_retry_in(self, longest: float) -> float:
        return self.holds.next_probe_in(self._retries.wait(longest))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, message: Message) -> None:
        self._taken += 1
        item = self._decoded(Item(message, sequence=self._taken))
        if item is not None:
            self._admit(item)

    def _admit(self, item: Item) -> None:
        """Trigger `item`, unless its partition waits for the DAG: then it waits behind."""
        if self.holds.queue_behind(item):
            self._report_holds()
        else:
            self._submit(_Job(item, dead_letter=False))

    def submit_due(self) -> None:
        for job in self._retries.pop_due(self.free_slots()):
            if job.item.undecodable and not job.dead_letter:
                decoded = self._decoded(job.item)  # the retry of an unknown schema: decode again
                if decoded is not None:
                    self._admit(decoded)
            else:
                self._submit(job)
        for item in self.holds.due_probes():
            self._submit(_Job(item, dead_letter=False))

    # -- schemas: decoding, and holding messages the DAG does not handle yet -------------------

    def _decoded(self, item: Item) -> Item | None:
        """`item` with its value decoded with the pipeline's schema; None when it does not decode
        (retried if its schema may be handed over later, else dead-lettered)."""
        connection = self._connection
        decoder = connection.decoder if connection is not None else None
        if decoder is None:
            return item
        try:
            item.message = decoder.decode(item.message)
        except UndecodableError as error:
            assert connection is not None
            item.undecodable = True
            item.last = Answer(None, f"undecodable: {error.reason}", 0.0)
            item.refusals += 1
            if error.retriable and not delivery.dead_letter_due(item.refusals, self._config.trigger.retry.limit):
                self._stats.retried("refused")
                self._retry(_Job(item, dead_letter=False), item.refusals)
            else:
                self._refused_for_good(connection.source, item)
            return None
        item.undecodable = False
        return item

    def _hold(self, item: Item, dag_version: int) -> None:
        """The DAG handles older schema versions only: the message (and its partition) waits."""
        self.stalls.finished(_key(item.message))  # waiting for the DAG's owner, not a stall
        if self.holds.hold(item, dag_version):
            LOG.info("%s: %s", self._config.key, item.last.detail if item.last else "")
            self._emit_event(self._config, "Warning", "DagBehindSchema", item.last.detail if item.last else "")
        self._report_holds()

    def _release(self, item: Item) -> None:
        """`item` got past the DAG's version check: if it was a held partition's first message,
        the messages behind it go on, in order."""
        released = self.holds.passed(item)
        if released is None:
            return
        for waiting in released:
            self._submit(_Job(waiting, dead_letter=False))
        self._emit_event(
            self._config, "Normal", "SchemaHoldReleased",
            f"{self._target()} handles schema version {item.schema_version} now; {len(released) + 1} held "
            f"message(s) of partition {item.partition} go to Airflow in order",
        )  # fmt: skip
        self._report_holds()

    def _report_holds(self) -> None:
        summary = self.holds.summary()
        if summary is None:
            self._stats.schema_hold(None, 0)
            return
        text = behind_message(self._target(), summary.dag_version, summary.held_versions, summary.partitions)
        self._stats.schema_hold(f"{text} ({summary.messages} message(s) held)", summary.messages)

    def _submit(self, job: _Job) -> None:
        try:
            self._pool.submit(self._run_job, self._epoch, job)
        except RuntimeError:  # the pool is shut down: the worker is stopping
            return
        self.running += 1
        # The allowance runs from here, not from when a retry was scheduled: a retry that waited
        # for a slot while throttled is not late (see `stalls`).
        self.stalls.expect(_key(job.item.message), job.item.message.partition)

    def _run_job(self, epoch: int, job: _Job) -> None:
        """On a pool thread: one trigger request or one dead-letter write; the outcome always goes
        on the queue, whatever happens (an exception here would leak the slot and the message)."""
        try:
            outcome = self._dead_letter(job.item) if job.dead_letter else self._trigger(job.item)
        except Exception as error:
            LOG.exception("%s: %s failed unexpectedly", self._config.key, job.item.message.run_id)
            outcome = Answer(None, f"listener error: {type(error).__name__}: {error}", 0.0)
        self._done.put(_Done(epoch, job, outcome))

    def _trigger(self, item: Item) -> Answer:
        connection = self._connection
        assert connection is not None
        answer = trigger_message(connection.trigger, self._config.trigger, item.message, self._config.broker_type)
        self._stats.trigger_latency(answer.seconds)
        return answer

    def _dead_letter(self, item: Item) -> Answer | None:
        connection = self._connection
        assert connection is not None
        last = item.last
        headers = dead_letter_headers(
            item.message,
            pipeline=self._config.key,
            dag_id=self._config.trigger.dag_id,
            status_code=last.status_code if last else None,
            detail=last.detail if last else "",
            attempts=item.refusals,
        )
        # After `retry.limit` failed writes the message will not go as it is (too large for the
        # producer or the topic): it goes without its value, so the partition moves on.
        omit = item.dead_letter_error if item.dead_letter_failures > self._config.trigger.retry.limit else None
        failure = write_dead_letter(connection.source, item.message, headers, omit_value=omit)
        return None if failure is None else Answer(None, failure, 0.0)

    # -- handling outcomes, on the worker's thread ---------------------------------------------

    def drain(self, source: Source, timeout: float | None) -> None:
        """Handle every finished job; with a timeout, wait that long for the first one."""
        try:
            first = self._done.get_nowait() if timeout is None else self._done.get(timeout=timeout)
        except queue.Empty:
            return
        batch = [first]
        while True:
            try:
                batch.append(self._done.get_nowait())
            except queue.Empty:
                break
        self.stalls.answered()
        for done in batch:
            self.running -= 1
            current = done.epoch == self._epoch
            if done.job.dead_letter:
                self._dead_letter_finished(source, current, done.job, done.failure)
            else:
                assert done.failure is not None
                self._trigger_finished(source, current, done.job.item, done.failure)
        if self._unavailable is not None:
            self._log_unavailable(self._unavailable)
            self._unavailable = None

    def _trigger_finished(self, source: Source, current: bool, item: Item, answer: Answer) -> None:
        item.last = answer
        if current and answer.dag_schema_version is not None:
            self._hold(item, answer.dag_schema_version)
            return
        if current and answer.dag_schema_version is None:
            self._release(item)
        outcome = Outcome.TRANSIENT if answer.held else delivery.classify(answer.status_code)
        if not answer.held and self.congestion.answered(answer.status_code, answer.seconds):
            self._stats.throttled(self.congestion.limit, self.congestion.describe())
        if outcome in (Outcome.CREATED, Outcome.DUPLICATE):
            if outcome is Outcome.CREATED:
                self._stats.run_created(item.message.run_id)
            else:
                self._stats.duplicate(item.message.run_id)
            self._stats.airflow_error(None)
            self._recovered(answer)
            if current:
                self._finished(source, item)
            return
        if not current:
            return  # the message comes again from the new consumer
        if outcome is Outcome.TRANSIENT:
            self._airflow_failed = self._airflow_failed or not answer.held
            item.transient_failures += 1
            self._stats.retried("transient")
            status = "no answer" if answer.status_code is None else f"HTTP {answer.status_code}"
            error = f"Airflow could not take runs for {self._target()} ({status}: {answer.detail}); retrying"
            self._stats.airflow_error(error)
            self._retry(_Job(item, dead_letter=False), item.transient_failures, self.congestion.backoff_factor())
            self._unavailable = error
            return
        item.refusals += 1
        self._stats.retried("refused")
        if not delivery.dead_letter_due(item.refusals, self._config.trigger.retry.limit):
            self._retry(_Job(item, dead_letter=False), item.refusals)
            return
        self._refused_for_good(source, item)

    def _recovered(self, answer: Answer) -> None:
        """The first good answer after transient failures: Airflow takes runs again, so the retries
        of the outage go out now instead of after their backoff (stretched while throttled), which
        would otherwise hold a full window idle for minutes. The concurrency limit still bounds how
        many go at once, and it only grows back one by one as good answers keep coming."""
        if self._unavailable_logged_at is not None:
            self._unavailable_logged_at = None
            LOG.info("%s: Airflow takes runs again", self._config.key)
        if not self._airflow_failed or answer.seconds > SLOW_ANSWER_SECONDS:
            return
        self._airflow_failed = False
        moved = self._retries.expedite(lambda job: not job.dead_letter and job.item.refusals == 0)
        if moved:
            LOG.info("%s: Airflow answers again; %d message(s) waiting for a retry go now", self._config.key, moved)

    def _log_unavailable(self, error: str) -> None:
        """A warning when Airflow stops taking the pipeline's runs, repeated at most once a minute
        while it lasts, with what the worker waits for: never minutes of silence in the log."""
        now = self._clock()
        logged_at = self._unavailable_logged_at
        if logged_at is not None and now - logged_at < UNAVAILABLE_LOG_INTERVAL_SECONDS:
            return
        self._unavailable_logged_at = now
        LOG.warning(
            "%s: %s; %d message(s) wait for a retry (next in %.0f s), %d request(s) on their way, "
            "at most %d of %d at once",
            self._config.key, error, len(self._retries), self._retries.wait(float("inf")), self.running,
            self.congestion.limit, self._max_in_flight,
        )  # fmt: skip

    def _retry(self, job: _Job, failures: int, factor: float = 1.0) -> None:
        delay = self._retries.schedule(job, failures, factor)
        self.stalls.retry_at(_key(job.item.message), job.item.message.partition, delay)

    def _finished(self, source: Source, item: Item) -> None:
        source.done(item.message)
        self.stalls.finished(_key(item.message))
        self._stats.progressed(item.message.partition)

    def _refused_for_good(self, source: Source, item: Item) -> None:
        run_id = item.message.run_id
        LOG.warning("%s: %s: %s", self._config.key, run_id, _why(item))
        if self._config.dead_letter_topic is None:
            self._stats.dropped()
            self._emit_event(
                self._config,
                "Warning",
                "MessageDropped",
                f"{run_id}: {_why(item)} and dead-lettering is disabled; committed without a run",
            )
            self._finished(source, item)
            return
        self._submit(_Job(item, dead_letter=True))

    def _dead_letter_finished(self, source: Source, current: bool, job: _Job, failure: Answer | None) -> None:
        item = job.item
        if failure is None:
            self._stats.dead_lettered()
            omitted = item.dead_letter_failures > self._config.trigger.retry.limit
            self._emit_event(
                self._config,
                "Warning",
                "MessageDeadLettered",
                f"{item.message.run_id}: {_why(item)}; sent to {self._config.dead_letter_topic}"
                + (f" without its value ({item.dead_letter_error})" if omitted else ""),
            )
            if current:
                self._finished(source, item)
            return
        if not current:
            return
        item.dead_letter_failures += 1
        item.dead_letter_error = item.dead_letter_error or failure.detail
        self._stats.source_error(failure.detail)
        self._retry(job, item.dead_letter_failures)

    def _target(self) -> str:
        trigger = self._config.trigger
        if trigger.mode == "AssetEvent":
            return f"asset {trigger.asset_uri}"
        return f"DAG {trigger.dag_id}"


def _why(item: Item) -> str:
    """Why a message goes to the dead-letter topic (or is dropped), for its Event."""
    last = item.last
    if item.undecodable:
        return last.detail if last else "undecodable"
    return (
        f"Airflow refused it {item.refusals} time(s) "
        f"(HTTP {last.status_code if last else '?'}: {last.detail if last else ''})"
    )


def _key(message: Message) -> tuple[int, str]:
    return message.partition, message.position
