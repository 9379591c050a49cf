"""What a dead-lettered message carries besides its own key, value and headers: why, and from where;
and the write itself, which never raises.

The original key, value and headers are kept as they were, so a fixed DAG (or a replay tool)
can re-publish the message unchanged; these headers say what Airflow answered. A message the
dead-letter topic will not take as it is (too large for the producer or the topic) is written
once more without its value after `retry.limit` failed writes, with
`eventpipeline.value-omitted` saying why: the dead-letter topic still tells which message
(topic, partition, position) had no run, and the partition moves on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from eventpipeline.listener.source import Source, SourceError
from eventpipeline.planning.delivery import Message

HEADER_PREFIX = "eventpipeline."
VALUE_OMITTED_HEADER = f"{HEADER_PREFIX}value-omitted"
LOG = logging.getLogger("eventpipeline.listener")


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


def write_dead_letter(
    source: Source, message: Message, headers: Mapping[str, str], *, omit_value: str | None = None
) -> str | None:
    """Write the message to the dead-letter topic; None when the broker acknowledged it, else why not.

    With `omit_value` (why the full message could not be written) the value is left out and the
    reason travels in `eventpipeline.value-omitted`. Any error — the client's own, a message too
    large, a broker refusal — comes back as text, so a failing write is retried or reported by
    the caller, never lost on a pool thread.
    """
    all_headers = dict(headers)
    if omit_value is not None:
        message = dataclasses.replace(message, value=None)
        all_headers[VALUE_OMITTED_HEADER] = omit_value[:1000]
    try:
        source.dead_letter(message, all_headers)
    except SourceError as error:
        failure = str(error)
    except Exception as error:
        failure = f"writing to the dead-letter topic failed: {type(error).__name__}: {error}"
    else:
        return None
    LOG.warning("dead-lettering %s failed: %s", message.run_id, failure)
    return failure
