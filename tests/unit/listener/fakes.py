"""In-memory stand-ins for the broker, Airflow, the clock and the trigger pool: no servers, no sleeps."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from datetime import datetime
from typing import Any

from eventpipeline.api.common import AirflowInstanceRef
from eventpipeline.api.pipeline import RetrySpec, TriggerSpec
from eventpipeline.listener.commits import CommitTracker
from eventpipeline.listener.source import Lag
from eventpipeline.listener.trigger import Answer
from eventpipeline.planning.delivery import Message
from eventpipeline.planning.serving import PipelineConfig


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InlineExecutor(Executor):
    """Runs each job at once, on the caller's thread."""

    def __init__(self) -> None:
        self.closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.closed:
            raise RuntimeError("shut down")
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.closed = True


class HeldExecutor(InlineExecutor):
    """Holds jobs until the test releases them: a slow Airflow without waiting for one."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.closed:
            raise RuntimeError("shut down")
        self.held.append((fn, args))
        return Future()

    def release(self, keep: Callable[[Message], bool] = lambda _message: False) -> int:
        """Run every held job except those whose message `keep` holds back; how many ran."""
        ran, still = 0, []
        for fn, args in self.held:
            if keep(args[1].item.message):
                still.append((fn, args))
            else:
                fn(*args)
                ran += 1
        self.held = still
        return ran


class FakeSource:
    """A Kafka-like consumer over a list of messages, with real commit tracking."""

    def __init__(self, messages: list[Message]) -> None:
        self.pending = deque(messages)
        self.tracker = CommitTracker()
        self.committed: dict[int, int] = {}
        self.dead: list[tuple[str, dict[str, str]]] = []
        self.opened: list[datetime | None] = []
        self.closed = False
        self.failure: str | None = None
        self.outcome: str | None = None
        self.lock = threading.Lock()

    def open(self, replay_from: datetime | None) -> None:
        self.opened.append(replay_from)

    def receive(self, max_messages: int, timeout: float) -> list[Message]:
        taken: list[Message] = []
        while self.pending and len(taken) < max_messages:
            item = self.pending.popleft()
            assert item.offset is not None
            self.tracker.take(item.partition, item.offset)
            taken.append(item)
        return taken

    def done(self, message: Message) -> None:
        assert message.offset is not None
        self.tracker.finish(message.partition, message.offset)

    def commit(self, *, force: bool = False) -> None:
        self.committed.update(self.tracker.pending_commits())

    def window(self) -> int:
        return self.tracker.uncommitted

    def lag(self) -> Lag | None:
        return Lag(uncommitted=len(self.pending) + self.window(), untaken=len(self.pending))

    def replay_outcome(self) -> str | None:
        outcome, self.outcome = self.outcome, None
        return outcome

    def error(self) -> str | None:
        return self.failure

    def dead_letter(self, message: Message, headers: Mapping[str, str]) -> None:
        with self.lock:
            self.dead.append((message.run_id, dict(headers)))

    def close(self) -> None:
        self.commit()
        self.closed = True


class FakeAirflow:
    """Answers per run id from a script (200 unless it says otherwise); records every attempt."""

    def __init__(self, script: Callable[[str, int], int | None] = lambda _run, _attempt: 200) -> None:
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

    def asset_event(self, asset_uri: str, message: Message, broker_type: str) -> Answer:
        return self.dag_run(asset_uri, message, broker_type)


def messages(count: int, partitions: int = 2) -> list[Message]:
    """`count` messages spread round-robin over partitions; run ids `run-<partition>-<offset>`."""
    out = []
    for index in range(count):
        partition, offset = index % partitions, index // partitions
        out.append(
            Message("t", partition, str(offset), f"run-{partition}-{offset}", None, b"v", (), None, offset=offset)
        )
    return out


def config(dead_letter: bool = True, **retry: Any) -> PipelineConfig:
    """A pipeline with maxInFlight 4 and retry limit 2, backoff 1s up to 10s unless overridden."""
    spec = RetrySpec(**{"limit": 2, "backoff": "1s", "maxBackoff": "10s", **retry})
    trigger = TriggerSpec(dag_id="d", max_in_flight=4, retry=spec)
    return PipelineConfig(
        "ns", "p", "uid", "Kafka", "t", "t.dlq" if dead_letter else None, "g", "s", "listeners", trigger,
        AirflowInstanceRef(name="a"),
    )  # fmt: skip
