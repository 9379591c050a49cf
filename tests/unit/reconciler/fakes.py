"""In-memory fakes of what the reconciler talks to: the claims store, the cluster's Secrets, a
broker and an Airflow instance. They keep state like the real systems do, so a test can look
at what a reconciliation left behind, and tamper with it as an attacker or an outage would."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from eventpipeline.adapters.airflow import AirflowSettings
from eventpipeline.adapters.claims import ClaimConflictError, StoredClaim, TopicShare
from eventpipeline.adapters.errors import UnavailableError
from eventpipeline.adapters.kube import FINGERPRINT_ANNOTATION, Owner, SecretView
from eventpipeline.api.broker import BrokerSpec
from eventpipeline.api.claim import OwnershipClaimSpec
from eventpipeline.api.common import AirflowInstanceRef, BrokerRef
from eventpipeline.planning import access, naming
from eventpipeline.planning.principals import Grantee
from eventpipeline.planning.secrets import AIRFLOW_MASK, fingerprint
from eventpipeline.planning.topic import DesiredTopic, ObservedTopic, plan_topic
from eventpipeline.reconciler.backends import AccessResult, Ownership, TopicResult
from eventpipeline.reconciler.references import UnresolvedReferenceError

_versions = itertools.count(1)


class FakeClaims:
    """OwnershipClaim objects with the API server's rules: unique names, compare-and-swap updates."""

    def __init__(self) -> None:
        self.items: dict[str, StoredClaim] = {}
        self.down = False
        self.writes: list[tuple[str, str]] = []  # (create | update | delete, the claim's kind) of each write

    def _check(self) -> None:
        if self.down:
            raise UnavailableError("Kubernetes: unavailable (fake)")

    def owned_by(self, pipeline_uid: str) -> list[StoredClaim]:
        self._check()
        return [claim for claim in self.items.values() if claim.spec.pipeline.uid == pipeline_uid]

    def topics_in_namespace(self, namespace: str) -> list[TopicShare]:
        self._check()
        kept = (TopicShare.of(claim) for claim in self.items.values() if claim.spec.pipeline.namespace == namespace)
        return [topic for topic in kept if topic is not None]

    def get(self, name: str) -> StoredClaim | None:
        self._check()
        return self.items.get(name)

    def create(self, name: str, spec: OwnershipClaimSpec) -> StoredClaim | None:
        self._check()
        if name in self.items:
            return None
        self.writes.append(("create", spec.kind))
        self.items[name] = StoredClaim(name, spec, str(next(_versions)))
        return self.items[name]

    def update(self, claim: StoredClaim) -> StoredClaim:
        self._check()
        current = self.items.get(claim.name)
        if current is None or current.resource_version != claim.resource_version:
            raise ClaimConflictError(f"claim {claim.name} changed")
        self.writes.append(("update", claim.spec.kind))
        self.items[claim.name] = StoredClaim(claim.name, claim.spec, str(next(_versions)))
        return self.items[claim.name]

    def delete(self, name: str) -> None:
        self._check()
        if name in self.items:
            self.writes.append(("delete", self.items[name].spec.kind))
        self.items.pop(name, None)

    def specs(self, kind: str) -> list[OwnershipClaimSpec]:
        return [claim.spec for claim in self.items.values() if claim.spec.kind == kind]


@dataclass
class StoredSecret:
    data: dict[str, str]
    annotations: dict[str, str]
    owner_uids: set[str]


