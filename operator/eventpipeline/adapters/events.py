"""Kubernetes Events written directly, for processes that run without kopf (the listener)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

LOG = logging.getLogger("eventpipeline.adapters.events")


@dataclass(frozen=True)
class InvolvedObject:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


class EventRecorder:
    """Creates core/v1 Events on behalf of one component instance; failures are logged, never raised."""

    def __init__(self, api_client: client.ApiClient, component: str, instance: str) -> None:
        self._core = client.CoreV1Api(api_client)
        self._component = component
        self._instance = instance

    def emit(self, about: InvolvedObject, type_: str, reason: str, message: str) -> None:
        """One Event (`type_` Normal or Warning) with a CamelCase `reason` and a sentence as `message`."""
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{about.name}."),
            involved_object=client.V1ObjectReference(
                api_version=about.api_version,
                kind=about.kind,
                name=about.name,
                namespace=about.namespace,
                uid=about.uid,
            ),
            reason=reason,
            message=message[:1000],
            type=type_,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=self._component, host=self._instance),
            reporting_component=self._component,
            reporting_instance=self._instance[:128],
        )
        try:
            self._core.create_namespaced_event(about.namespace, event)
        except ApiException as error:
            LOG.warning("%s/%s: emitting event %s failed (%s)", about.namespace, about.name, reason, error.status)
