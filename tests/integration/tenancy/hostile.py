"""Hostile and random EventPipeline specs, applied to the real API server with the operator running.

Shared by tests/integration/tenancy/test_hostile_specs.py (a bounded number of examples in
`make test`) and bench/tenancy/hostile_specs.py (the full 1,000). Each spec is either refused at
admission or ends in a clear `Ready` condition; each created pipeline is then deleted and must
go away (no finalizer left stuck); and after every batch nothing of a *victim* pipeline in
another namespace has changed: its Secrets, its broker ACLs, its ownership claims, its Airflow
connection, a connection nobody owns, and its producer still produces.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import admin as kafka_admin
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from eventpipeline_devenv.airflow_api import AirflowApi
from tests.integration.listener.brokers import kafka_admin_settings
from tests.integration.support import GROUP, VERSION, Kube, eventually, fresh_namespace, kafka_send, unique

SETTLE_SECONDS = 180.0  # created → Ready with a reason and a message
GONE_SECONDS = 120.0  # deleted → no longer in the API (finalizer done)
ADMISSION_REFUSALS = (400, 422)
MANAGED_BY = "app.kubernetes.io/managed-by=eventpipeline-operator"
PIPELINE_UID_LABEL = "eventpipeline.dev/pipeline-uid"

# --- the victim: what no hostile spec may change ------------------------------------------------


@dataclass
class Victim:
    """A working Kafka pipeline in a namespace of its own, and everything of it an attacker might touch."""

    namespace: str
    name: str
    uid: str
    topic: str
    connection_id: str
    foreign_connection_id: str  # exists in Airflow, claimed by nobody (`aws_default` style)
    usernames: list[str]
    snapshot: dict[str, Any] = field(default_factory=dict)


def victim_spec() -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "airflow": {"instanceRef": {"name": "local"}},
    }


def create_victim(kube: Kube, exports: Mapping[str, str]) -> Victim:
    """The victim pipeline, Ready, and an Airflow connection the operator does not own."""
    namespace = unique("victim")
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    kube.create_pipeline(namespace, "victim", victim_spec())
    kube.wait_condition(namespace, "victim", "Ready", "True", timeout=SETTLE_SECONDS)
    body = kube.get_pipeline(namespace, "victim")
    assert body is not None
    foreign = unique("aws_default").replace("-", "_")
    airflow = AirflowApi(exports)
    connection = {"connection_id": foreign, "conn_type": "aws", "login": "root", "password": "cloud-root-password"}
    airflow.request("POST", "/api/v2/connections", json=connection).raise_for_status()
    victim = Victim(
        namespace=namespace,
        name="victim",
        uid=body["metadata"]["uid"],
        topic=body["status"]["topic"],
        connection_id=body["status"]["airflowConnection"],
        foreign_connection_id=foreign,
        usernames=[],
    )
    victim.usernames = sorted(
        claim["spec"]["credential"]["username"]
        for claim in victim_claims(kube, victim)
        if claim["spec"]["kind"] == "Principal"
    )
    victim.snapshot = observe_victim(kube, exports, victim)
    return victim


def remove_victim(kube: Kube, exports: Mapping[str, str], victim: Victim) -> None:
    AirflowApi(exports).request("DELETE", f"/api/v2/connections/{victim.foreign_connection_id}")
    try:
        kube.core.delete_namespace(victim.namespace)
    except ApiException as error:
        if error.status != 404:
            raise


def victim_claims(kube: Kube, victim: Victim) -> list[dict[str, Any]]:
    items = kube.custom.list_cluster_custom_object(
        GROUP, VERSION, "ownershipclaims", label_selector=f"{PIPELINE_UID_LABEL}={victim.uid}"
    )["items"]
    return [dict(item) for item in items]


def _connection(airflow: AirflowApi, connection_id: str) -> dict[str, Any] | None:
    response = airflow.request("GET", f"/api/v2/connections/{connection_id}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return {key: value for key, value in response.json().items() if key != "password"}


def _acls(exports: Mapping[str, str], usernames: list[str]) -> list[str]:
    admin = kafka_admin.AdminClient(kafka_admin_settings(exports))
    found: list[str] = []
    for username in usernames:
        binding_filter = kafka_admin.AclBindingFilter(
            kafka_admin.ResourceType.ANY,
            None,
            kafka_admin.ResourcePatternType.ANY,
            f"User:{username}",
            None,
            kafka_admin.AclOperation.ANY,
            kafka_admin.AclPermissionType.ANY,
        )
        for acl in admin.describe_acls(binding_filter, request_timeout=15).result(timeout=20):
            found.append(
                f"{acl.principal} {acl.permission_type.name} {acl.operation.name} {acl.restype.name}:{acl.name}"
            )
    return sorted(found)


def observe_victim(kube: Kube, exports: Mapping[str, str], victim: Victim) -> dict[str, Any]:
    """What an attacker must not change, as plain comparable data (Secret values included: never printed)."""
    secrets = kube.core.list_namespaced_secret(victim.namespace, label_selector=MANAGED_BY).items
    airflow = AirflowApi(exports)
    return {
        "secrets": {secret.metadata.name: dict(secret.data or {}) for secret in secrets},
        "claims": sorted(json.dumps(claim["spec"], sort_keys=True) for claim in victim_claims(kube, victim)),
        "acls": _acls(exports, victim.usernames),
        "connection": _connection(airflow, victim.connection_id),
        "foreign connection": _connection(airflow, victim.foreign_connection_id),
    }


def victim_changes(kube: Kube, exports: Mapping[str, str], victim: Victim) -> list[str]:
    """What changed of the victim since it was set up; empty when nothing did."""
    now = observe_victim(kube, exports, victim)
    problems = [f"the victim's {part} changed" for part in victim.snapshot if now[part] != victim.snapshot[part]]
    try:
        wait_until_ready(kube, victim)
    except AssertionError as error:
        problems.append(str(error))
    secret = kube.secret(victim.namespace, "victim.app.credentials")
    if secret is None:
        problems.append("the victim's producer Secret is gone")
    else:
        error = kafka_send(secret, victim.topic)
        if error is not None:
            problems.append(f"the victim's producer can no longer produce: {error}")
    return problems


# --- the generator -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Names the generator aims at: the attacker's namespace and what belongs to others."""

    namespace: str
    victim_namespace: str
    victim_topic: str
    victim_connection_id: str
    victim_usernames: tuple[str, ...]
    foreign_connection_id: str
    admin_user: str

    @classmethod
    def of(cls, namespace: str, victim: Victim, exports: Mapping[str, str]) -> Target:
        return cls(
            namespace=namespace,
            victim_namespace=victim.namespace,
            victim_topic=victim.topic,
            victim_connection_id=victim.connection_id,
            victim_usernames=tuple(victim.usernames),
            foreign_connection_id=victim.foreign_connection_id,
            admin_user=exports["KAFKA_ADMIN_USER"],
        )


