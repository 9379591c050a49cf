"""Which partitions hold messages that wait longer than anything the listener knows explains.

Every message a worker takes is expected to finish by a deadline: a request on its way has
`request_allowance` seconds (Airflow's timeout, a token renewal, the answer's way back); a
message waiting for its retry has its backoff on top. A message past its deadline is not
waiting for anything the listener knows of — a lost job, a hung consumer — and its partition is
stalled: the worker reopens its session (the broker delivers the message again) and status and
a metric say so until the partition moves again.
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


class StallDetector:
    """Used from the worker's thread only."""

    def __init__(self, clock: Clock = time.monotonic, request_allowance: float = REQUEST_ALLOWANCE_SECONDS) -> None:
        self._clock = clock
        self._allowance = request_allowance
        self._expected: dict[Hashable, _Expected] = {}

    def expect(self, key: Hashable, partition: int, wait: float = 0.0) -> None:
        """A request for the message goes out after `wait` seconds (0: now)."""
        self._expected[key] = _Expected(partition, self._clock() + wait + self._allowance)

    def finished(self, key: Hashable) -> None:
        """The message is done (a run, the dead-letter topic), or no longer this worker's."""
        self._expected.pop(key, None)

    def clear(self) -> None:
        """A new session: every message not done comes again, with new expectations."""
        self._expected.clear()

    def stalled(self) -> list[int]:
        """Partitions with a message past its deadline, sorted."""
        now = self._clock()
        return sorted({e.partition for e in self._expected.values() if e.deadline < now})

    def waiting(self, partition: int) -> int:
        return sum(1 for e in self._expected.values() if e.partition == partition)
