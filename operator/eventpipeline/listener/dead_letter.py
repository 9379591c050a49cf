"""What a dead-lettered message carries besides its own key, value and headers: why, and from where.

The original key, value and headers are kept as they were, so a fixed DAG (or a replay tool)
can re-publish the message unchanged; these headers say what Airflow answered.
"""

from __future__ import annotations

from eventpipeline.planning.delivery import Message

HEADER_PREFIX = "eventpipeline."


def dead_letter_headers(
    message: Message, *, pipeline: str, dag_id: str, status_code: int | None, detail: str, attempts: int
) -> dict[str, str]:
    """Headers (Kafka) / properties (Pulsar) added to a dead-lettered message."""
    return {
        f"{HEADER_PREFIX}pipeline": pipeline,
        f"{HEADER_PREFIX}dag-id": dag_id,
        f"{HEADER_PREFIX}run-id": message.run_id,
        f"{HEADER_PREFIX}source-topic": message.topic,
        f"{HEADER_PREFIX}source-partition": str(message.partition),
        f"{HEADER_PREFIX}source-position": message.position,
        f"{HEADER_PREFIX}error-status": "" if status_code is None else str(status_code),
        f"{HEADER_PREFIX}error": detail[:1000],
        f"{HEADER_PREFIX}attempts": str(attempts),
    }
