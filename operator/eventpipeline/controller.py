"""`eventpipeline run`: the controller process (kopf), in a cluster or locally with a kubeconfig."""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf
import prometheus_client

from eventpipeline import (
    allocator,
    handlers,  # noqa: F401  (registers the handlers)
)

WATCH_HANDLER_SUCCESS = "Handler 'watch_pipelines' succeeded."


class QuietWatchHandler(logging.Filter):
    """Drops kopf's line for each success of the watch-event handler: it runs on every watch event
    of every pipeline (10,000 pipelines: tens of thousands of lines per wave, all saying nothing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != WATCH_HANDLER_SUCCESS


def run(*, peering: str | None, liveness: str | None, metrics_port: int | None, verbose: bool) -> None:
    """Run until interrupted. Without `peering`, the operator runs standalone (one replica)."""
    # Before any thread starts: most of the controller's resident memory was free space in the
    # malloc arenas of its ~30 threads (bench/operator/RESULTS.md, 2026-12-01).
    allocator.configure_from_environment(threading.Event())
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON, log_prefix=False)
    if metrics_port:
        prometheus_client.start_http_server(metrics_port)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(QuietWatchHandler())
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=peering is None,
            peering_name=peering,
            liveness_endpoint=liveness,
        )
    )
