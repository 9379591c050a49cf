"""The listener process: watches EventPipelines and listener Secrets, runs one worker per served pipeline.

Which pipelines a process serves is decided by `planning.Shard` (rendezvous hashing over the
replicas, or an explicit list for a dedicated listener). The operator creates nothing per
pipeline for the listener beyond the listener principal it creates anyway, so any replica can
serve any pipeline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from eventpipeline.adapters.kube import PRINCIPAL_LABEL, Kube
from eventpipeline.api.common import API_VERSION, GROUP, VERSION, AirflowInstanceRef
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL
from eventpipeline.listener import metrics, planning
from eventpipeline.listener.kafka_source import KafkaSource
from eventpipeline.listener.planning import PipelineConfig, Shard, Wanted
from eventpipeline.listener.pulsar_source import PulsarSource
from eventpipeline.listener.source import Source
from eventpipeline.listener.status import StatusWriter
from eventpipeline.listener.trigger import AirflowTrigger
from eventpipeline.listener.worker import Worker
from eventpipeline.reconciler.references import References

LOG = logging.getLogger("eventpipeline.listener")
WATCH_TIMEOUT_SECONDS = 60
RETRY_SECONDS = 5.0


def fingerprint(data: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()[:32]


def make_source(config: PipelineConfig, secret: Mapping[str, str]) -> Source:
    if config.broker_type == "Kafka":
        return KafkaSource(config.topic, config.group, secret, config.dead_letter_topic)
    queue = max(2 * config.trigger.max_in_flight, 100)
    return PulsarSource(config.topic, config.group, secret, config.dead_letter_topic, queue)


def load_api_client() -> client.ApiClient:
    """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()  # type: ignore[no-untyped-call,no-any-return]


