"""What the worker needs from a broker consumer (one implementation per broker), and their shared base."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from eventpipeline.planning.delivery import Message


class SourceError(Exception):
    """The consumer could not be opened or used; the message says what to fix."""

    def __init__(self, message: str, *, credential_refused: bool = False) -> None:
        super().__init__(message)
        self.credential_refused = credential_refused


@dataclass(frozen=True)
class Lag:
    """One read of the broker's counts for the subscription."""

    uncommitted: int  # messages on the topic the subscription has not committed
    untaken: int  # of those, the ones past what this consumer has taken: what an idle consumer leaves waiting


class Source(Protocol):
    def open(self, replay_from: datetime | None) -> None:
        """Connect and subscribe; with `replay_from`, rewind the subscription to that time first."""

    def receive(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to `max_messages` new messages; each counts in `window` until `done`."""

    def done(self, message: Message) -> None:
        """The message has its run (or went to the dead-letter topic): it may be committed."""

    def commit(self, *, force: bool = False) -> None:
        """Commit what may be committed (rate-limited unless forced)."""

    def window(self) -> int:
        """Messages taken and not yet committed."""

    def lag(self) -> Lag | None:
        """The subscription's uncommitted and untaken messages, when the broker says (None: unknown)."""

    def replay_outcome(self) -> str | None:
        """Once, after `open(replay_from=…)` took effect: what was rewound."""

    def error(self) -> str | None:
        """The latest error the client reported, until consuming works again."""

    def dead_letter(self, message: Message, headers: Mapping[str, str]) -> None:
        """Write the message to the dead-letter topic and wait for the broker's ack; raises SourceError."""

    def close(self) -> None:
        """Commit what may be committed, then disconnect."""


P = TypeVar("P")


class SourceBase(Generic[P]):
    """What the Kafka and Pulsar sources share: the error to report, the replay outcome to hand
    over once, and one dead-letter producer made on first use (most pipelines never need one)."""

    def __init__(self) -> None:
        self._error: str | None = None
        self._replay_outcome: str | None = None
        self._producer: P | None = None
        self._producer_lock = threading.Lock()

    def replay_outcome(self) -> str | None:
        outcome, self._replay_outcome = self._replay_outcome, None
        return outcome

    def error(self) -> str | None:
        return self._error

    def _dead_letter_producer(self, make: Callable[[], P]) -> P:
        """The producer for the dead-letter topic; trigger threads may ask at the same time."""
        with self._producer_lock:
            if self._producer is None:
                self._producer = make()
            return self._producer

    def _take_producer(self) -> P | None:
        """The producer, if one was made, handed over for closing."""
        with self._producer_lock:
            producer, self._producer = self._producer, None
            return producer
