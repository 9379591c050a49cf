"""The trigger listener: the data plane that turns each message of a pipeline's topic into one DAG run.

`eventpipeline listen` runs `run()`; see `service` (which pipelines, which workers), `worker`
(one pipeline's consume → trigger → commit loop, built from `session`, `dispatch`, `retries`,
`commits` and `stats`), and `planning.serving` / `planning.delivery` (the pure decisions).

Guarantees, mode DagRun: the run id is derived from the message's position
(`naming.kafka_run_id` / `naming.pulsar_run_id`), and the Kafka offset is committed / the Pulsar
message acknowledged only after Airflow answered 200 (created) or 409 (exists). A crash at any
point re-delivers only messages whose run may not exist yet, and Airflow answers those with 409:
exactly one run per message.

Mode AssetEvent differs: Airflow has no idempotency key for asset events, so a message
re-delivered after a crash between Airflow's answer and the commit gives a second event
(at-least-once; the run id travels in the event's `extra.eventId` for de-duplication in the DAG),
and the scheduler may merge several queued events into one DAG run.

Sharing out: each replica serves the pipelines that rendezvous hashing of `namespace/name` over
`--replicas` gives its `--replica-index`; pipelines with `spec.listener.dedicated` are served
only by a listener started with `--dedicated namespace/name`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from eventpipeline.planning.serving import Shard


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