class ListenerService:
    def __init__(
        self,
        shard: Shard,
        *,
        replica: str,
        api_client_factory: Callable[[], client.ApiClient] = load_api_client,
        status_interval: float = 5.0,
        source_factory: Callable[[PipelineConfig, Mapping[str, str]], Source] = make_source,
    ) -> None:
        self._shard = shard
        self._replica = replica
        self._api_client_factory = api_client_factory
        api_client = api_client_factory()
        self._core = client.CoreV1Api(api_client)
        self._references = References(Kube(api_client))
        self._source_factory = source_factory
        self._lock = threading.RLock()
        self._workers: dict[str, Worker] = {}
        self._secret_owner: dict[str, str] = {}  # namespace/secret → pipeline key
        self._triggers: dict[str, tuple[object, AirflowTrigger]] = {}
        self._stop = threading.Event()
        self._status = StatusWriter(api_client_factory(), self.workers, interval=status_interval)

    # -- lifecycle ------------------------------------------------------------------------------

    def workers(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._workers)

    def run(self) -> None:
        """Serve until SIGTERM / SIGINT, then stop every worker (committing what is done)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stop.set())
        LOG.info("listener %s serving shard %s", self._replica, self._shard.name)
        threads = [
            threading.Thread(target=self._watch_pipelines, name="watch-pipelines", daemon=True),
            threading.Thread(target=self._watch_secrets, name="watch-secrets", daemon=True),
        ]
        for thread in threads:
            thread.start()
        self._status.start()
        self._stop.wait()
        self.shutdown()

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            workers = list(self._workers.values())
        stoppers = [threading.Thread(target=worker.stop) for worker in workers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        self._status.stop()

    # -- pipelines ------------------------------------------------------------------------------

    def _watch_pipelines(self) -> None:
        custom = client.CustomObjectsApi(self._api_client_factory())

        def list_all(**kwargs: Any) -> Any:
            return custom.list_cluster_custom_object(GROUP, VERSION, "eventpipelines", **kwargs)

        for kind, body in _informer(list_all, self._stop, lambda item: item):
            if kind == "RELIST":
                self._relist({_key(item): item for item in body})
            elif kind == "DELETED":
                self._apply(_key(body), None)
            else:
                self._apply(_key(body), body)

    def _relist(self, bodies: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            known = set(self._workers)
        for key in known - set(bodies):
            self._apply(key, None)
        for key, body in bodies.items():
            self._apply(key, body)
        metrics.PIPELINES.set(len(self._workers))

    def _apply(self, key: str, body: dict[str, Any] | None) -> None:
        wanted: Wanted | str = "deleted" if body is None else planning.wanted_pipeline(body)
        if isinstance(wanted, Wanted) and not self._shard.serves(key, wanted.dedicated):
            wanted = "served by another listener replica"
        with self._lock:
            worker = self._workers.get(key)
            if isinstance(wanted, str):
                if worker is not None:
                    LOG.info("%s: stopping its worker (%s)", key, wanted)
                    self._drop(key)
                return
            if worker is not None and worker.config == wanted.config:
                worker.annotation_changed(wanted.replay_annotation)
                return
            if worker is not None:
                LOG.info("%s: the pipeline changed; restarting its worker", key)
                self._drop(key)
            LOG.info("%s: starting a worker for %s (%s)", key, wanted.config.topic, wanted.config.broker_type)
            previous = wanted.previous
            worker = Worker(
                wanted.config,
                replica=self._replica,
                source_factory=self._source_factory,
                read_secret=self._read_secret,
                resolve_trigger=self._resolve_trigger,
                emit_event=self._emit_event,
                previous=previous,
                replay_annotation=wanted.replay_annotation,
            )
            self._workers[key] = worker
            self._secret_owner[f"{wanted.config.namespace}/{wanted.config.secret_name}"] = key
            metrics.PIPELINES.set(len(self._workers))
        worker.start()

    def _drop(self, key: str) -> None:
        worker = self._workers.pop(key)
        self._secret_owner = {secret: owner for secret, owner in self._secret_owner.items() if owner != key}
        # Stopping waits for the worker's final commit; do it off the watch thread.
        threading.Thread(target=worker.stop, name=f"stop-{key}", daemon=True).start()
        metrics.PIPELINES.set(len(self._workers))

    # -- secrets --------------------------------------------------------------------------------

    def _watch_secrets(self) -> None:
        core = client.CoreV1Api(self._api_client_factory())
        selector = f"{PRINCIPAL_LABEL}={LISTENER_PRINCIPAL}"

        def list_all(**kwargs: Any) -> Any:
            return core.list_secret_for_all_namespaces(label_selector=selector, **kwargs)

        for kind, secret in _informer(list_all, self._stop, _secret_dict):
            items = secret if kind == "RELIST" else [secret]
            if kind == "DELETED":
                continue
            for item in items:
                key = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
                with self._lock:
                    owner = self._secret_owner.get(key)
                    worker = self._workers.get(owner) if owner else None
                if worker is not None:
                    worker.secret_changed(fingerprint(_decode(item.get("data") or {})))

    def _read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = _decode(secret.data or {})
        return data, fingerprint(data)

    # -- Airflow, events ------------------------------------------------------------------------

    def _resolve_trigger(self, ref: AirflowInstanceRef, namespace: str) -> AirflowTrigger:
        resolved = self._references.airflow(ref, namespace)
        with self._lock:
            cached = self._triggers.get(resolved.key)
            if cached is not None and cached[0] is resolved.settings:
                return cached[1]
            trigger = AirflowTrigger(resolved.settings, resolved.tokens)
            self._triggers[resolved.key] = (resolved.settings, trigger)
            return trigger

    def _emit_event(self, pipeline: PipelineConfig, type_: str, reason: str, message: str) -> None:
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{pipeline.name}."),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind="EventPipeline",
                name=pipeline.name,
                namespace=pipeline.namespace,
                uid=pipeline.uid,
            ),
            reason=reason,
            message=message[:1000],
            type=type_,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="eventpipeline-listener", host=self._replica),
            reporting_component="eventpipeline-listener",
            reporting_instance=self._replica[:128],
        )
        try:
            self._core.create_namespaced_event(pipeline.namespace, event)
        except ApiException as error:
            LOG.warning("%s: emitting event %s failed (%s)", pipeline.key, reason, error.status)


def _key(body: Mapping[str, Any]) -> str:
    metadata = body["metadata"]
    return f"{metadata['namespace']}/{metadata['name']}"


def _decode(data: Mapping[str, str | bytes]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _secret_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    return {
        "metadata": {"namespace": item.metadata.namespace, "name": item.metadata.name},
        "data": item.data or {},
    }


def _informer(
    list_all: Callable[..., Any], stop: threading.Event, convert: Callable[[Any], dict[str, Any]]
) -> Iterator[tuple[str, Any]]:
    """List, then watch from the list's resourceVersion; relist when the watch ends or fails.

    Yields ("RELIST", [objects]) after each list and (event type, object) for each change.
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
                    break  # 410 Gone and friends: relist
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    obj = event["object"]
                    yield kind, convert(obj)
        except Exception as error:
            LOG.warning("watching failed (%s); listing again in %.0fs", error, RETRY_SECONDS)
            stop.wait(RETRY_SECONDS)


def replica_name(shard: Shard) -> str:
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return host if shard.dedicated or shard.replicas == 1 else f"{host} [{shard.name}]"