class FakeCluster:
    """Secrets per namespace and the pipelines that exist (for orphaned claims)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], StoredSecret] = {}
        self.pipelines: dict[tuple[str, str], str] = {}
        self.reads: list[tuple[str, str]] = []  # (namespace, name) of each Secret read

    def read_secret(self, namespace: str, name: str) -> SecretView | None:
        self.reads.append((namespace, name))
        found = self.secrets.get((namespace, name))
        if found is None:
            return None
        return SecretView(dict(found.data), dict(found.annotations), frozenset(found.owner_uids))

    def write_secret(
        self, namespace: str, name: str, data: dict[str, str], owner: Owner | None, labels: dict[str, str]
    ) -> None:
        owners = {owner.uid} if owner is not None else set()
        self.secrets[(namespace, name)] = StoredSecret(dict(data), {FINGERPRINT_ANNOTATION: fingerprint(data)}, owners)

    def delete_secret(self, namespace: str, name: str) -> None:
        self.secrets.pop((namespace, name), None)

    def pipeline_uid(self, namespace: str, name: str) -> str | None:
        return self.pipelines.get((namespace, name))

    def data(self, namespace: str, name: str) -> dict[str, str]:
        return self.secrets[(namespace, name)].data


class FakeBroker:
    """A broker: topics, credentials (a password per user) and grants per topic, role → actions."""

    type = "Kafka"

    def __init__(self) -> None:
        self.topics: dict[str, int] = {}
        self.credentials: dict[str, str] = {}
        self.grants: dict[str, dict[str, frozenset[str]]] = {}
        self.down = False
        self.issued = itertools.count(1)

    def _check(self) -> None:
        if self.down:
            raise UnavailableError("broker unavailable (fake)")

    def ping(self) -> None:
        self._check()

    def locate(self, topic: str, namespace: str) -> str:
        return topic

    def ensure_topic(self, desired: DesiredTopic, *, seen_absent: bool = False) -> TopicResult:
        self._check()
        observed = ObservedTopic(desired.name, self.topics[desired.name]) if desired.name in self.topics else None
        changes = plan_topic(desired, observed)
        if changes.create:
            self.topics[desired.name] = desired.partitions
            return TopicResult(desired.name, desired.partitions, created=True)
        assert observed is not None
        if changes.grow_partitions_to is not None:
            self.topics[desired.name] = changes.grow_partitions_to
        return TopicResult(
            desired.name,
            self.topics[desired.name],
            grown_from=observed.partitions if changes.grow_partitions_to else None,
            shrink_refused_from=changes.shrink_refused_from,
        )

    def topic_exists(self, topic: str) -> bool:
        self._check()
        return topic in self.topics

    def delete_topic(self, topic: str) -> None:
        self._check()
        self.topics.pop(topic, None)
        self.grants.pop(topic, None)

    def credential_exists(self, username: str) -> bool:
        self._check()
        return username in self.credentials

    def issue_credentials(
        self, usernames: Sequence[str], now: datetime, lifetime: tuple[timedelta, timedelta]
    ) -> dict[str, SecretStr]:
        self._check()
        issued = {}
        for username in usernames:
            password = f"password-{next(self.issued)}"
            self.credentials[username] = password
            issued[username] = SecretStr(password)
        return issued

    def revoke_credential(self, username: str) -> None:
        self._check()
        self.credentials.pop(username, None)

    def sync_access(
        self, topic: str, grantees: list[Grantee], ownership: Ownership, dead_letter: str | None
    ) -> AccessResult:
        self._check()
        added = removed = 0
        targets = [(topic, list(grantees))]
        if dead_letter:
            targets.append((dead_letter, [g for g in grantees if g.writes_dead_letter]))
        for name, wanted in targets:
            desired = access.desired_pulsar_grants(wanted, dead_letter_topic=name == dead_letter)
            actual = self.grants.setdefault(name, {})
            to_grant, to_revoke = access.diff_pulsar_grants(
                desired, dict(actual), {role for role in actual if ownership.owns(role)}
            )
            actual.update(to_grant)
            for role in to_revoke:
                del actual[role]
            added, removed = added + len(to_grant), removed + len(to_revoke)
        return AccessResult(added, removed, [])

    def remove_access(self, topic: str, groups: list[str], ownership: Ownership, dead_letter: str | None) -> None:
        self.sync_access(topic, [], ownership, dead_letter)

    def secret_data(self, username: str, credential: SecretStr) -> dict[str, str]:
        return {"username": username, "password": credential.get_secret_value()}

    def connection_payload(
        self, connection_id: str, username: str, credential: SecretStr, group: str
    ) -> dict[str, Any]:
        return {"connection_id": connection_id, "login": username, "password": credential.get_secret_value()}

    def can(self, username: str, topic: str, action: str) -> bool:
        """Whether a client with this user's credential may act on the topic now."""
        return username in self.credentials and action in self.grants.get(topic, {}).get(username, frozenset())


