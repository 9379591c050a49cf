"""A worker's connection to its broker and Airflow: connect, reconnect when the listener Secret
changes (rotation, repair), and replay once per `replay-from` annotation value.

The session decides *when* a new consumer is needed and opens it; the worker loop only asks
`reconnect_wanted()` between steps and calls `open()` again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from eventpipeline.listener.decoding import Decoder, decoder_for
from eventpipeline.listener.source import Source, SourceError
from eventpipeline.listener.stats import ListenerStats
from eventpipeline.listener.trigger import Trigger
from eventpipeline.planning import delivery
from eventpipeline.planning.schema_versions import HandoffError
from eventpipeline.planning.serving import PipelineConfig

LOG = logging.getLogger("eventpipeline.listener")

# Opens a Source for a config and the Secret's data.
SourceFactory = Callable[[PipelineConfig, Mapping[str, str]], Source]
# Reads the listener Secret: (data, fingerprint), or None if missing.
SecretReader = Callable[[str, str], tuple[dict[str, str], str] | None]
# The trigger client of the Airflow instance handed over in the listener Secret's data (raises on failure).
TriggerResolver = Callable[[PipelineConfig, Mapping[str, str]], Trigger]
# Emits a Kubernetes Event on the pipeline: (type, reason, message).
EventSink = Callable[[PipelineConfig, str, str, str], None]


@dataclass(frozen=True)
class Connection:
    """An open consumer and the Airflow client its messages go to."""

    source: Source
    trigger: Trigger
    decoder: Decoder | None = None  # the pipeline's registered schemas; None: it has none


class Session:
    def __init__(
        self,
        config: PipelineConfig,
        stats: ListenerStats,
        *,
        source_factory: SourceFactory,
        read_secret: SecretReader,
        resolve_trigger: TriggerResolver,
        emit_event: EventSink,
        replay_annotation: str | None = None,
        replay_acted: str | None = None,
    ) -> None:
        self._config = config
        self._stats = stats
        self._source_factory = source_factory
        self._read_secret = read_secret
        self._resolve_trigger = resolve_trigger
        self._emit_event = emit_event
        self._lock = threading.Lock()
        self._reconnect = threading.Event()
        self._connected_fingerprint: str | None = None
        self._wanted_fingerprint: str | None = None
        self._replay_annotation = replay_annotation
        self._replay_acted = replay_acted

    # -- from the service's threads ------------------------------------------------------------

    def secret_changed(self, fingerprint: str) -> None:
        """The listener Secret has new data (rotation, repair): reconnect with it."""
        with self._lock:
            self._wanted_fingerprint = fingerprint
            if self._connected_fingerprint is not None and fingerprint != self._connected_fingerprint:
                LOG.info("%s: listener Secret changed; reconnecting with the new credential", self._config.key)
                self._reconnect.set()

    def annotation_changed(self, replay_annotation: str | None) -> None:
        with self._lock:
            self._replay_annotation = replay_annotation
            if delivery.replay_wanted(replay_annotation, self._replay_acted):
                self._reconnect.set()

    def reconnect_wanted(self) -> bool:
        return self._reconnect.is_set()

    # -- from the worker loop ------------------------------------------------------------------

    def open(self) -> Connection | None:
        """A new connection, or None (the reason is in the stats' error) to try again later."""
        config = self._config
        self._reconnect.clear()
        try:
            found = self._read_secret(config.secret_namespace, config.secret_name)
        except Exception as error:
            self._source_error(f"cannot read Secret {config.secret_name}: {type(error).__name__}: {error}")
            return None
        if found is None:
            self._source_error(f"Secret {config.secret_name} with the listener's credential does not exist yet")
            return None
        data, fingerprint = found
        try:
            decoder = decoder_for(data, config.broker_type)
        except HandoffError as error:
            self._source_error(f"Secret {config.secret_name}: {error}; the operator writes it again")
            return None
        if decoder is None and config.schema_expected:
            # Never hand a DAG undecoded bytes of a pipeline that has a schema: wait for the versions.
            self._source_error(
                f"waiting for the operator to hand over the pipeline's registered schema versions "
                f"(Secret {config.secret_name}, key schemas.json; see the SchemaReady condition)"
            )
            return None
        try:
            trigger = self._resolve_trigger(config, data)
        except Exception as error:
            self._stats.airflow_error(f"Airflow instance unusable: {error}")
            return None
        replay_from = self._take_replay_request()
        try:
            source = self._source_factory(config, data)
            source.open(replay_from)
        except SourceError as error:
            self._source_error(str(error))
            return None
        except Exception as error:
            self._source_error(f"cannot consume {config.topic}: {type(error).__name__}: {error}")
            return None
        with self._lock:
            self._connected_fingerprint = fingerprint
            if self._wanted_fingerprint is not None and self._wanted_fingerprint != fingerprint:
                self._reconnect.set()  # rotated again while connecting
        return Connection(source, trigger, decoder)

    def report(self, source: Source) -> None:
        """Pass on what the consumer says: its error (or that it works), a finished replay."""
        self._source_error(source.error())
        outcome = source.replay_outcome()
        if outcome is not None:
            self._stats.replay(outcome=outcome)
            LOG.info("%s: replay: %s", self._config.key, outcome)
            self._emit_event(self._config, "Normal", "Replayed", outcome)

    def _source_error(self, error: str | None) -> None:
        if self._stats.source_error(error) and error:
            LOG.warning("%s: %s", self._config.key, error)

    def _take_replay_request(self) -> datetime | None:
        with self._lock:
            annotation = self._replay_annotation
            if annotation is None or not delivery.replay_wanted(annotation, self._replay_acted):
                return None
            self._replay_acted = annotation
        self._stats.replay(request=annotation)
        try:
            return delivery.parse_replay_from(annotation)
        except delivery.ReplayRequestError as error:
            self._stats.replay(outcome=f"refused: {error}")
            self._emit_event(self._config, "Warning", "ReplayRefused", str(error))
            return None
