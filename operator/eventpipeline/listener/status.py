"""Writes `status.listener` of the pipelines this listener serves — that key only, at a bounded rate.

The controller owns every other status key (conditions included) and never writes this one, so
a JSON merge patch of `{"status": {"listener": …}}` through the status subresource cannot
clobber anything of the controller's. A pipeline's status is written when it changed and at
least `interval` seconds passed, within a second when something a user waits for changed (an
error appeared or cleared, a replay finished), and every `heartbeat` seconds regardless, so
`updatedAt` shows the listener is alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from eventpipeline.api.common import GROUP, VERSION, wire
from eventpipeline.api.pipeline import ListenerStatus
from eventpipeline.api.resources import EVENT_PIPELINE
from eventpipeline.planning.clock import iso

LOG = logging.getLogger("eventpipeline.listener.status")


class StatusSource(Protocol):
    """What the writer needs from a worker."""

    def status(self) -> ListenerStatus: ...

    def take_urgent(self) -> bool: ...


class StatusWriter:
    def __init__(
        self,
        api_client: client.ApiClient,
        workers: Callable[[], dict[str, StatusSource]],
        *,
        interval: float = 5.0,
        heartbeat: float = 60.0,
        urgent_interval: float = 1.0,
    ) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._workers = workers
        self._interval = interval
        self._heartbeat = heartbeat
        self._urgent_interval = urgent_interval
        self._written: dict[str, tuple[dict[str, object], float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.write_all(force=True)

    def _run(self) -> None:
        while not self._stop.wait(self._urgent_interval):
            try:
                self.write_all()
            except Exception:
                LOG.exception("writing listener status failed")

    def write_all(self, *, force: bool = False) -> None:
        workers = self._workers()
        for key in list(self._written):
            if key not in workers:
                del self._written[key]
        now = time.monotonic()
        for key, worker in workers.items():
            current = wire(worker.status())
            previous = self._written.get(key)
            if previous is not None and not force:
                last, written_at = previous
                age = now - written_at
                changed = current != last
                # At most one write per tick: urgent changes go out at the next tick.
                urgent = changed and worker.take_urgent()
                if not (urgent or (changed and age >= self._interval) or age >= self._heartbeat):
                    continue
            worker.take_urgent()
            if self._patch(key, current):
                self._written[key] = (current, now)

    def _patch(self, key: str, listener: dict[str, object]) -> bool:
        namespace, name = key.split("/", 1)
        body = {**listener, "updatedAt": iso(datetime.now(UTC))}
        # Keys that are gone (an error that cleared) must be nulled out in a merge patch.
        for field in ("error", "lag", "replay", "replayRequest", "lastRunId", "stalledPartitions", "throttled"):
            body.setdefault(field, None)
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                EVENT_PIPELINE.plural,
                name,
                {"status": {"listener": body}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status != 404:
                LOG.warning("writing status.listener of %s failed (%s)", key, error.status)
            return False
        return True
