"""A reconciler wired to the fakes, with a clock the test moves."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from eventpipeline.api.common import wire
from eventpipeline.api.pipeline import EventPipelineSpec, EventPipelineStatus
from eventpipeline.planning import naming
from eventpipeline.reconciler.pipeline import PipelineObject, PipelineReconciler, Reconciled
from tests.unit.reconciler.fakes import FakeClaims, FakeCluster, FakeResolver

START = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def spec(**overrides: Any) -> dict[str, Any]:
    """A pipeline spec: a producer, the Airflow trigger, 24h rotation with 1h grace."""
    body: dict[str, Any] = {
        "brokerRef": {"kind": "ClusterBroker", "name": "kafka"},
        "producers": [{"name": "app"}],
        "credentials": {"rotateEvery": "24h", "gracePeriod": "1h"},
        "airflow": {
            "instanceRef": {"kind": "ClusterAirflowInstance", "name": "main"},
            "trigger": {"dagId": "process"},
        },
    }
    body.update(overrides)
    return body


class World:
    def __init__(self) -> None:
        self.now = START
        self.claims = FakeClaims()
        self.cluster = FakeCluster()
        self.resolver = FakeResolver()
        self.broker = self.resolver.broker_backend
        self.connections = self.resolver.connections
        self.reconciler = PipelineReconciler(self.cluster, self.claims, self.resolver, clock=lambda: self.now)
        self.objects: dict[tuple[str, str], PipelineObject] = {}

    def apply(self, namespace: str, name: str, body: dict[str, Any], annotations: dict[str, str] | None = None) -> None:
        """Create or update a pipeline object (a new uid only on creation)."""
        existing = self.objects.get((namespace, name))
        uid = existing.uid if existing else str(uuid.uuid4())
        self.objects[(namespace, name)] = PipelineObject(
            namespace=namespace,
            name=name,
            uid=uid,
            generation=(existing.generation or 0) + 1 if existing else 1,
            annotations=annotations if annotations is not None else (existing.annotations if existing else {}),
            spec=EventPipelineSpec.model_validate(body),
            status=existing.status if existing else EventPipelineStatus(),
        )
        self.cluster.pipelines[(namespace, name)] = uid

    def reconcile(self, namespace: str, name: str) -> Reconciled:
        pipeline = self.objects[(namespace, name)]
        result = self.reconciler.reconcile(pipeline)
        # What kopf + the API server do with the returned status.
        status = EventPipelineStatus.model_validate(wire(result.status))
        self.objects[(namespace, name)] = replace(pipeline, status=status)
        return result

    def delete(self, namespace: str, name: str) -> list[Any]:
        pipeline = self.objects[(namespace, name)]
        notes = self.reconciler.finalize(pipeline)
        del self.objects[(namespace, name)]
        del self.cluster.pipelines[(namespace, name)]
        # The garbage collector removes what the pipeline owned through owner references.
        for key, secret in list(self.cluster.secrets.items()):
            if secret.owner_uids == {pipeline.uid}:
                del self.cluster.secrets[key]
        return notes

    def tamper_status(self, namespace: str, name: str, **changes: Any) -> None:
        """What anyone allowed to patch the status subresource could do."""
        pipeline = self.objects[(namespace, name)]
        status = pipeline.status.model_copy(update=changes)
        self.objects[(namespace, name)] = replace(pipeline, status=status)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def condition(self, namespace: str, name: str, kind: str = "Ready") -> tuple[str, str]:
        found = next(c for c in self.objects[(namespace, name)].status.conditions if c.type == kind)
        return found.status, found.reason

    def secret(self, namespace: str, name: str, principal: str) -> dict[str, str]:
        return self.cluster.data(namespace, naming.secret_name(name, principal))

    def usernames_in_claims(self) -> set[str]:
        return {
            username
            for spec in self.claims.specs("Principal")
            if spec.credential is not None
            for username in spec.credential.valid_usernames()
        }
