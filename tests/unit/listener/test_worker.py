"""The worker loop against a fake broker and a fake Airflow: no servers, a second or two each."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from eventpipeline.api.common import AirflowInstanceRef
from eventpipeline.api.pipeline import RetrySpec, TriggerSpec
from eventpipeline.listener.planning import CommitTracker, Message, PipelineConfig
from eventpipeline.listener.trigger import Answer
from eventpipeline.listener.worker import Worker


class FakeSource:
    def __init__(self, messages: list[Message]) -> None:
        self.pending = deque(messages)
        self.tracker = CommitTracker()
        self.committed: dict[int, int] = {}
        self.dead: list[tuple[str, Mapping[str, str]]] = []
        self.opened: list[datetime | None] = []
        self.lock = threading.Lock()

    def open(self, replay_from: datetime | None) -> None:
        self.opened.append(replay_from)

    def receive(self, max_messages: int, timeout: float) -> list[Message]:
        taken = []
        while self.pending and len(taken) < max_messages:
            item = self.pending.popleft()
            assert item.offset is not None
            self.tracker.take(item.partition, item.offset)
            taken.append(item)
        if not taken:
            time.sleep(timeout)
        return taken

    def done(self, message: Message) -> None:
        assert message.offset is not None
        self.tracker.finish(message.partition, message.offset)

    def commit(self, *, force: bool = False) -> None:
        self.committed.update(self.tracker.pending_commits())

    def window(self) -> int:
        return self.tracker.uncommitted

    def lag(self) -> int | None:
        return None

    def replay_outcome(self) -> str | None:
        return None

    def error(self) -> str | None:
        return None

    def dead_letter(self, message: Message, headers: Mapping[str, str]) -> None:
        with self.lock:
            self.dead.append((message.run_id, dict(headers)))

    def close(self) -> None:
        self.commit()


class FakeAirflow:
    """Answers per run id from a script (default 200); records every attempt."""

    def __init__(self, script: Callable[[str, int], int | None]) -> None:
        self.script = script
        self.attempts: dict[str, int] = {}
        self.created: set[str] = set()
        self.lock = threading.Lock()

    def dag_run(self, dag_id: str, message: Message, broker_type: str) -> Answer:
        with self.lock:
            attempt = self.attempts[message.run_id] = self.attempts.get(message.run_id, 0) + 1
        status = self.script(message.run_id, attempt)
        if status == 200:
            with self.lock:
                if message.run_id in self.created:
                    status = 409
                self.created.add(message.run_id)
        return Answer(status, "scripted", 0.001)


def messages(count: int, partitions: int = 2) -> list[Message]:
    out = []
    for index in range(count):
        partition, offset = index % partitions, index // partitions
        out.append(
            Message("t", partition, str(offset), f"run-{partition}-{offset}", None, b"v", (), None, offset=offset)
        )
    return out


def config(**retry: Any) -> PipelineConfig:
    trigger = TriggerSpec(dag_id="d", max_in_flight=4, retry=RetrySpec(**{"limit": 2, "backoff": "10ms", **retry}))
    return PipelineConfig("ns", "p", "uid", "Kafka", "t", "t.dlq", "g", "s", trigger, AirflowInstanceRef(name="a"))


def run_worker(source: FakeSource, airflow: FakeAirflow, until: Callable[[], bool], **retry: Any) -> Worker:
    events: list[tuple[str, str, str]] = []
    worker = Worker(
        config(**retry),
        replica="test",
        source_factory=lambda _config, _secret: source,  # type: ignore[arg-type,return-value]
        read_secret=lambda _ns, _name: ({"k": "v"}, "fp"),
        resolve_trigger=lambda _ref, _ns: airflow,  # type: ignore[arg-type,return-value]
        emit_event=lambda _config, *event: events.append(event),  # type: ignore[arg-type]
    )
    worker.events = events  # type: ignore[attr-defined]
    worker.start()
    deadline = time.monotonic() + 10
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    return worker


def test_every_message_gets_a_run_and_every_offset_is_committed() -> None:
    source, airflow = FakeSource(messages(40)), FakeAirflow(lambda _run, _attempt: 200)
    worker = run_worker(source, airflow, lambda: source.committed == {0: 20, 1: 20})
    assert len(airflow.created) == 40
    assert source.committed == {0: 20, 1: 20}
    status = worker.status()
    assert status.consumed == 40 and status.runs_created == 40 and status.duplicates == 0


def test_an_airflow_outage_holds_the_position_until_airflow_answers_again() -> None:
    outage = threading.Event()
    outage.set()
    source = FakeSource(messages(10, partitions=1))
    airflow = FakeAirflow(lambda _run, _attempt: None if outage.is_set() else 200)
    seen_outage = []

    def until() -> bool:
        if outage.is_set() and sum(airflow.attempts.values()) > 12:
            seen_outage.append(dict(source.committed))
            outage.clear()
        return source.committed.get(0) == 10

    worker = run_worker(source, airflow, until, maxBackoff="50ms")
    assert seen_outage and seen_outage[0] == {}, "nothing may be committed while Airflow is down"
    assert source.committed == {0: 10}
    assert len(airflow.created) == 10
    assert worker.status().retries > 0 and worker.status().error is None


def test_a_refused_message_goes_to_the_dead_letter_topic_after_the_limit_and_the_rest_flows() -> None:
    source = FakeSource(messages(6, partitions=1))
    airflow = FakeAirflow(lambda run, _attempt: 404 if run == "run-0-2" else 200)
    worker = run_worker(source, airflow, lambda: source.committed.get(0) == 6)
    assert airflow.attempts["run-0-2"] == 3  # the first attempt and retry.limit = 2 retries
    assert [run for run, _ in source.dead] == ["run-0-2"]
    headers = source.dead[0][1]
    assert headers["eventpipeline.error-status"] == "404" and headers["eventpipeline.attempts"] == "3"
    assert len(airflow.created) == 5
    assert worker.status().dead_lettered == 1
    assert any(reason == "MessageDeadLettered" for _type, reason, _msg in worker.events)  # type: ignore[attr-defined]


def test_a_409_counts_as_a_duplicate_and_is_committed() -> None:
    source = FakeSource(messages(4, partitions=1))
    airflow = FakeAirflow(lambda _run, _attempt: 409)
    worker = run_worker(source, airflow, lambda: source.committed.get(0) == 4)
    assert worker.status().duplicates == 4 and worker.status().runs_created == 0


def test_concurrent_triggers_never_exceed_max_in_flight() -> None:
    running, peak = [0], [0]
    lock = threading.Lock()
    source = FakeSource(messages(30, partitions=3))

    def script(_run: str, _attempt: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return 200

    run_worker(source, FakeAirflow(script), lambda: source.committed == {0: 10, 1: 10, 2: 10})
    assert peak[0] == 4  # maxInFlight, and used in full


def test_a_slow_head_of_partition_does_not_idle_the_other_trigger_slots() -> None:
    """One answer takes long; the others keep flowing, and the commit waits for the slow one."""
    source = FakeSource(messages(40, partitions=1))
    slow_done = threading.Event()

    def script(run: str, _attempt: int) -> int:
        if run == "run-0-0":
            time.sleep(0.5)
            slow_done.set()
        return 200

    airflow = FakeAirflow(script)
    observed: list[tuple[int, dict[int, int]]] = []

    def until() -> bool:
        if not slow_done.is_set():
            observed.append((len(airflow.created), dict(source.committed)))
        return source.committed.get(0) == 40

    run_worker(source, airflow, until)
    created_while_slow, committed_while_slow = max(observed, key=lambda item: item[0])
    assert created_while_slow >= 30, "the other slots kept triggering"
    assert committed_while_slow == {}, "nothing is committed past the unfinished head"
    assert source.committed == {0: 40}
