"""When each pipeline is next due for a reconciliation, for one scheduler over all pipelines.

A pipeline falls due for one of three reasons:

- `drift`: a full check (ACLs, credentials, Secrets, connections) one drift period after its
  last reconciliation, whoever ran it: the resync period, longer where that would take more
  checks per second than allowed (`drift_period`);
- `hint`: what its object says is due (a rotation or revocation time, a listener report that
  would change ListenerReady), never sooner than `hint_spacing` after its last reconciliation,
  so a hint that a run cannot clear (a permanent failure) is not a busy loop;
- `retry`: after a scheduled run failed on a transient error, from 1 s doubling to a cap.

Times are monotonic seconds; the caller's clock drives everything, so tests use plain numbers.
Only `drift` may be answered from a broker's per-period snapshot; the others read fresh.
Not thread-safe: the caller holds a lock.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from eventpipeline.api.pipeline import EventPipelineSpec, EventPipelineStatus
from eventpipeline.planning.clock import parse_iso
from eventpipeline.planning.credentials import next_due
from eventpipeline.planning.readiness import LISTENER_STALE_AFTER, listener_changed

Reason = Literal["drift", "hint", "retry"]


@dataclass(frozen=True)
class Handled:
    """What a reconciliation that ended without a transient failure ran on.

    `essence` is what a run reads from the object itself: its generation (the spec) and its
    rotation request; status, labels and kopf's own annotations decide nothing.
    """

    essence: tuple[int | None, str | None]


def repeats_last_run(last: Handled | None, essence: tuple[int | None, str | None]) -> bool:
    """Whether a change-handler run (kopf's create, update, resume) would only repeat the last run.

    kopf takes an event of its own earlier state for a change when its patch is not seen within
    its consistency timeout (a loaded API server or event loop): at 1,000 pipelines nearly every
    creation ran twice, minutes apart, reading every backend fresh. When the object holds what the
    last clean run reconciled, the scheduler's drift check (one period after that run) covers the
    rest; a new generation, a new rotation request, or a last run that failed always runs.
    """
    return last is not None and last.essence == essence


def transient_backoff(retry: int, cap: float = 60.0) -> float:
    """Delay before retry `retry + 1` of a run that failed on a transient error: 1 s doubling to `cap`."""
    return float(min(2 ** min(retry, 6), cap))


def due_hint(
    spec: EventPipelineSpec, status: EventPipelineStatus, rotate_request: str | None, now: datetime
) -> datetime | None:
    """When the object says its next run is due (`now` if already), from its report: a rotation or
    revocation time, a rotation requested by annotation, a listener report that changes (or, by
    going silent, will change) ListenerReady. Only a hint: each run decides from the claims, and
    the drift check runs regardless, so an edited status can at most delay a step until then.
    An object never reconciled yet (no observedGeneration) hints nothing: kopf's creation handler
    runs it, and a scheduled run at the same time would only repeat that run.
    """
    if status.observed_generation is None:
        return None
    if rotate_request is not None and rotate_request != status.rotate_request:
        return now
    if listener_changed(spec, status.listener, status.conditions, now):
        return now
    moments = [next_due(m for p in status.principals for m in (p.next_rotation_at, p.previous_revoke_at))]
    reported = status.listener
    if spec.airflow is not None and spec.airflow.trigger is not None and reported and reported.updated_at:
        moments.append(parse_iso(reported.updated_at) + LISTENER_STALE_AFTER)  # when it turns ListenerSilent
    return min((moment for moment in moments if moment is not None), default=None)


@dataclass
class _Due:
    drift: float | None = None
    hint: float | None = None
    retry: float | None = None
    failures: int = 0
    last_run: float | None = None
    running: bool = False

    def reasons(self, spacing: float) -> list[tuple[float, Reason]]:
        found: list[tuple[float, Reason]] = []
        if self.drift is not None:
            found.append((self.drift, "drift"))
        if self.hint is not None:
            floor = self.last_run + spacing if self.last_run is not None else self.hint
            found.append((max(self.hint, floor), "hint"))
        if self.retry is not None:
            found.append((self.retry, "retry"))
        return found

    def at(self, spacing: float) -> float | None:
        return min((moment for moment, _ in self.reasons(spacing)), default=None)


def drift_period(resync: float, pipelines: int, max_checks_per_second: float | None) -> float:
    """The time between two drift checks of a pipeline: the resync period, stretched where the
    pipelines would need more than `max_checks_per_second` checks (None: never stretched).

    Each check costs the controller a few milliseconds of CPU and the API server a read of each of
    the pipeline's Secrets; at 10,000 pipelines and 300 s that was 18.6 % of a core of the
    controller alone (bench/operator/RESULTS.md). Stretching bounds what an idle controller costs
    whatever the number of pipelines; only drift is found later: changes, rotations, revocations,
    listener reports and retries have their own due times."""
    if not max_checks_per_second:
        return resync
    return max(resync, pipelines / max_checks_per_second)


class DueSchedule:
    """A heap of due times over every known pipeline (by uid); stale heap entries are skipped."""

    def __init__(
        self,
        resync: float,
        hint_spacing: float,
        max_backoff: float = 60.0,
        max_drift_checks_per_second: float | None = None,
    ) -> None:
        self._resync = resync
        self._spacing = hint_spacing
        self._max_backoff = max_backoff
        self._max_rate = max_drift_checks_per_second
        self._entries: dict[str, _Due] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def drift_period(self) -> float:
        """Seconds from a pipeline's reconciliation to its next drift check, for as many as are known."""
        return drift_period(self._resync, len(self._entries), self._max_rate)

    def _push(self, uid: str) -> None:
        entry = self._entries[uid]
        moment = None if entry.running else entry.at(self._spacing)
        if moment is not None:
            heapq.heappush(self._heap, (moment, uid))
        if len(self._heap) > 4 * len(self._entries) + 64:
            self._compact()

    def _compact(self) -> None:
        live = ((entry.at(self._spacing), uid) for uid, entry in self._entries.items() if not entry.running)
        self._heap = [(moment, uid) for moment, uid in live if moment is not None]
        heapq.heapify(self._heap)

    def started(self, uid: str, now: float) -> None:
        """A reconciliation of `uid` began (any trigger): the next drift check is a period later."""
        entry = self._entries.setdefault(uid, _Due())
        entry.last_run = now
        entry.drift = now + self.drift_period()
        entry.retry = None
        self._push(uid)

    def finished(self, uid: str, now: float, *, transient_failure: bool) -> None:
        """A scheduled run ended; after a transient failure it is retried with backoff."""
        entry = self._entries.get(uid)
        if entry is None:
            return
        entry.running = False
        if transient_failure:
            entry.retry = now + transient_backoff(entry.failures, self._max_backoff)
            entry.failures += 1
        else:
            entry.failures = 0
        self._push(uid)

    def hinted(self, uid: str, at: float | None) -> None:
        """What the object says is next due (None: nothing); replaces the previous hint."""
        entry = self._entries.setdefault(uid, _Due())
        if entry.hint == at:
            return
        entry.hint = at
        self._push(uid)

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)

    def next_at(self) -> float | None:
        """The earliest due time on the heap (possibly of a stale entry: waking early is harmless)."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[tuple[str, Reason]]:
        """Every pipeline due at `now`, once each, with why; each is `running` until `finished`.

        The reason is `drift` only when nothing else is due: a rotation or a retry reads fresh.
        """
        due: list[tuple[str, Reason]] = []
        while self._heap and self._heap[0][0] <= now:
            moment, uid = heapq.heappop(self._heap)
            entry = self._entries.get(uid)
            if entry is None or entry.running or entry.at(self._spacing) != moment:
                continue  # forgotten, already taken, or superseded by a later push
            reasons = [reason for at, reason in entry.reasons(self._spacing) if at <= now]
            reason: Reason = "drift" if reasons == ["drift"] else next(r for r in reasons if r != "drift")
            entry.running = True
            # Cleared, so a run that ends early (the object gone or being deleted) is not due again
            # at once; the run's start sets the next drift check, its status report the next hint.
            entry.hint = entry.hint if reason != "hint" else None
            entry.retry = None
            entry.drift = now + self.drift_period() if entry.drift is not None and entry.drift <= now else entry.drift
            due.append((uid, reason))
        return due
