"""One pipeline's trigger loop, in its own thread: consume → trigger → commit.

Each pipeline has its own consumer, window, retry schedule and pool of trigger threads, so a
poison message, a missing DAG or a slow answer for one pipeline never stalls another.

Order of events for one message: taken from the broker (counts in the window) → trigger
attempt(s) on the pool (`dispatch`) → 200/409: done → committed once every earlier message of
its partition is done too (`commits`). A transient failure keeps the message in the window and
retries it with backoff (`retries`); nothing after it is committed meanwhile, so a crash at any
point only causes re-deliveries, which Airflow answers with 409 thanks to the deterministic run
id. The connection itself (credential rotation, replay) is the `session`'s; every counter goes
through one `stats` recorder.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor
from datetime import timedelta

from eventpipeline.api.pipeline import ListenerStatus
from eventpipeline.listener.dispatch import Dispatcher
from eventpipeline.listener.retries import Clock
from eventpipeline.listener.session import (
    Connection,
    EventSink,
    SecretReader,
    Session,
    SourceFactory,
    TriggerResolver,
)
from eventpipeline.listener.source import SourceError
from eventpipeline.listener.stalls import REQUEST_ALLOWANCE_SECONDS, StallDetector
from eventpipeline.listener.stats import ListenerStats
from eventpipeline.listener.supervisor import supervise
from eventpipeline.planning import delivery
from eventpipeline.planning.serving import PipelineConfig

LOG = logging.getLogger("eventpipeline.listener")
LAG_INTERVAL_SECONDS = 10.0
FIRST_LAG_SECONDS = 2.0
RECEIVE_TIMEOUT_SECONDS = 0.1
REOPEN_BACKOFF = (timedelta(seconds=1), timedelta(seconds=60))
MAX_BATCH = 256
# A consumer that takes nothing this long while the topic holds messages for it and the window has
# room is stuck (seen after broker faults: a group that never settled, a fetcher that never resumed).
IDLE_CONSUMER_ALLOWANCE_SECONDS = 60.0


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
        clock: Clock = time.monotonic,
        executor: Executor | None = None,
        receive_timeout: float = RECEIVE_TIMEOUT_SECONDS,
        stall_allowance: float = REQUEST_ALLOWANCE_SECONDS,
    ) -> None:
        self.config = config
        self.stats = ListenerStats(config.key, replica, previous)
        self.session = Session(
            config,
            self.stats,
            source_factory=source_factory,
            read_secret=read_secret,
            resolve_trigger=resolve_trigger,
            emit_event=emit_event,
            replay_annotation=replay_annotation,
            replay_acted=previous.replay_request if previous else None,
        )
        self._stalls = StallDetector(clock, stall_allowance)
        self._dispatcher = Dispatcher(
            config, self.stats, emit_event, clock=clock, executor=executor, stalls=self._stalls
        )
        self._clock = clock
        self._stall_allowance = stall_allowance
        self._stalled_at: float | None = None
        self._reopen = False  # a stall: open the session again
        self._turned_at = clock()  # the loop's last turn, for the hung-loop check
        self._receive_timeout = receive_timeout
        self._window_limit = delivery.window_limit(config.trigger.max_in_flight)
        self._lag_due = 0.0
        self._wanting_since: float | None = None  # room in the window, and nothing taken since
        self._untaken_since: float | None = None  # the lag reads have shown messages not taken since
        self._idle_allowance = min(IDLE_CONSUMER_ALLOWANCE_SECONDS, stall_allowance)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervised, name=f"worker-{config.key}", daemon=True)

    # -- control, from the service's threads ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._dispatcher.shutdown()
        self.stats.forget()

    def secret_changed(self, fingerprint: str) -> None:
        self.session.secret_changed(fingerprint)

    def annotation_changed(self, replay_annotation: str | None) -> None:
        self.session.annotation_changed(replay_annotation)

    def status(self) -> ListenerStatus:
        """What status.listener says; from the status writer's thread, so a hung loop shows too."""
        snapshot = self.stats.snapshot()
        idle = self._clock() - self._turned_at
        if self._thread.is_alive() and idle > self._stall_allowance and self._dispatcher.running:
            error = f"ListenerStalled: the trigger loop of {self.config.key} has not turned for {idle:.0f} s"
            return snapshot.model_copy(update={"error": error})
        return snapshot

    def take_urgent(self) -> bool:
        return self.stats.take_urgent()

    # -- the loop ------------------------------------------------------------------------------

    def _supervised(self) -> None:
        def failed(error: Exception) -> None:
            self.stats.source_error(f"listener error: {type(error).__name__}: {error}")

        supervise(f"the worker of {self.config.key}", self._run, self._stop, on_failure=failed)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._turned_at = self._clock()
            connection = self.connect()
            if connection is None:
                failures += 1
                self._stop.wait(delivery.backoff_delay(failures, *REOPEN_BACKOFF))
                continue
            failures = 0
            try:
                while not self._stop.is_set() and not self.session.reconnect_wanted() and not self._reopen:
                    self.step(connection)
                connection.source.commit(force=True)
            except SourceError as error:  # e.g. the topic was recreated: reopen, no traceback needed
                LOG.warning("%s: %s", self.config.key, error)
                self.stats.source_error(str(error))
                self._stop.wait(REOPEN_BACKOFF[0].total_seconds())
            except Exception as error:
                LOG.exception("%s: the trigger loop failed; reconnecting", self.config.key)
                self.stats.source_error(f"listener error: {type(error).__name__}: {error}")
                self._stop.wait(REOPEN_BACKOFF[0].total_seconds())
            finally:
                self._reopen = False
                connection.source.close()

    def connect(self) -> Connection | None:
        """Open a consumer (see `Session.open`) and start a new epoch of triggers on it."""
        connection = self.session.open()
        if connection is not None:
            self._dispatcher.begin(connection)
            self._lag_due = self._clock() + FIRST_LAG_SECONDS
            self._wanting_since = self._untaken_since = None
        return connection

    def step(self, connection: Connection) -> None:
        """One turn of the loop: handle answers, retry what is due, take messages, commit, report."""
        source, dispatcher = connection.source, self._dispatcher
        dispatcher.drain(source, timeout=None)
        dispatcher.submit_due()
        free = min(dispatcher.free_slots(), self._window_limit - source.window())
        if free > 0:
            messages = source.receive(min(free, MAX_BATCH), dispatcher.next_retry_in(self._receive_timeout))
            self.stats.consumed(len(messages))
            for message in messages:
                dispatcher.submit(message)
            if messages:
                self._wanting_since = None
            elif self._wanting_since is None:
                self._wanting_since = self._clock()
        else:
            self._wanting_since = None  # the window is full: waiting for Airflow, not for the broker
            source.receive(0, 0)  # keeps the consumer's session alive; takes nothing
            dispatcher.drain(source, timeout=self._receive_timeout)
        source.commit()
        self.stats.flow(in_flight=dispatcher.in_flight, uncommitted=source.window())
        self.session.report(source)
        self._turned_at = self._clock()
        self._check_stalls()
        if self._clock() >= self._lag_due:
            self._lag_due = self._clock() + LAG_INTERVAL_SECONDS
            lag = source.lag()
            self.stats.lag(None if lag is None else lag.uncommitted)
            self._check_idle_consumer(None if lag is None else lag.untaken)

    def _check_idle_consumer(self, untaken: int | None) -> None:
        """Messages wait on the topic beyond those taken, the window has had room for a whole
        allowance, and the consumer gave none: reopen it (the broker hands the partitions over
        again from the committed offsets), and say so in the log, status and metrics."""
        since = self._wanting_since
        if not untaken or since is None:
            self._untaken_since = None
            return
        # Counted from when a lag read first showed the backlog too, not only from the last message
        # taken: after a quiet hour, the first new message may not be fetched yet at the lag read.
        self._untaken_since = max(since, self._untaken_since or self._clock())
        idle = self._clock() - self._untaken_since
        if idle <= self._idle_allowance:
            return
        why = (
            f"ListenerStalled: the consumer took no message for {idle:.0f} s while {untaken} wait on the "
            "topic and the window has room; reopening the consumer"
        )
        LOG.warning("%s: %s", self.config.key, why)
        self.stats.consumer_stalled(why)
        self._reopen = True

    def _check_stalls(self) -> None:
        """A stall reopens the session; status says so until the partitions move again, or until
        they stay quiet a whole allowance after the reopen (nothing was waiting after all)."""
        stalled = self._stalls.stalled()
        now = self._clock()
        if stalled:
            partitions = ", ".join(str(p) for p in stalled)
            why = (
                f"ListenerStalled: partition(s) {partitions} hold messages that made no progress for longer "
                f"than their backoff explains ({self._stall_allowance:.0f} s past it); reopening the consumer"
            )
            LOG.warning("%s: %s", self.config.key, why)
            self.stats.stalled(stalled, why)
            self._stalled_at, self._reopen = now, True
        elif self._stalled_at is not None and now - self._stalled_at > self._stall_allowance:
            self._stalled_at = None
            self.stats.stalled([])