class FakeConnections:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.updates: list[tuple[str, list[str]]] = []  # (connection id, fields) of each update
        self.down = False

    def exists(self, connection_id: str) -> bool:
        if self.down:
            raise UnavailableError("Airflow unavailable (fake)")
        return connection_id in self.items

    def put(self, payload: dict[str, Any]) -> None:
        if self.down:
            raise UnavailableError("Airflow unavailable (fake)")
        self.items[str(payload["connection_id"])] = dict(payload)

    def update(self, payload: dict[str, Any], fields: list[str]) -> bool:
        """Airflow's PATCH with `update_mask`: only `fields` change, and a value sent as the mask
        (`***`, also inside `extra`) keeps the stored one."""
        if self.down:
            raise UnavailableError("Airflow unavailable (fake)")
        stored = self.items.get(str(payload["connection_id"]))
        if stored is None:
            return False
        self.updates.append((str(payload["connection_id"]), list(fields)))
        for name in fields:
            value = payload.get(name)
            if name == "extra" and value and stored.get("extra"):
                old, new = json.loads(stored["extra"]), json.loads(value)
                value = json.dumps({k: old.get(k, v) if v == AIRFLOW_MASK else v for k, v in new.items()})
            elif value == AIRFLOW_MASK:
                value = stored.get(name)
            stored[name] = value
        return True

    def delete(self, connection_id: str) -> None:
        if self.down:
            raise UnavailableError("Airflow unavailable (fake)")
        self.items.pop(connection_id, None)


@dataclass(frozen=True)
class FakeBrokerTarget:
    key: str
    spec: BrokerSpec
    backend: FakeBroker


@dataclass
class FakeDags:
    """DAG tags and assets as Airflow would list them."""

    tags_by_dag: dict[str, list[str]] = field(
        default_factory=lambda: {"process": ["eventpipeline:shop", "eventpipeline:payments"]}
    )
    consumers_by_asset: dict[str, list[str]] = field(default_factory=dict)

    def tags(self, dag_id: str) -> list[str] | None:
        return self.tags_by_dag.get(dag_id)

    def asset_consumers(self, asset_uri: str) -> list[tuple[str, list[str]]] | None:
        dag_ids = self.consumers_by_asset.get(asset_uri)
        return None if dag_ids is None else [(dag_id, self.tags_by_dag.get(dag_id, [])) for dag_id in dag_ids]


AIRFLOW_SETTINGS = AirflowSettings("http://airflow:8080", "admin", SecretStr("airflow-secret"))


@dataclass(frozen=True)
class FakeAirflowTarget:
    key: str
    connections: FakeConnections
    dags: FakeDags
    settings: AirflowSettings = field(default_factory=lambda: AIRFLOW_SETTINGS)


@dataclass
class FakeResolver:
    """One ClusterBroker `kafka` and one ClusterAirflowInstance `main`, open to `allowed` namespaces."""

    broker_backend: FakeBroker = field(default_factory=FakeBroker)
    connections: FakeConnections = field(default_factory=FakeConnections)
    dags: FakeDags = field(default_factory=FakeDags)
    allowed: set[str] = field(default_factory=lambda: {"shop", "payments"})
    template: str = "{namespace}.{name}"
    airflow_settings: AirflowSettings = field(default_factory=lambda: AIRFLOW_SETTINGS)
    # Each broker() / airflow() call, by what it resolved: what a real resolver would read.
    resolved: list[str] = field(default_factory=list)

    @property
    def broker_key(self) -> str:
        return naming.reference_key("ClusterBroker", None, "kafka")

    @property
    def airflow_key(self) -> str:
        return naming.reference_key("ClusterAirflowInstance", None, "main")

    def _target(self) -> FakeBrokerTarget:
        spec = BrokerSpec.model_validate(
            {
                "type": "Kafka",
                "topicTemplate": self.template,
                "kafka": {"bootstrapServers": "kafka:9093", "adminSecretRef": {"name": "a", "namespace": "x"}},
            }
        )
        return FakeBrokerTarget(self.broker_key, spec, self.broker_backend)

    def broker(self, ref: BrokerRef, namespace: str | None) -> FakeBrokerTarget:
        self.resolved.append("broker")
        if namespace not in self.allowed:
            raise UnresolvedReferenceError("NamespaceNotAllowed", f"ClusterBroker kafka does not allow {namespace}")
        return self._target()

    def airflow(self, ref: AirflowInstanceRef, namespace: str) -> FakeAirflowTarget:
        self.resolved.append("airflow")
        if namespace not in self.allowed:
            raise UnresolvedReferenceError("NamespaceNotAllowed", f"Airflow main does not allow {namespace}")
        return FakeAirflowTarget(self.airflow_key, self.connections, self.dags, self.airflow_settings)

    def broker_by_key(self, key: str) -> FakeBrokerTarget:
        return self._target()

    def airflow_by_key(self, key: str) -> FakeAirflowTarget:
        return FakeAirflowTarget(self.airflow_key, self.connections, self.dags, self.airflow_settings)
