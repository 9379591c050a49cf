"""One pipeline's trigger loop: consume, trigger Airflow, retry, dead-letter, commit — in its own thread.

Each pipeline has its own consumer, window, retry schedule and pool of trigger threads, so a
poison message, a missing DAG or a slow answer for one pipeline never stalls another.

Order of events for one message: taken from the broker (counts in the window) → trigger
attempt(s) on the pool → 200/409: done → committed once every earlier message of its partition
is done too. A transient failure keeps the message in the window and retries it with backoff;
nothing after it is committed meanwhile, so a crash at any point only causes re-deliveries,
which Airflow answers with 409 thanks to the deterministic run id.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from eventpipeline.api.common import AirflowInstanceRef, parse_duration
from eventpipeline.api.pipeline import ListenerStatus
from eventpipeline.listener import metrics, planning
from eventpipeline.listener.dead_letter import dead_letter_headers
from eventpipeline.listener.planning import Message, Outcome, PipelineConfig
from eventpipeline.listener.source import Source, SourceError
from eventpipeline.listener.trigger import AirflowTrigger, Answer

LOG = logging.getLogger("eventpipeline.listener")
LAG_INTERVAL_SECONDS = 10.0
RECEIVE_TIMEOUT_SECONDS = 0.1
REOPEN_BACKOFF = (timedelta(seconds=1), timedelta(seconds=60))
MAX_BATCH = 256


@dataclass
class _Item:
    message: Message
    transient_failures: int = 0
    refusals: int = 0
    last: Answer | None = None
    dead_letter_failures: int = 0


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    item: _Item = field(compare=False)
    dead_letter: bool = field(default=False, compare=False)


@dataclass
class Counters:
    consumed: int = 0
    runs_created: int = 0
    duplicates: int = 0
    retries: int = 0
    dead_lettered: int = 0
    last_run_id: str | None = None
    lag: int | None = None


# Opens a Source for a config and the Secret's data.
SourceFactory = Callable[[PipelineConfig, Mapping[str, str]], Source]
# Reads the listener Secret: (data, fingerprint), or None if missing.
SecretReader = Callable[[str, str], tuple[dict[str, str], str] | None]
# Resolves the AirflowInstance into a trigger client (raises on failure).
TriggerResolver = Callable[[AirflowInstanceRef, str], AirflowTrigger]
# Emits a Kubernetes Event on the pipeline: (type, reason, message).
EventSink = Callable[[PipelineConfig, str, str, str], None]


class Worker:
    def __init__(
        self,
        config: PipelineConfig,
        *,
        replica: str,
        source_factory: SourceFactory,
        read_secret: SecretReader,
        resolve_trigger: TriggerResolver,
        emit_event: EventSink,
        previous: ListenerStatus | None = None,
        replay_annotation: str | None = None,
    ) -> None:
        self.config = config
        self._replica = replica
        self._source_factory = source_factory
        self._read_secret = read_secret
        self._resolve_trigger = resolve_trigger
        self._emit_event = emit_event
        self._label = config.key
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._completions: queue.Queue[tuple[int, _Item, Answer | None, bool]] = queue.Queue()
        self._retries: list[_Due] = []
        self._running = 0  # trigger / dead-letter jobs submitted and not yet handled
        self._seq = 0
        self._epoch = 0
        self._secret_fingerprint: str | None = None
        self._wanted_fingerprint: str | None = None
        self._replay_annotation = replay_annotation
        self._replay_acted = previous.replay_request if previous else None
        self._replay_outcome = previous.replay if previous else None
        self._replay_pending: datetime | None = None
        self._rebuild = threading.Event()
        self._source_error: str | None = None
        self._airflow_error: str | None = None
        self._counters = Counters()
        if previous is not None:
            self._counters = Counters(
                previous.consumed,
                previous.runs_created,
                previous.duplicates,
                previous.retries,
                previous.dead_lettered,
                previous.last_run_id,
                previous.lag,
            )
        self._changed_at = time.monotonic()
        self._urgent = threading.Event()
        retry = config.trigger.retry
        self._backoff = parse_duration(retry.backoff)
        self._max_backoff = parse_duration(retry.max_backoff)
        self._pool = ThreadPoolExecutor(
            max_workers=config.trigger.max_in_flight, thread_name_prefix=f"trigger-{config.name}"[:40]
        )
        self._trigger: AirflowTrigger | None = None
        self._source: Source | None = None
        self._thread = threading.Thread(target=self._run, name=f"worker-{config.key}", daemon=True)

    # -- control, from the service's threads ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        metrics.forget(self._label)

    def secret_changed(self, fingerprint: str) -> None:
        """The listener Secret has new data (rotation, repair): reconnect with it."""
        with self._lock:
            self._wanted_fingerprint = fingerprint
            if self._secret_fingerprint is not None and fingerprint != self._secret_fingerprint:
                LOG.info("%s: listener Secret changed; reconnecting with the new credential", self._label)
                self._rebuild.set()

    def annotation_changed(self, replay_annotation: str | None) -> None:
        with self._lock:
            self._replay_annotation = replay_annotation
            if planning.replay_wanted(replay_annotation, self._replay_acted):
                self._rebuild.set()

    def status(self) -> ListenerStatus:
        """What status.listener should say now (updatedAt is set by the writer)."""
        with self._lock:
            counters = self._counters
            error = self._source_error or self._airflow_error
            return ListenerStatus(
                replica=self._replica,
                lag=counters.lag,
                consumed=counters.consumed,
                runs_created=counters.runs_created,
                duplicates=counters.duplicates,
                retries=counters.retries,
                dead_lettered=counters.dead_lettered,
                last_run_id=counters.last_run_id,
                error=error,
                replay=self._replay_outcome,
                replay_request=self._replay_acted,
            )

    def take_urgent(self) -> bool:
        """Whether something a user waits for changed (an error, a replay): write status soon."""
        urgent = self._urgent.is_set()
        self._urgent.clear()
        return urgent

    # -- the loop ------------------------------------------------------------------------------

    def _set_source_error(self, error: str | None) -> None:
        with self._lock:
            if error != self._source_error:
                self._source_error = error
                self._urgent.set()
                metrics.UP.labels(self._label).set(0 if error else 1)
                if error:
                    LOG.warning("%s: %s", self._label, error)

    def _set_airflow_error(self, error: str | None) -> None:
        with self._lock:
            if error != self._airflow_error:
                self._airflow_error = error
                self._urgent.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            source = self._open()
            if source is None:
                failures += 1
                self._stop.wait(planning.backoff_delay(failures, *REOPEN_BACKOFF))
                continue
            failures = 0
            try:
                self._serve(source)
            except Exception as error:
                LOG.exception("%s: the trigger loop failed; reconnecting", self._label)
                self._set_source_error(f"listener error: {type(error).__name__}: {error}")
                self._stop.wait(REOPEN_BACKOFF[0].total_seconds())
            finally:
                source.close()

    def _open(self) -> Source | None:
        config = self.config
        self._rebuild.clear()
        found = self._read_secret(config.namespace, config.secret_name)
        if found is None:
            self._set_source_error(f"Secret {config.secret_name} with the listener's credential does not exist yet")
            return None
        data, fingerprint = found
        try:
            self._trigger = self._resolve_trigger(config.airflow_ref, config.namespace)
        except Exception as error:
            self._set_airflow_error(f"Airflow instance unusable: {error}")
            return None
        with self._lock:
            replay_from = self._take_replay_request()
        try:
            source = self._source_factory(config, data)
            source.open(replay_from)
        except SourceError as error:
            self._set_source_error(str(error))
            return None
        except Exception as error:
            self._set_source_error(f"cannot consume {config.topic}: {type(error).__name__}: {error}")
            return None
        with self._lock:
            self._secret_fingerprint = fingerprint
            if self._wanted_fingerprint is not None and self._wanted_fingerprint != fingerprint:
                self._rebuild.set()  # rotated again while connecting
        self._replay_pending = replay_from
        return source

    def _take_replay_request(self) -> datetime | None:
        annotation = self._replay_annotation
        if not planning.replay_wanted(annotation, self._replay_acted):
            return None
        assert annotation is not None
        self._replay_acted = annotation
        try:
            moment = planning.parse_replay_from(annotation)
        except planning.ReplayRequestError as error:
            self._replay_outcome = f"refused: {error}"
            self._urgent.set()
            self._emit_event(self.config, "Warning", "ReplayRefused", str(error))
            return None
        return moment

    def _serve(self, source: Source) -> None:
        self._epoch += 1
        epoch = self._epoch
        self._source = source
        self._retries.clear()
        metrics.UP.labels(self._label).set(0 if self._source_error else 1)
        lag_due = time.monotonic() + 2.0
        max_in_flight = self.config.trigger.max_in_flight
        max_window = planning.window_limit(max_in_flight)
        while not self._stop.is_set() and not self._rebuild.is_set():
            self._drain_completions(source, epoch, block=False)
            self._submit_due(epoch, max_in_flight)
            free = min(max_in_flight - self._running, max_window - source.window())
            if free > 0:
                timeout = RECEIVE_TIMEOUT_SECONDS
                if self._retries:
                    timeout = max(0.0, min(timeout, self._retries[0].at - time.monotonic()))
                messages = source.receive(min(free, MAX_BATCH), timeout)
                if messages:
                    with self._lock:
                        self._counters.consumed += len(messages)
                    metrics.CONSUMED.labels(self._label).inc(len(messages))
                for message in messages:
                    self._submit(epoch, _Item(message))
            else:
                source.receive(0, 0)  # keeps the consumer's session alive; takes nothing
                self._drain_completions(source, epoch, block=True)
            source.commit()
            metrics.IN_FLIGHT.labels(self._label).set(self._running)
            metrics.UNCOMMITTED.labels(self._label).set(source.window())
            outcome = source.replay_outcome()
            if outcome is not None:
                self._replayed(outcome)
            if time.monotonic() >= lag_due:
                lag_due = time.monotonic() + LAG_INTERVAL_SECONDS
                lag = source.lag()
                with self._lock:
                    self._counters.lag = lag
                if lag is not None:
                    metrics.LAG.labels(self._label).set(lag)
            self._set_source_error(source.error())
        source.commit(force=True)

    def _replayed(self, outcome: str) -> None:
        with self._lock:
            self._replay_outcome = outcome
            self._urgent.set()
        LOG.info("%s: replay: %s", self._label, outcome)
        self._emit_event(self.config, "Normal", "Replayed", outcome)

    # -- triggers ------------------------------------------------------------------------------

    def _submit(self, epoch: int, item: _Item, dead_letter: bool = False) -> None:
        job = self._dead_letter_job if dead_letter else self._trigger_job
        try:
            self._pool.submit(job, epoch, item)
        except RuntimeError:  # the pool is shut down: the worker is stopping
            return
        self._running += 1

    def _trigger_job(self, epoch: int, item: _Item) -> None:
        trigger, config = self._trigger, self.config
        assert trigger is not None
        if config.trigger.mode == "AssetEvent":
            assert config.trigger.asset_uri is not None
            answer = trigger.asset_event(config.trigger.asset_uri, item.message, config.broker_type)
        else:
            answer = trigger.dag_run(config.trigger.dag_id, item.message, config.broker_type)
        metrics.TRIGGER_LATENCY.labels(self._label).observe(answer.seconds)
        self._completions.put((epoch, item, answer, False))

    def _dead_letter_job(self, epoch: int, item: _Item) -> None:
        config = self.config
        last = item.last
        headers = dead_letter_headers(
            item.message,
            pipeline=config.key,
            dag_id=config.trigger.dag_id,
            status_code=last.status_code if last else None,
            detail=last.detail if last else "",
            attempts=item.refusals,
        )
        source = self._source
        try:
            if source is None:
                raise SourceError("no consumer is open")
            source.dead_letter(item.message, headers)
        except SourceError as error:
            self._completions.put((epoch, item, Answer(None, str(error), 0.0), True))
            return
        self._completions.put((epoch, item, None, True))

    def _drain_completions(self, source: Source, epoch: int, *, block: bool) -> None:
        try:
            first = self._completions.get(timeout=RECEIVE_TIMEOUT_SECONDS) if block else self._completions.get_nowait()
        except queue.Empty:
            return
        batch = [first]
        while True:
            try:
                batch.append(self._completions.get_nowait())
            except queue.Empty:
                break
        for done_epoch, item, answer, dead_letter in batch:
            self._running -= 1
            if dead_letter:
                self._dead_letter_finished(source, epoch, done_epoch, item, answer)
            else:
                assert answer is not None
                self._trigger_finished(source, epoch, done_epoch, item, answer)

    def _trigger_finished(self, source: Source, epoch: int, done_epoch: int, item: _Item, answer: Answer) -> None:
        outcome = planning.classify(answer.status_code)
        item.last = answer
        label = self._label
        if outcome in (Outcome.CREATED, Outcome.DUPLICATE):
            with self._lock:
                if outcome is Outcome.CREATED:
                    self._counters.runs_created += 1
                    metrics.RUNS_CREATED.labels(label).inc()
                else:
                    self._counters.duplicates += 1
                    metrics.DUPLICATES.labels(label).inc()
                self._counters.last_run_id = item.message.run_id
            self._set_airflow_error(None)
            if done_epoch == epoch:
                source.done(item.message)
            return
        if done_epoch != epoch:
            return  # the message comes again from the new consumer
        with self._lock:
            self._counters.retries += 1
        if outcome is Outcome.TRANSIENT:
            item.transient_failures += 1
            metrics.RETRIES.labels(label, "transient").inc()
            where = self._trigger_target()
            status = "no answer" if answer.status_code is None else f"HTTP {answer.status_code}"
            self._set_airflow_error(f"Airflow could not take runs for {where} ({status}: {answer.detail}); retrying")
            self._schedule(item, item.transient_failures)
            return
        item.refusals += 1
        metrics.RETRIES.labels(label, "refused").inc()
        limit = self.config.trigger.retry.limit
        if not planning.dead_letter_due(item.refusals, limit):
            self._schedule(item, item.refusals)
            return
        LOG.warning(
            "%s: Airflow refused %s %d time(s) (HTTP %s: %s)",
            label,
            item.message.run_id,
            item.refusals,
            answer.status_code,
            answer.detail,
        )
        if self.config.dead_letter_topic is None:
            metrics.WITHOUT_RUN.labels(label).inc()
            self._emit_event(
                self.config,
                "Warning",
                "MessageDropped",
                f"{item.message.run_id}: Airflow refused it {item.refusals} time(s) (HTTP {answer.status_code}: "
                f"{answer.detail}) and dead-lettering is disabled; committed without a run",
            )
            source.done(item.message)
            return
        self._submit(epoch, item, dead_letter=True)

    def _dead_letter_finished(
        self, source: Source, epoch: int, done_epoch: int, item: _Item, failure: Answer | None
    ) -> None:
        if failure is None:
            with self._lock:
                self._counters.dead_lettered += 1
            metrics.DEAD_LETTERED.labels(self._label).inc()
            self._emit_event(
                self.config,
                "Warning",
                "MessageDeadLettered",
                f"{item.message.run_id}: Airflow refused it {item.refusals} time(s) "
                f"(HTTP {item.last.status_code if item.last else '?'}: {item.last.detail if item.last else ''}); "
                f"sent to {self.config.dead_letter_topic}",
            )
            if done_epoch == epoch:
                source.done(item.message)
            return
        if done_epoch != epoch:
            return
        item.dead_letter_failures += 1
        self._set_source_error(failure.detail)
        self._schedule(item, item.dead_letter_failures, dead_letter=True)

    def _schedule(self, item: _Item, failures: int, dead_letter: bool = False) -> None:
        delay = planning.backoff_delay(failures, self._backoff, self._max_backoff)
        self._seq += 1
        heapq.heappush(self._retries, _Due(time.monotonic() + delay, self._seq, item, dead_letter))

    def _submit_due(self, epoch: int, max_in_flight: int) -> None:
        now = time.monotonic()
        while self._retries and self._retries[0].at <= now and self._running < max_in_flight:
            due = heapq.heappop(self._retries)
            self._submit(epoch, due.item, dead_letter=due.dead_letter)

    def _trigger_target(self) -> str:
        trigger = self.config.trigger
        if trigger.mode == "AssetEvent":
            return f"asset {trigger.asset_uri}"
        return f"DAG {trigger.dag_id}"


def utc_now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
