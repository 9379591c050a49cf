"""The trigger listener: the data plane that turns each message of a pipeline's topic into one DAG run.

`eventpipeline listen` runs `run()`; see `service` (which pipelines, which workers), `worker`
(one pipeline's consume → trigger → commit loop) and `planning` (the pure decisions).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from eventpipeline.listener.planning import Shard


def run(*, replicas: int, replica_index: int, dedicated: Iterable[str], metrics_port: int, status_interval: float,
        verbose: bool = False) -> None:  # fmt: skip
    """Serve this replica's share of the pipelines until SIGTERM."""
    from eventpipeline.listener import metrics, service  # noqa: PLC0415 - client libraries load here only

    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    shard = Shard(replicas=replicas, index=replica_index, dedicated=frozenset(dedicated))
    if metrics_port:
        metrics.serve(metrics_port)
    listener = service.ListenerService(shard, replica=service.replica_name(shard), status_interval=status_interval)
    listener.run()