@dataclass(frozen=True)
class HostileCase:
    """One hostile attempt: a pipeline, and what the attacker prepares or does around it."""

    name: str
    spec: dict[str, Any]
    annotations: dict[str, str] = field(default_factory=dict)
    broker: dict[str, Any] | None = None  # a namespaced Broker created first, spec only
    squatted_secret: str | None = None  # a Secret of this name, not the operator's, created first
    forged_status: dict[str, Any] | None = None  # written to status right after creation

    def describe(self) -> str:
        extras = {
            key: value
            for key, value in (
                ("annotations", self.annotations),
                ("broker", self.broker),
                ("squatted_secret", self.squatted_secret),
                ("forged_status", self.forged_status),
            )
            if value
        }
        return json.dumps({"name": self.name, "spec": self.spec, **extras}, sort_keys=True, ensure_ascii=True)


LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
T = TypeVar("T")


def mostly(admitted: st.SearchStrategy[T], refused: st.SearchStrategy[T], one_in: int = 12) -> st.SearchStrategy[T]:
    """Values the schema admits (hostile, but for the operator to judge), and now and then one the
    API server must refuse: with a dozen fields per spec, about half the specs reach the operator."""
    return st.integers(min_value=0, max_value=one_in - 1).flatmap(lambda n: refused if n == one_in - 1 else admitted)


