"""The listener process: watches EventPipelines and listener Secrets, runs one worker per served pipeline.

Which pipelines a process serves is decided by `planning.serving.Shard` (rendezvous hashing over the
replicas, or an explicit list for a dedicated listener). The operator creates nothing per
pipeline for the listener beyond the listener principal it creates anyway, so any replica can
serve any pipeline.

What a worker consumes and where it triggers (topic, broker type, credential, Airflow API and
credential) comes from the pipeline's hand-off Secret in the listener's own namespace
(`planning.handoff`), which only the controller writes: the listener reads no Secret, and no
referenced resource, anywhere else.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from eventpipeline.adapters.airflow import AirflowSettings, AirflowTokens
from eventpipeline.adapters.events import EventRecorder, InvolvedObject
from eventpipeline.adapters.informer import informer
from eventpipeline.adapters.kube import PRINCIPAL_LABEL, Kube, decode_secret_data, fingerprint, load_api_client
from eventpipeline.api.common import API_VERSION, GROUP, VERSION
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL
from eventpipeline.api.resources import EVENT_PIPELINE
from eventpipeline.listener import metrics
from eventpipeline.listener.kafka_source import KafkaSource
from eventpipeline.listener.pulsar_source import PulsarSource
from eventpipeline.listener.source import Source
from eventpipeline.listener.status import StatusWriter
from eventpipeline.listener.supervisor import supervise
from eventpipeline.listener.trigger import AirflowTrigger, Trigger
from eventpipeline.listener.worker import Worker
from eventpipeline.planning import handoff, naming, serving
from eventpipeline.planning.reference_policy import allow_namespaced_references, namespaced_reference_refusal
from eventpipeline.planning.serving import PipelineConfig, Shard, Wanted

LOG = logging.getLogger("eventpipeline.listener")


def make_source(config: PipelineConfig, secret: Mapping[str, str]) -> Source:
    if config.broker_type == "Kafka":
        return KafkaSource(config.topic, config.group, secret, config.dead_letter_topic, broker_key=config.broker_key)
    queue = max(2 * config.trigger.max_in_flight, 100)
    return PulsarSource(
        config.topic, config.group, secret, config.dead_letter_topic, queue, broker_key=config.broker_key
    )


class ListenerService:
    def __init__(
        self,
        shard: Shard,
        *,
        replica: str,
        api_client_factory: Callable[[], client.ApiClient] = load_api_client,
        status_interval: float = 5.0,
        source_factory: Callable[[PipelineConfig, Mapping[str, str]], Source] = make_source,
        secret_namespace: str | None = None,
    ) -> None:
        # The only namespace whose Secrets the listener reads and watches: the controller hands
        # each pipeline's listener credential over there.
        self._secret_namespace = secret_namespace or os.environ.get(
            naming.LISTENER_NAMESPACE_ENV, naming.DEFAULT_LISTENER_NAMESPACE
        )
        self._shard = shard
        self._replica = replica
        self._api_client_factory = api_client_factory
        api_client = api_client_factory()
        self._kube = Kube(api_client)
        self._events = EventRecorder(api_client, "eventpipeline-listener", replica)
        self._source_factory = source_factory
        self._lock = threading.RLock()
        self._workers: dict[str, Worker] = {}
        self._bodies: dict[str, dict[str, Any]] = {}  # pipeline key → its object, as last seen
        self._secret_owner: dict[str, str] = {}  # namespace/secret → pipeline key
        self._handed_over: dict[str, dict[str, str]] = {}  # namespace/secret → its data, from the watch
        self._triggers: dict[str, AirflowTrigger] = {}  # fingerprint of the Airflow access → client
        # The cluster admin's switch, as the controller reads it: a namespaced AirflowInstance's
        # URL is a tenant's choice, and the listener calls it only when namespaced ones are allowed.
        self._allow_namespaced = allow_namespaced_references(os.environ)
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
        # Supervised: a watch that raises (an odd object, a bug) is logged and started again.
        watches = (("the pipeline watch", self._watch_pipelines), ("the Secret watch", self._watch_secrets))
        threads = [
            threading.Thread(target=supervise, args=(name, watch, self._stop), name=name, daemon=True)
            for name, watch in watches
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
            return custom.list_cluster_custom_object(GROUP, VERSION, EVENT_PIPELINE.plural, **kwargs)

        for kind, body in informer(list_all, self._stop):
            if kind == "RELIST":
                self._relist({_key(item): item for item in body})
            elif kind == "DELETED":
                self._apply_one(_key(body), None)
            else:
                self._apply_one(_key(body), body)

    def _apply_one(self, key: str, body: dict[str, Any] | None) -> None:
        """`_apply`, where one pipeline's failure is logged and never keeps the others from being served."""
        try:
            self._apply(key, body)
        except Exception:
            LOG.exception("%s: could not apply the pipeline's change; the watch goes on", key)

    def _relist(self, bodies: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            known = set(self._workers) | set(self._bodies)
        for key in known - set(bodies):
            self._apply_one(key, None)
        for key, body in bodies.items():
            self._apply_one(key, body)
        metrics.PIPELINES.set(len(self._workers))

    def _apply(self, key: str, body: dict[str, Any] | None) -> None:
        with self._lock:
            secret = self._remember(key, body)
            handed_over = self._handed_over.get(secret)
        wanted: Wanted | str = (
            "deleted" if body is None else serving.wanted_pipeline(body, handed_over, self._secret_namespace)
        )
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
            metrics.PIPELINES.set(len(self._workers))
        worker.start()

    def _remember(self, key: str, body: dict[str, Any] | None) -> str:
        """Keep the pipeline's object for when its hand-off Secret changes; returns that Secret's key."""
        namespace, name = key.split("/", 1)
        secret = f"{self._secret_namespace}/{naming.listener_secret_name(namespace, name)}"
        if body is None:
            self._bodies.pop(key, None)
            self._secret_owner.pop(secret, None)
        else:
            self._bodies[key] = body
            self._secret_owner[secret] = key
        return secret

    def _drop(self, key: str) -> None:
        worker = self._workers.pop(key)
        # Stopping waits for the worker's final commit; do it off the watch thread.
        threading.Thread(target=worker.stop, name=f"stop-{key}", daemon=True).start()
        metrics.PIPELINES.set(len(self._workers))

    # -- secrets --------------------------------------------------------------------------------

    def _watch_secrets(self) -> None:
        core = client.CoreV1Api(self._api_client_factory())
        selector = f"{PRINCIPAL_LABEL}={LISTENER_PRINCIPAL}"

        def list_all(**kwargs: Any) -> Any:
            return core.list_namespaced_secret(self._secret_namespace, label_selector=selector, **kwargs)

        for kind, secret in informer(list_all, self._stop, _secret_dict):
            if kind == "RELIST":
                present = {_key(item) for item in secret}
                with self._lock:
                    gone = set(self._handed_over) - present
                for key in gone:
                    self._secret_seen(key, None)
                for item in secret:
                    self._secret_seen(_key(item), item)
            else:
                self._secret_seen(_key(secret), None if kind == "DELETED" else secret)

    def _secret_seen(self, key: str, item: dict[str, Any] | None) -> None:
        """A hand-off Secret changed (or went): its pipeline's worker is started, restarted, told
        to reconnect or stopped. One odd Secret is logged, never fatal to the watch."""
        try:
            data = None if item is None else decode_secret_data(item.get("data"))
            with self._lock:
                before = self._handed_over.get(key)
                if data is None:
                    self._handed_over.pop(key, None)
                else:
                    self._handed_over[key] = data
                owner = self._secret_owner.get(key)
                body = self._bodies.get(owner) if owner else None
            if data == before or owner is None or body is None:
                return
            self._apply_one(owner, body)  # a new topic or a hand-off that came or went
            with self._lock:
                worker = self._workers.get(owner)
            if worker is not None and data is not None:
                worker.secret_changed(fingerprint(data))
        except Exception:
            LOG.exception("Secret %s: could not pass on its data; the watch goes on", key)

    def _read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        found = self._kube.read_secret(namespace, name)
        if found is None:
            return None
        data = found.data
        return data, fingerprint(data)

    # -- Airflow, events ------------------------------------------------------------------------

    def _resolve_trigger(self, config: PipelineConfig, handed_over: Mapping[str, str]) -> Trigger:
        """The Airflow client of the instance the controller handed over for this pipeline."""
        ref = config.airflow_ref
        refusal = namespaced_reference_refusal(ref.kind, ref.name, self._allow_namespaced)
        if refusal is not None:
            raise ValueError(refusal)  # shown in status.listener; nothing is called
        access = handoff.airflow_access(handed_over)
        if access is None:
            raise ValueError(
                f"the operator has not handed over {ref.kind} {ref.name} (see the pipeline's "
                "AirflowConnectionReady condition)"
            )
        version = fingerprint(
            {"url": access.api_url, "username": access.username, "password": access.password.get_secret_value()}
        )
        with self._lock:
            trigger = self._triggers.get(version)
            if trigger is None:
                settings = AirflowSettings(access.api_url, access.username, access.password)
                trigger = AirflowTrigger(settings, AirflowTokens(settings))
                self._triggers[version] = trigger
            # Shared by every namespace using this Airflow; each sees only DAGs that accept it.
            return trigger.for_namespace(config.namespace)

    def _emit_event(self, pipeline: PipelineConfig, type_: str, reason: str, message: str) -> None:
        about = InvolvedObject(API_VERSION, "EventPipeline", pipeline.namespace, pipeline.name, pipeline.uid)
        self._events.emit(about, type_, reason, message)


def _key(body: Mapping[str, Any]) -> str:
    metadata = body["metadata"]
    return f"{metadata['namespace']}/{metadata['name']}"


def _secret_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    return {
        "metadata": {"namespace": item.metadata.namespace, "name": item.metadata.name},
        "data": item.data or {},
    }


def replica_name(shard: Shard) -> str:
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return host if shard.dedicated or shard.replicas == 1 else f"{host} [{shard.name}]"
