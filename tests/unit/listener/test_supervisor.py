"""The supervisor restarts a loop that raises, with backoff, and stops when told."""

from __future__ import annotations

import threading

import pytest

from eventpipeline.listener import supervisor
from eventpipeline.listener.supervisor import supervise


class CountingStop(threading.Event):
    """A stop event whose waits return at once, recording how long they would have been."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def test_a_loop_that_raises_is_restarted_with_backoff_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    stop, runs, failures = CountingStop(), [], []

    def loop() -> None:
        runs.append(1)
        if len(runs) == 4:
            stop.set()
            return
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    supervise("the Secret watch", loop, stop, clock=lambda: 0.0, on_failure=failures.append)
    assert len(runs) == 4
    assert stop.waits == [1.0, 2.0, 4.0]
    assert len(failures) == 3 and all(isinstance(error, UnicodeDecodeError) for error in failures)
    assert "the Secret watch failed; restarting it" in caplog.text


def test_a_loop_that_ran_long_before_failing_restarts_after_the_shortest_backoff() -> None:
    stop, now = CountingStop(), [0.0]

    def loop() -> None:
        now[0] += supervisor.HEALTHY_AFTER_SECONDS + 1
        if len(stop.waits) == 3:
            stop.set()
        raise RuntimeError("boom")

    supervise("a watch", loop, stop, clock=lambda: now[0])
    assert stop.waits[:3] == [1.0, 1.0, 1.0]


def test_other_pipelines_keep_being_served_when_one_loop_keeps_failing() -> None:
    stop = threading.Event()
    healthy_turns = threading.Semaphore(0)

    def bad() -> None:
        raise ValueError("one pipeline's odd data")

    def good() -> None:
        while not stop.is_set():
            healthy_turns.release()
            stop.wait(0.001)

    threads = [
        threading.Thread(target=supervise, args=(name, loop, stop)) for name, loop in (("bad", bad), ("good", good))
    ]
    for thread in threads:
        thread.start()
    for _ in range(20):
        assert healthy_turns.acquire(timeout=5)
    stop.set()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