def _names(target: Target) -> st.SearchStrategy[str]:
    long_valid = ".".join(["a" * 63] * 3) + "." + "b" * 61  # 253 characters, a valid object name
    admitted = st.one_of(
        LABEL,
        st.lists(LABEL, min_size=2, max_size=4).map(".".join),
        LABEL.map(lambda label: f"{label}.dlq"),
        st.sampled_from(
            ["victim", "listener", "admin", "x.dlq", long_valid, "db-admin", f"{target.victim_namespace}.victim"]
        ),
    )
    refused = st.one_of(
        st.sampled_from(["", long_valid + "c", "a" * 64, "A_b", "-a"]),
        st.text(st.characters(min_codepoint=0xA1, max_codepoint=0x2FFF), min_size=1, max_size=8),
    )
    return mostly(admitted, refused)


def _principals() -> st.SearchStrategy[list[dict[str, str]]]:
    """Principal lists; reserved, malformed or duplicate names now and then (the list is a map by name)."""
    names = st.one_of(LABEL, st.sampled_from(["app", "admin", "victim", "ep", "g1", "x" * 40]))
    admitted = st.lists(names, max_size=3, unique=True)
    bad_name = st.sampled_from(["listener", "Admin", "a.b", "x" * 41, ""])
    refused = st.one_of(st.lists(bad_name, min_size=1, max_size=2), names.map(lambda name: [name, name]))
    return mostly(admitted, refused).map(lambda chosen: [{"name": name} for name in chosen])


def _topic(target: Target) -> st.SearchStrategy[dict[str, Any]]:
    own = f"{target.namespace}."
    names = mostly(
        st.one_of(
            LABEL.map(lambda label: own + label),
            st.sampled_from(
                [
                    target.victim_topic,
                    target.victim_topic + ".dlq",
                    own + "x.dlq",
                    f"{target.namespace}-x",
                    f"{target.victim_namespace}.other",
                    "__consumer_offsets",
                    "..",
                ]
            ),
        ),
        st.sampled_from([own + "t" * 250, "", own + "ünï"]),
    )
    config_keys = st.sampled_from(
        [
            "retention.ms",
            "flush.messages",
            "segment.ms",
            "cleanup.policy",
            "unclean.leader.election.enable",
            "max.message.bytes",
            "min.insync.replicas",
            "UPPER",
            "",
        ]
    )
    config_values = st.sampled_from(
        ["-1", "1", "1000", "604800000", "delete", "compact", "bogus", "99999999999999999999", "true", ""]
    )
    partitions = mostly(
        st.one_of(st.integers(min_value=1, max_value=4), st.sampled_from([64, 65, 257, 10000])),
        st.sampled_from([0, -1, 10001, 2**31, 2**63]),
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "name": names,
            "partitions": partitions,
            "replicationFactor": mostly(st.sampled_from([1, 1, 3]), st.sampled_from([0, 40000])),
            "config": st.dictionaries(config_keys, config_values, max_size=3),
            "deletionPolicy": mostly(st.sampled_from(["Delete", "Delete", "Delete", "Retain"]), st.just("Forever")),
        },
    )


def _external_principals(target: Target) -> st.SearchStrategy[list[dict[str, str]]]:
    principals = mostly(
        st.sampled_from(
            [
                f"User:{target.admin_user}",
                "User:analytics",
                "Group:ops",
                "ünï",
                *(f"User:{username}" for username in target.victim_usernames),
            ]
        ),
        st.sampled_from(["User:*", "*", "User:ep.*", ""]),
    )
    access = mostly(st.sampled_from(["Produce", "Consume"]), st.just("Admin"))
    return st.lists(st.fixed_dictionaries({"principal": principals, "access": access}), max_size=3)


