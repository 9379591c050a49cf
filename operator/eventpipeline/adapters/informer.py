"""List, then watch: a minimal informer for processes that run without kopf (the listener)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal

from kubernetes import watch

LOG = logging.getLogger("eventpipeline.adapters.informer")
WATCH_TIMEOUT_SECONDS = 60
RETRY_SECONDS = 5.0

Change = Literal["RELIST", "ADDED", "MODIFIED", "DELETED"]


def informer(
    list_all: Callable[..., Any],
    stop: threading.Event,
    convert: Callable[[Any], dict[str, Any]] = dict,
) -> Iterator[tuple[Change, Any]]:
    """List, then watch from the list's resourceVersion; list again when the watch ends or fails.

    Yields ("RELIST", [objects]) after each list and (event type, object) for each change, each
    object passed through `convert`. `list_all` is a list call of the kubernetes client (typed
    models or, for custom objects, dicts), so the same call serves the list and the watch.
    """
    while not stop.is_set():
        try:
            listing = list_all()
            if isinstance(listing, dict):
                items = [convert(item) for item in listing.get("items", [])]
                version = listing["metadata"]["resourceVersion"]
            else:
                items = [convert(item) for item in listing.items]
                version = listing.metadata.resource_version
            yield "RELIST", items
            watcher = watch.Watch()  # type: ignore[no-untyped-call]
            stream = watcher.stream(list_all, resource_version=version, timeout_seconds=WATCH_TIMEOUT_SECONDS)  # type: ignore[no-untyped-call]
            for event in stream:
                if stop.is_set():
                    return
                kind = event["type"]
                if kind == "ERROR":
                    break  # 410 Gone and friends: list again
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    yield kind, convert(event["object"])
        except Exception as error:
            LOG.warning("watching failed (%s); listing again in %.0fs", error, RETRY_SECONDS)
            stop.wait(RETRY_SECONDS)
