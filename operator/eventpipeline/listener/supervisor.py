"""Background work that never stops for good: a loop that raises is logged and started again,
with backoff, until the listener stops.

Every long-running thread of the listener (the pipeline and Secret watches, each pipeline's
worker loop) runs under `supervise`, so one odd object or one bug in one pipeline's data costs a
restart of that one loop, never the work for the other pipelines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from eventpipeline.listener.retries import Clock
from eventpipeline.planning.delivery import backoff_delay

LOG = logging.getLogger("eventpipeline.listener")
RESTART_BACKOFF = (timedelta(seconds=1), timedelta(seconds=60))
# A loop that ran this long before failing is healthy again: its next failure waits 1 s again.
HEALTHY_AFTER_SECONDS = 300.0


def supervise(
    name: str,
    loop: Callable[[], None],
    stop: threading.Event,
    *,
    clock: Clock = time.monotonic,
    on_failure: Callable[[Exception], None] | None = None,
) -> None:
    """Run `loop` until `stop` is set; when it raises (or returns early), log it and run it again
    after a backoff of 1 s doubling up to 60 s."""
    failures = 0
    while not stop.is_set():
        started = clock()
        try:
            loop()
        except Exception as error:
            LOG.exception("%s failed; restarting it", name)
            if on_failure is not None:
                on_failure(error)
        else:
            if stop.is_set():
                return
            LOG.warning("%s ended unexpectedly; restarting it", name)
        failures = 1 if clock() - started > HEALTHY_AFTER_SECONDS else failures + 1
        stop.wait(backoff_delay(failures, *RESTART_BACKOFF))
