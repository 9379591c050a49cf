"""Drift checks answered from one batched read per broker and period, not from reads per pipeline.

A scheduled drift check runs inside `drift_reads()`. While it does, an adapter that keeps a
`Snapshot` answers its reads (topics, users, ACLs) from one listing of the whole broker, taken
at most `max_age` seconds ago and shared by every pipeline on that broker: a drift period costs
a few listings per broker instead of a dozen reads per pipeline. What the operator itself
changed since the listing (a key `touched` after a write) is read fresh, so a run never acts on
a picture older than its own writes; what someone else changed by hand is seen at the next
listing, one period later at most. Outside `drift_reads()` (creations, updates, rotations,
retries) every read goes to the broker.

`RecentReads` does the same for single reads that every pipeline repeats (a referenced broker
or Airflow instance and its admin Secret, a DAG's tags): a drift check takes the answer of the
last read of that key if it is less than a period old, and every other read refreshes it.

`WatchedCopies` answers a drift check's read of an object from the copy a watch delivered
(the pipeline itself, from kopf's index), unless the operator's own last write to it has not
come back through the watch yet: then the check reads fresh, as after any own write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
S = TypeVar("S")
T = TypeVar("T")

# The oldest snapshot the current drift check accepts, in seconds; None outside drift checks.
_DRIFT_READS: ContextVar[float | None] = ContextVar("eventpipeline_drift_reads", default=None)

# Writes this close before a listing began may not show in it yet (metadata propagates between
# brokers): their keys stay read-fresh in the new snapshot too.
PROPAGATION_MARGIN_SECONDS = 5.0


@contextmanager
def drift_reads(max_age: float | None) -> Iterator[None]:
    """Within this block (this thread or task), adapters that keep a snapshot may answer reads from
    one at most `max_age` seconds old (None: read everything fresh)."""
    token = _DRIFT_READS.set(max_age)
    try:
        yield
    finally:
        _DRIFT_READS.reset(token)


def drift_max_age() -> float | None:
    return _DRIFT_READS.get()


@dataclass(frozen=True)
class Cached(Generic[T]):
    """A read answered from the snapshot (`value` may itself be None: "absent")."""

    value: T


@dataclass
class Listing(Generic[S]):
    """What one batched read of a broker returned, and the keys it could not tell about."""

    state: S
    unknown: frozenset[Hashable] = frozenset()


class Snapshot(Generic[S]):
    """One broker's state, listed in one batch; thread-safe.

    `lookup` answers from it only inside `drift_reads()` and only for keys nobody has touched
    since the listing; otherwise it returns None and the caller reads from the broker.
    """

    def __init__(
        self,
        fetch: Callable[[], Listing[S]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._listing = threading.Lock()  # one listing at a time; readers wait for it
        self._state: S | None = None
        self._taken = 0.0
        self._touched: dict[Hashable, float] = {}
        self.listings = 0

    def touched(self, keys: Iterable[Hashable]) -> None:
        """The operator changed these on the broker: read them fresh until the next listing."""
        now = self._clock()
        with self._lock:
            for key in keys:
                self._touched[key] = now

    def lookup(self, keys: Iterable[Hashable], read: Callable[[S], T]) -> Cached[T] | None:
        """`read` applied to a current snapshot, or None when the caller must ask the broker."""
        max_age = drift_max_age()
        if max_age is None:
            return None
        wanted = list(keys)
        with self._listing:
            with self._lock:
                fresh_enough = self._state is not None and self._clock() - self._taken < max_age
                if fresh_enough and self._state is not None:
                    return self._answer(self._state, wanted, read)
            started = self._clock()
            listing = self._fetch()  # outside _lock: writes go on meanwhile and mark their keys
            self.listings += 1
            with self._lock:
                margin = started - PROPAGATION_MARGIN_SECONDS
                self._touched = {key: at for key, at in self._touched.items() if at >= margin}
                for key in listing.unknown:
                    self._touched[key] = started
                # Its age counts from when it arrived: a listing slower than the period (a big
                # broker, a loaded machine) still serves the checks after it, instead of each
                # check waiting for a listing of its own.
                self._state, self._taken = listing.state, self._clock()
                return self._answer(listing.state, wanted, read)

    def _answer(self, state: S, keys: list[Hashable], read: Callable[[S], T]) -> Cached[T] | None:
        if any(key in self._touched for key in keys):
            return None
        return Cached(read(state))


class RecentReads(Generic[K, T]):
    """The last answer of each key's read, for drift checks; thread-safe.

    Inside `drift_reads()` a key read less than `max_age` seconds ago is answered again; outside,
    and when older, `read` runs and its answer is kept (failures are not). What a read returns
    must be safe to share between runs (not changed by them).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: dict[K, tuple[float, T]] = {}

    def get(self, key: K, read: Callable[[], T]) -> T:
        max_age = drift_max_age()
        started = self._clock()
        if max_age is not None:
            with self._lock:
                kept = self._kept.get(key)
            if kept is not None and started - kept[0] < max_age:
                return kept[1]
        value = read()
        with self._lock:
            self._kept[key] = (started, value)
        return value


class WatchedCopies(Generic[K, T]):
    """Objects as a watch last delivered them, for drift checks; thread-safe.

    `seen` takes each watch event (its resourceVersion and the copy), `written` each of the
    operator's own writes (the resourceVersion the API server answered with). Inside
    `drift_reads()`, `lookup` answers from the watch's copy once it holds the own last write;
    until then, and outside drift checks, it returns None and the caller reads fresh. A write the
    watch never shows as such (a later event overtook it before `written` ran) stops counting
    after `max_age`, one drift period: the copy then is newer than the write anyway.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._copies: dict[K, tuple[str, T]] = {}
        self._pending: dict[K, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._copies)

    def seen(self, key: K, version: str, copy: T) -> None:
        with self._lock:
            self._copies[key] = (version, copy)
            pending = self._pending.get(key)
            if pending is not None and pending[0] == version:
                del self._pending[key]

    def written(self, key: K, version: str | None) -> None:
        """The operator wrote the object; `version` None: the write's outcome is not known."""
        with self._lock:
            copy = self._copies.get(key)
            if version is not None and copy is not None and copy[0] == version:
                self._pending.pop(key, None)
                return
            self._pending[key] = (version or "", self._clock())

    def forget(self, key: K) -> None:
        with self._lock:
            self._copies.pop(key, None)
            self._pending.pop(key, None)

    def lookup(self, key: K) -> Cached[T] | None:
        max_age = drift_max_age()
        if max_age is None:
            return None
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                if self._clock() - pending[1] < max_age:
                    return None
                del self._pending[key]
            copy = self._copies.get(key)
        return None if copy is None else Cached(copy[1])