def _credentials() -> st.SearchStrategy[dict[str, str]]:
    admitted = st.sampled_from([("24h", "1h"), ("10s", "5s"), ("1h30m", "1h"), ("1h", "59m59s")])
    refused = st.sampled_from([("1h", "24h"), ("5s", "1s"), ("1ms", "0s"), ("-1h", "1h"), ("1d", "1h"), ("abc", "1h")])
    pairs = mostly(admitted, refused)
    return st.one_of(st.just({}), pairs.map(lambda pair: {"rotateEvery": pair[0], "gracePeriod": pair[1]}))


def _airflow(target: Target) -> st.SearchStrategy[dict[str, Any]]:
    connection_ids = mostly(
        st.sampled_from(
            [
                target.victim_connection_id,
                target.foreign_connection_id,
                f"{target.victim_namespace}.x",
                f"{target.namespace}.mine",
                "aws_default",
                "mine",
            ]
        ),
        st.sampled_from(["", "a/b", "x" * 251]),
    )
    retry = st.fixed_dictionaries(
        {},
        optional={
            "limit": mostly(st.sampled_from([0, 3]), st.sampled_from([1001, -1])),
            "backoff": mostly(st.just("1s"), st.sampled_from(["10m", "abc"])),
            "maxBackoff": st.just("5m"),
        },
    )
    mode = mostly(
        st.sampled_from([{"mode": "DagRun"}, {"mode": "AssetEvent", "assetUri": "s3://bucket/key"}]),
        st.sampled_from([{"mode": "AssetEvent"}, {"mode": "Bogus"}, {"mode": "AssetEvent", "assetUri": "x" * 1501}]),
    )
    trigger = st.fixed_dictionaries(
        {
            "dagId": mostly(
                st.sampled_from(["process_event", "ep_open_to_every_namespace", "no_such_dag"]),
                st.sampled_from(["", "a b"]),
            )
        },
        optional={
            "maxInFlight": mostly(st.sampled_from([1, 16]), st.sampled_from([0, 100000])),
            "retry": retry,
            "deadLetter": st.fixed_dictionaries({"enabled": st.booleans()}),
        },
    ).flatmap(lambda base: mode.map(lambda extra: {**base, **extra}))
    instance_ref = mostly(
        st.sampled_from(
            [
                {"name": "local"},
                {"kind": "ClusterAirflowInstance", "name": "local"},
                {"name": "local"},
                {"kind": "ClusterAirflowInstance", "name": "missing"},
                {"kind": "AirflowInstance", "name": "local"},
                {"name": "local"},
                {"name": "local"},
            ]
        ),
        st.just({"kind": "Other", "name": "local"}),
    )
    return st.fixed_dictionaries(
        {"instanceRef": instance_ref}, optional={"connectionId": connection_ids, "trigger": trigger}
    )


NAMESPACED_BROKER = "tenant-broker"


def _broker_ref() -> st.SearchStrategy[dict[str, str]]:
    return mostly(
        st.sampled_from(
            [
                {"kind": "ClusterBroker", "name": "local-kafka"},
                {"kind": "ClusterBroker", "name": "local-kafka"},
                {"kind": "ClusterBroker", "name": "local-kafka"},
                {"kind": "ClusterBroker", "name": "local-pulsar"},
                {"kind": "ClusterBroker", "name": "local-kafka"},
                {"kind": "ClusterBroker", "name": "local-kafka"},
                {"kind": "ClusterBroker", "name": "local-pulsar"},
                {"kind": "ClusterBroker", "name": "missing"},
                {"kind": "Broker", "name": NAMESPACED_BROKER},
            ]
        ),
        st.sampled_from([{"kind": "Secret", "name": "local-kafka-admin"}, {"name": ""}]),
    )


