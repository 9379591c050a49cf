"""Helpers the integration tests share: Kubernetes objects, waits, broker clients."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
import pulsar
from confluent_kafka import KafkaError, Producer
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from eventpipeline.adapters.kube import decode_secret_data
from eventpipeline.adapters.tls import pulsar_tls_options
from eventpipeline.planning import naming
from eventpipeline.planning.schema_versions import SCHEMAS_KEY
from eventpipeline.planning.secrets import CA_KEY
from eventpipeline_devenv.clients import kafka_settings

GROUP, VERSION = "eventpipeline.dev", "v1alpha1"
T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def operator_calls(metrics_port: int) -> dict[str, float]:
    """The controller's backend calls by `system.operation`, whatever their outcome, from its metrics."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=15).text
    found: dict[str, float] = {}
    pattern = r'eventpipeline_backend_calls_total\{operation="(\w+)",outcome="\w+",system="(\w+)"\} (\S+)'
    for operation, system, value in re.findall(pattern, text):
        found[f"{system}.{operation}"] = found.get(f"{system}.{operation}", 0.0) + float(value)
    return found


def operator_runs(metrics_port: int, counter: str, reason: str) -> float:
    """A counter of the controller's runs by reason so far (`eventpipeline_scheduled_runs_total`,
    `eventpipeline_change_runs_total`); 0 before the first."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=15).text
    match = re.search(rf'^{counter}\{{reason="{reason}"\}} (\S+)', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def eventually(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll until `check` returns a truthy value (returned) or raise with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


@contextlib.contextmanager
def fresh_namespace(kube: Kube, prefix: str = "t") -> Iterator[str]:
    """A new namespace, deleted afterwards without waiting (the controller-manager finishes it)."""
    name = unique(prefix)
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            kube.core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


class Kube:
    """The test's view of the API server."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def create_pipeline(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EventPipeline", "metadata": {"name": name}, "spec": spec}
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", body))

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch_pipeline(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", name, patch)
        )

    def delete_pipeline(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", name)

    def condition(self, namespace: str, name: str, condition_type: str) -> dict[str, Any] | None:
        body = self.get_pipeline(namespace, name) or {}
        for condition in body.get("status", {}).get("conditions", []):
            if condition["type"] == condition_type:
                return dict(condition)
        return None

    def wait_condition(
        self,
        namespace: str,
        name: str,
        condition_type: str,
        status: str,
        *,
        timeout: float = 120,
        reason: str | None = None,
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            condition = self.condition(namespace, name, condition_type)
            assert condition is not None, f"no {condition_type} condition yet"
            matches = condition["status"] == status and (reason is None or condition["reason"] == reason)
            assert matches, condition
            return condition

        return eventually(check, timeout=timeout, what=f"{condition_type}={status} on {namespace}/{name}")

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return decode_secret_data(secret.data)

    def username(self, namespace: str, pipeline: str, principal: str, generation: int = 1) -> str:
        """The broker user / Pulsar role of one credential generation of a pipeline's principal."""
        body = self.get_pipeline(namespace, pipeline)
        assert body is not None, f"pipeline {namespace}/{pipeline} does not exist"
        base = naming.username_base(namespace, pipeline, body["metadata"]["uid"], principal)
        return naming.generation_username(base, generation)

    def events(self, namespace: str, name: str) -> list[tuple[str, str, str]]:
        events = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        return [(event.type, event.reason, event.message) for event in events.items]


def schema_status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """A pipeline's `status.schema`; empty before its schema was registered."""
    return dict(((kube.get_pipeline(namespace, name) or {}).get("status") or {}).get("schema") or {})


def handed_over_schemas(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    """The schema versions in the pipeline's listener hand-off Secret."""
    secret = kube.secret(naming.DEFAULT_LISTENER_NAMESPACE, naming.listener_secret_name(namespace, name)) or {}
    return list(json.loads(secret.get(SCHEMAS_KEY) or "[]"))


def kafka_producer(secret: Mapping[str, str]) -> Producer:
    """A producer configured from a pipeline Secret's keys, as an application would build it."""
    return Producer({**kafka_settings(secret), "message.timeout.ms": 10000})


def kafka_send(secret: Mapping[str, str], topic: str, value: bytes = b"probe") -> KafkaError | None:
    """Produce one message with a pipeline Secret; the delivery error, or None when delivered."""
    producer = kafka_producer(secret)
    outcome: list[KafkaError | None] = []
    producer.produce(topic, value, on_delivery=lambda error, _msg: outcome.append(error))
    producer.flush(15)
    return outcome[0] if outcome else KafkaError(KafkaError._MSG_TIMED_OUT)


@contextlib.contextmanager
def pulsar_client(secret: Mapping[str, str]) -> Iterator[pulsar.Client]:
    """A Pulsar client with a pipeline Secret's token (and ca.crt); closed, its CA file removed, on exit."""
    tls_options, trust = pulsar_tls_options(secret["serviceUrl"], secret.get(CA_KEY))
    opened = pulsar.Client(
        secret["serviceUrl"],
        authentication=pulsar.AuthenticationToken(secret["token"]),
        operation_timeout_seconds=10,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
        **tls_options,
    )
    try:
        yield opened
    finally:
        opened.close()
        if trust is not None:
            trust.remove()


def pulsar_send(secret: Mapping[str, str], topic: str, value: bytes = b"probe") -> Exception | None:
    """Publish one message with a pipeline Secret's token (and ca.crt); the client's exception, or None."""
    with pulsar_client(secret) as opened:
        try:
            opened.create_producer(topic).send(value)
        except Exception as error:  # the caller asserts on whatever the client raised
            return error
    return None
