"""Which partitions hold messages that wait longer than anything the listener knows explains.

A message in the dispatcher's care is either on its way (a request to Airflow or a dead-letter
write runs for it) or waiting for its retry. A request on its way has `request_allowance`
seconds (Airflow's timeout, a token renewal, the answer's way back); one past it is not waiting
for anything the listener knows of — a lost job, a hung request — and its partition is stalled.
A message waiting for its retry waits its backoff, and once due it waits for a free slot: while
Airflow is slow the concurrency limit (`congestion`) keeps it waiting far beyond its backoff,
which is throttling, not a stall, as long as answers keep coming. Only when it is due, past the
allowance too, and no answer at all came for an allowance (every slot held by a hung request)
does it stall its partition. A stall makes the worker reopen its session (the broker delivers
the messages again) and status and a metric say so until the partition moves again.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass

from eventpipeline.listener.retries import Clock

# A request may take Airflow's timeout (15 s) up to three times over (DAG tags, the token, the run
# itself), and then some for a loaded machine.
REQUEST_ALLOWANCE_SECONDS = 120.0


@dataclass
class _Expected:
    partition: int
    deadline: float
    on_its_way: bool  # False: waiting for its retry, then for a free slot


class StallDetector:
    """Used from the worker's thread only."""

    def __init__(self, clock: Clock = time.monotonic, request_allowance: float = REQUEST_ALLOWANCE_SECONDS) -> None:
        self._clock = clock
        self._allowance = request_allowance
        self._expected: dict[Hashable, _Expected] = {}
        self._answered_at = clock()

    def expect(self, key: Hashable, partition: int) -> None:
        """A request (or dead-letter write) for the message goes out now."""
        self._expected[key] = _Expected(partition, self._clock() + self._allowance, on_its_way=True)

    def retry_at(self, key: Hashable, partition: int, wait: float) -> None:
        """The message is tried again once `wait` seconds passed and a slot is free."""
        self._expected[key] = _Expected(partition, self._clock() + wait + self._allowance, on_its_way=False)

    def answered(self) -> None:
        """Some request came back (whatever its answer): the slots move."""
        self._answered_at = self._clock()

    def finished(self, key: Hashable) -> None:
        """The message is done (a run, the dead-letter topic), or no longer this worker's."""
        self._expected.pop(key, None)

    def clear(self) -> None:
        """A new session: every message not done comes again, with new expectations."""
        self._expected.clear()
        self._answered_at = self._clock()

    def stalled(self) -> list[int]:
        """Partitions with a message past its deadline, sorted."""
        now = self._clock()
        quiet = now - self._answered_at > self._allowance
        return sorted({e.partition for e in self._expected.values() if e.deadline < now and (e.on_its_way or quiet)})

    def waiting(self, partition: int) -> int:
        return sum(1 for e in self._expected.values() if e.partition == partition)