def _namespaced_broker(target: Target, exports: Mapping[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    """A tenant's own Broker: addresses and admin Secret of its choosing, templates that try to reach out."""
    kafka = st.fixed_dictionaries(
        {
            "bootstrapServers": st.sampled_from(
                [exports["KAFKA_BOOTSTRAP_SERVERS"], "127.0.0.1:1", "169.254.169.254:80"]
            ),
            "securityProtocol": st.sampled_from(["SASL_PLAINTEXT", "SASL_SSL"]),
            "adminSecretRef": st.sampled_from(
                [
                    {"name": "local-kafka-admin", "namespace": "eventpipeline-system"},
                    {"name": "victim.app.credentials", "namespace": target.victim_namespace},
                    {"name": "mine"},
                ]
            ),
        }
    )
    return st.fixed_dictionaries(
        {"type": st.just("Kafka"), "kafka": kafka},
        optional={
            "allowedNamespaces": st.sampled_from([["*"], [target.victim_namespace], []]),
            "topicTemplate": st.sampled_from(
                ["{namespace}.{name}", "{namespace}-{name}", "{name}", "x{namespace}_{name}", "{namespace}.{name}.dlq"]
            ),
            "topicPolicy": st.fixed_dictionaries(
                {},
                optional={
                    "allowedConfigKeys": st.sampled_from([["flush.messages", "segment.ms"], ["*"], []]),
                    "allowInfiniteRetention": st.booleans(),
                    "maxPartitionsPerPipeline": st.sampled_from([1, 10000, 20000]),
                    "maxPartitionsPerNamespace": st.sampled_from([1, 1000000]),
                },
            ),
        },
    )


def _forged_status(target: Target) -> st.SearchStrategy[dict[str, Any]]:
    """What whoever can write `status` might claim, naming the victim's and the admin's identities."""
    usernames = [*target.victim_usernames, target.admin_user]
    principal = st.fixed_dictionaries(
        {
            "name": st.just("app"),
            "role": st.just("producer"),
            "secretName": st.just("victim.app.credentials"),
            "username": st.sampled_from(usernames),
            "generation": st.just(1),
            "nextRotationAt": st.just("2000-01-01T00:00:00Z"),
            "previousUsername": st.sampled_from(usernames),
            "previousRevokeAt": st.just("2000-01-01T00:00:00Z"),
        }
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "principals": st.lists(principal, min_size=1, max_size=2),
            "topic": st.just(target.victim_topic),
            "airflowConnection": st.sampled_from([target.victim_connection_id, target.foreign_connection_id]),
            "externalPrincipals": st.just([f"User:{u}" for u in usernames]),
        },
    )


def hostile_cases(target: Target, exports: Mapping[str, str]) -> st.SearchStrategy[HostileCase]:
    spec = st.fixed_dictionaries(
        # Topic, producers and Airflow always: each example then reaches every part of a reconciliation.
        {"brokerRef": _broker_ref(), "topic": _topic(target), "producers": _principals(), "airflow": _airflow(target)},
        optional={
            "consumers": _principals(),
            "externalPrincipals": _external_principals(target),
            "credentials": _credentials(),
            "listener": st.fixed_dictionaries({"dedicated": st.booleans()}),
            "suspend": st.sampled_from([False, False, False, False, False, True]),
        },
    )
    annotations = st.sampled_from(
        [
            {},
            {},
            {"eventpipeline.dev/rotate": "now"},
            {"eventpipeline.dev/replay-from": "not-a-time"},
            {"eventpipeline.dev/replay-from": "1970-01-01T00:00:00Z"},
        ]
    )
    return st.builds(
        HostileCase,
        name=_names(target),
        spec=spec,
        annotations=annotations,
        broker=st.one_of(st.none(), _namespaced_broker(target, exports)),
        squatted_secret=st.one_of(st.none(), st.none(), st.just("app")),
        forged_status=st.one_of(st.none(), st.none(), _forged_status(target)),
    )


def hostile_batches(target: Target, exports: Mapping[str, str], size: int) -> st.SearchStrategy[list[HostileCase]]:
    """`size` cases with distinct pipeline names (they go into one namespace together)."""
    return st.lists(hostile_cases(target, exports), min_size=size, max_size=size, unique_by=lambda case: case.name)


# --- applying a batch ----------------------------------------------------------------------------


@dataclass
class BatchReport:
    """What happened to each case of a batch, and every broken promise."""

    outcomes: Counter[str] = field(default_factory=Counter)
    by_case: list[tuple[HostileCase, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    refused: int = 0
    settled: int = 0
    operator_crashed: bool = False
    stuck_finalizers: int = 0
    victim_changes: int = 0


@contextmanager
def attacker_namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one batch; deleted afterwards without waiting (the controller-manager finishes it)."""
    with fresh_namespace(kube, "hostile") as name:
        yield name


def _refusal(error: ApiException) -> str:
    try:
        message = json.loads(error.body or "{}").get("message", "")
    except ValueError:
        message = ""
    return f"{error.status} {str(message)[:200]}"


def _squat_secret_name(case: HostileCase) -> str | None:
    producers = case.spec.get("producers") or []
    if case.squatted_secret is None or not producers:
        return None
    return f"{case.name}.{producers[0]['name']}.credentials"


def _prepare(kube: Kube, namespace: str, case: HostileCase) -> dict[str, dict[str, str]]:
    """The attacker's own objects next to the pipeline; returns the squatted Secrets' data."""
    squatted: dict[str, dict[str, str]] = {}
    secret_name = _squat_secret_name(case)
    if secret_name is not None:
        data = {"password": f"not-the-operators-{unique('s')}"}
        try:
            kube.core.create_namespaced_secret(
                namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=secret_name), string_data=data)
            )
            squatted[secret_name] = data
        except ApiException as error:
            if error.status not in (*ADMISSION_REFUSALS, 409):
                raise
    if case.broker is not None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Broker",
            "metadata": {"name": NAMESPACED_BROKER},
            "spec": case.broker,
        }
        try:
            kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "brokers", body)
        except ApiException as error:
            if error.status not in (*ADMISSION_REFUSALS, 409):
                raise
    return squatted


def _create(kube: Kube, namespace: str, case: HostileCase) -> str | None:
    """Create the pipeline; None when created, else why the API server refused it."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EventPipeline",
        "metadata": {"name": case.name, "annotations": case.annotations},
        "spec": case.spec,
    }
    try:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", body)
    except ApiException as error:
        return _refusal(error)
    if case.forged_status is not None:
        try:
            kube.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "eventpipelines", case.name, {"status": case.forged_status}
            )
        except ApiException as error:
            if error.status not in (*ADMISSION_REFUSALS, 404):
                raise
    return None


def _ready(body: Mapping[str, Any]) -> dict[str, Any] | None:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("reason") and condition.get("message"):
            return dict(condition)
    return None


def _pipelines(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    items = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines")["items"]
    return {item["metadata"]["name"]: item for item in items}


def run_batch(
    kube: Kube,
    exports: Mapping[str, str],
    victim: Victim,
    *,
    namespace: str,
    cases: list[HostileCase],
    operator_alive: Callable[[], bool],
) -> BatchReport:
    """Apply `cases` at once in `namespace`, wait for each to settle, delete them, check the invariants."""
    report = BatchReport()
    squatted: dict[str, dict[str, str]] = {}
    for case in cases:
        squatted.update(_prepare(kube, namespace, case))
    with ThreadPoolExecutor(8) as pool:
        refusals = dict(
            zip([case.name for case in cases], pool.map(lambda c: _create(kube, namespace, c), cases), strict=True)
        )
    created = {name for name, refusal in refusals.items() if refusal is None}
    by_name = {case.name: case for case in cases}
    for name, refusal in refusals.items():
        if refusal is None:
            continue
        status = int(refusal.split()[0])
        if status in ADMISSION_REFUSALS:
            report.refused += 1
            report.outcomes["refused at admission"] += 1
            report.by_case.append((by_name[name], f"refused: {refusal}"))
        else:
            report.problems.append(f"{name!r}: the API server answered {refusal}, not an admission refusal")

    settled: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + SETTLE_SECONDS
    while created - settled.keys() and time.monotonic() < deadline and operator_alive():
        for name, body in _pipelines(kube, namespace).items():
            if name in created and name not in settled and (ready := _ready(body)) is not None:
                settled[name] = ready
        time.sleep(1)
    for name in sorted(created - settled.keys()):
        body = kube.get_pipeline(namespace, name) or {}
        report.problems.append(
            f"no clear Ready condition within {SETTLE_SECONDS:.0f}s for {by_name[name].describe()}; "
            f"status: {json.dumps(body.get('status'))[:600]}"
        )
    for name, ready in settled.items():
        report.settled += 1
        report.outcomes[f"Ready={ready['status']} {ready['reason']}"] += 1
        report.by_case.append((by_name[name], f"Ready={ready['status']} {ready['reason']}: {ready['message']}"))

    for name in created:
        try:
            kube.delete_pipeline(namespace, name)
        except ApiException as error:
            if error.status != 404:
                raise
    deadline = time.monotonic() + GONE_SECONDS
    left = _pipelines(kube, namespace)
    while left and time.monotonic() < deadline and operator_alive():
        time.sleep(1)
        left = _pipelines(kube, namespace)
    for name, body in left.items():
        report.stuck_finalizers += 1
        finalizers = body["metadata"].get("finalizers")
        report.problems.append(
            f"{name!r} still exists {GONE_SECONDS:.0f}s after deletion (finalizers {finalizers}); "
            f"conditions: {json.dumps((body.get('status') or {}).get('conditions'))[:600]}"
        )

    for secret_name, data in squatted.items():
        left_secret = kube.core.read_namespaced_secret(secret_name, namespace)
        if left_secret.metadata.owner_references or kube.secret(namespace, secret_name) != data:
            report.problems.append(f"the attacker's own Secret {secret_name!r} was taken over or changed")

    if not operator_alive():
        report.operator_crashed = True
        report.problems.append("the operator process exited")
    else:
        changes = victim_changes(kube, exports, victim)
        report.victim_changes = len(changes)
        report.problems.extend(changes)
    return report


def wait_until_ready(kube: Kube, victim: Victim) -> None:
    """The victim is still Ready (the drift check runs every few seconds; allow it one round)."""
    eventually(
        lambda: (kube.condition(victim.namespace, victim.name, "Ready") or {}).get("status") == "True",
        timeout=60,
        what="the victim to stay Ready",
    )


def namespaces_left(kube: Kube, names: list[str], timeout: float = 120) -> list[str]:
    """Which of `names` still exist after `timeout` (a namespace held by a finalizer never goes)."""
    deadline = time.monotonic() + timeout
    left = list(names)
    while left and time.monotonic() < deadline:
        existing = {item.metadata.name for item in kube.core.list_namespace().items}
        left = [name for name in left if name in existing]
        if left:
            time.sleep(2)
    return left


def apply_generated_batch(
    kube: Kube,
    exports: Mapping[str, str],
    victim: Victim,
    data: st.DataObject,
    *,
    size: int,
    operator_alive: Callable[[], bool],
) -> tuple[str, list[HostileCase], BatchReport]:
    """Draw `size` cases aimed at a fresh namespace and the victim, and run them as one batch there."""
    with attacker_namespace(kube) as namespace:
        cases = data.draw(hostile_batches(Target.of(namespace, victim, exports), exports, size))
        report = run_batch(kube, exports, victim, namespace=namespace, cases=cases, operator_alive=operator_alive)
    return namespace, cases, report
