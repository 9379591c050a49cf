"""Benchmark: what the controller keeps per pipeline once it is idle, measured in a plain process.

No stack needed: each structure the controller keeps for every pipeline is filled for N pipelines
(from one real object, `--body`, or a synthetic one shaped like a reconciled `apply_many.py`
pipeline) and the Python allocations it holds are traced (tracemalloc). Prints bytes per pipeline
and the projection for 10,000 pipelines.

    .venv/bin/python bench/operator/retained_memory.py --pipelines 2000
    $KUBECTL get ep -n bench p0001 -o json > /tmp/p.json   # a real one, then:
    .venv/bin/python bench/operator/retained_memory.py --body /tmp/p.json --claims /tmp/claims.json
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import threading
import tracemalloc
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventpipeline.adapters.claims import ClaimViews, NamespaceViews, Packed, StoredClaim
from eventpipeline.adapters.drift import WatchedCopies
from eventpipeline.adapters.metrics import PipelineMetrics
from eventpipeline.api.claim import OwnershipClaimSpec
from eventpipeline.handlers.pipeline import drift_copy
from eventpipeline.handlers.schedule import PipelineNames
from eventpipeline.planning.schedule import DueSchedule, Handled

NOW = "2026-12-01T06:00:00Z"
LATER = "2026-12-02T06:00:00Z"


def synthetic_body() -> dict[str, Any]:
    """A pipeline as `apply_many.py` creates it, after the controller, kopf and the listener wrote to it."""
    spec = {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": "bench_dag"}},
    }
    conditions = [
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": NOW,
            "observedGeneration": 1,
        }
        for kind, reason, message in [
            ("Ready", "Reconciled", "every part is in place"),
            ("TopicReady", "TopicCreated", "topic bench.p0001 has 1 partition(s)"),
            ("AccessReady", "AccessGranted", "3 ACL(s) in place for 2 principal(s)"),
            ("CredentialsReady", "CredentialsIssued", "2 credential(s) current, next rotation at " + LATER),
            ("AirflowConnectionReady", "ConnectionSynced", "Airflow connection eventpipeline_bench_p0001 is current"),
            ("ListenerReady", "Listening", "listener eventpipeline-listener-0 consumes the topic"),
        ]
    ]
    principals = [
        {
            "name": name,
            "role": role,
            "secretName": f"p0001-{name}-credentials",
            "username": f"bench.p0001.{name}.g1",
            "generation": 1,
            "rotatedAt": NOW,
            "nextRotationAt": LATER,
        }
        for name, role in [("app", "producer"), ("listener", "listener")]
    ]
    status = {
        "observedGeneration": 1,
        "conditions": conditions,
        "brokerType": "Kafka",
        "topic": "bench.p0001",
        "partitions": 1,
        "principals": principals,
        "airflowConnection": "eventpipeline_bench_p0001",
        "listener": {"replica": "eventpipeline-listener-0", "lag": 0, "consumed": 0, "updatedAt": NOW},
    }
    managed = [
        {
            "manager": manager,
            "operation": "Update",
            "apiVersion": "eventpipeline.dev/v1alpha1",
            "time": NOW,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
            **({"subresource": "status"} if sub else {}),
        }
        for manager, sub, fields in [
            ("python", False, {"f:spec": {f"f:{key}": {} for key in spec}}),
            ("kopf", False, {"f:metadata": {"f:annotations": {".": {}, "f:eventpipeline.dev/last-handled": {}}}}),
            ("python", True, {"f:status": {f"f:{key}": {} for key in status}}),
        ]
    ]
    return {
        "apiVersion": "eventpipeline.dev/v1alpha1",
        "kind": "EventPipeline",
        "metadata": {
            "name": "p0001",
            "namespace": "bench",
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "resourceVersion": "123456",
            "creationTimestamp": NOW,
            "finalizers": ["eventpipeline.dev/finalizer"],
            "annotations": {"eventpipeline.dev/last-handled": json.dumps({"spec": spec}, separators=(",", ":"))},
            "managedFields": managed,
        },
        "spec": spec,
        "status": status,
    }


def synthetic_claims(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims of an `apply_many.py` pipeline: topic, dead-letter topic, two principals, a connection."""
    metadata = body["metadata"]
    pipeline = {"namespace": metadata["namespace"], "name": metadata["name"], "uid": metadata["uid"]}
    system = "ClusterBroker//local-kafka"
    specs: list[dict[str, Any]] = [
        {"kind": "Topic", "system": system, "name": "bench.p0001", "pipeline": pipeline, "partitions": 1},
        {"kind": "DeadLetterTopic", "system": system, "name": "bench.p0001.dlq", "pipeline": pipeline},
        {"kind": "AirflowConnection", "system": "ClusterAirflowInstance//local", "name": "eventpipeline_bench_p0001"}
        | {"pipeline": pipeline, "fingerprint": "0" * 64},
    ]
    for name, role in [("app", "producer"), ("listener", "listener")]:
        credential = {"role": role, "generation": 1, "username": f"bench.p0001.{name}.g1"}
        credential |= {"rotatedAt": NOW, "nextRotationAt": LATER}
        specs.append(
            {"kind": "Principal", "system": system, "name": f"bench.p0001.{name}", "pipeline": pipeline}
            | {"principal": name, "credential": credential}
        )
    return [
        {"metadata": {"name": f"{spec['kind'].lower()}-{uuid.uuid4().hex}", "resourceVersion": "1"}, "spec": spec}
        for spec in specs
    ]


def variant(body: dict[str, Any], index: int) -> dict[str, Any]:
    """Pipeline `index`: every string that differs between pipelines is a new object, as after JSON parsing."""
    text = json.dumps(body).replace("p0001", f"p{index:05d}").replace(body["metadata"]["uid"], str(uuid.uuid4()))
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def measure(label: str, n: int, fill: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    kept = fill()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    per = current / n
    print(f"{label:58s} {per:8.0f} B/pipeline {per * 10_000 / 2**20:8.1f} MiB at 10,000")
    return per


def stored(item: dict[str, Any]) -> StoredClaim:
    spec = OwnershipClaimSpec.model_validate(item["spec"])
    return StoredClaim(item["metadata"]["name"], spec, item["metadata"].get("resourceVersion"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=2000)
    parser.add_argument("--body", type=Path, help="one EventPipeline object as JSON (kubectl get -o json)")
    parser.add_argument("--claims", type=Path, help="its OwnershipClaims as a JSON list or kubectl list")
    args = parser.parse_args()
    n = args.pipelines
    body = json.loads(args.body.read_text()) if args.body else synthetic_body()
    claims_given = json.loads(args.claims.read_text()) if args.claims else synthetic_claims(body)
    claims_given = claims_given.get("items", claims_given) if isinstance(claims_given, dict) else claims_given
    bodies = [variant(body, i) for i in range(n)]
    claim_text = json.dumps(claims_given)
    uid = body["metadata"]["uid"]
    claims = [
        json.loads(claim_text.replace("p0001", f"p{i:05d}").replace(uid, b["metadata"]["uid"]))
        for i, b in enumerate(bodies)
    ]
    for item in claims:
        for claim in item:
            claim["metadata"]["name"] += uuid.uuid4().hex[:6]
    print(f"{n} pipelines; one object is {len(json.dumps(body, separators=(',', ':')))} bytes of JSON")

    def copies(form: Callable[[dict[str, Any]], dict[str, Any]], *, compress: bool = False) -> Callable[[], object]:
        def fill() -> object:
            kept: WatchedCopies[str, str | bytes] = WatchedCopies()
            for b in bodies:
                text = json.dumps(form(b), separators=(",", ":"))
                copy = zlib.compress(text.encode(), 1) if compress else text
                kept.seen(b["metadata"]["uid"], b["metadata"]["resourceVersion"], copy)
            return kept

        return fill

    def without_managed_fields(b: dict[str, Any]) -> dict[str, Any]:
        metadata = {key: value for key, value in b["metadata"].items() if key != "managedFields"}
        return {**b, "metadata": metadata}

    measure("watched copy: object without managedFields (before)", n, copies(without_managed_fields))
    measure("watched copy: drift_copy (what a run reads)", n, copies(drift_copy))
    measure("watched copy: drift_copy, zlib level 1 (kept)", n, copies(drift_copy, compress=True))

    # As listed: parsed from the API server's JSON inside each measurement, so what a view keeps
    # of a listing (its strings) is counted and the rest is freed.
    texts = [json.dumps(item) for item in claims]

    def listing() -> list[StoredClaim]:
        return [stored(c) for text in texts for c in json.loads(text)]

    def namespace_models() -> object:
        return {c.name: c for c in listing()}

    def namespace_view() -> object:
        views = NamespaceViews(lambda namespace: listing())
        views.claims("bench")
        return views

    def pipeline_views() -> object:
        by_uid = {b["metadata"]["uid"]: text for b, text in zip(bodies, texts, strict=True)}
        views = ClaimViews(
            lambda key: [stored(c) for c in json.loads(by_uid[key])], lambda spec: spec.pipeline.uid, 0.0, Packed.of
        )
        for key in by_uid:
            views.claims(key)
        return views

    measure("namespace quota view: every claim as models (before)", n, namespace_models)
    measure("namespace quota view: TopicShare of Topic claims", n, namespace_view)
    measure("per-pipeline claim views (Packed JSON)", n, pipeline_views)

    uids = [b["metadata"]["uid"] for b in bodies]

    def handler_state() -> object:
        names = PipelineNames()
        for b in bodies:
            names.seen(b["metadata"]["uid"], b["metadata"]["namespace"], b["metadata"]["name"])
        locks = {u: threading.Lock() for u in uids}
        handled = {u: Handled((1, None)) for u in uids}
        schedule = DueSchedule(300.0, 30.0, 60.0)
        for i, u in enumerate(uids):
            schedule.hinted(u, None)
            schedule.started(u, float(i))
        return names, locks, handled, schedule

    def metrics() -> object:
        rotated = datetime(2026, 12, 1, tzinfo=UTC)
        kept = PipelineMetrics()
        for b in bodies:
            name = f"{b['metadata']['namespace']}/{b['metadata']['name']}"
            kept.reconciled(name, [], [(p, rotated, rotated + timedelta(days=1)) for p in ("app", "listener")])
        return kept

    measure("handlers: names, object locks, last handled, schedule", n, handler_state)
    measure("metrics: credential gauges (2 principals)", n, metrics)
    measure("kopf: per-object memory", n, lambda: kopf_state(bodies))
    measure("Kafka drift snapshot (7 ACLs, 2 topics, 2 users each)", n, lambda: kafka_snapshot(n))


def kafka_snapshot(n: int) -> object:
    """A broker's listing as a drift check keeps it (`KafkaState`), from librdkafka's ACL objects."""
    from confluent_kafka.admin import (  # noqa: PLC0415 - only this measurement needs them
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    from eventpipeline.adapters.kafka import KafkaState, _managed_kinds  # noqa: PLC0415
    from eventpipeline.planning.topic import ObservedTopic  # noqa: PLC0415

    topic, group, write, read, describe = (
        ResourceType.TOPIC,
        ResourceType.GROUP,
        AclOperation.WRITE,
        AclOperation.READ,
        AclOperation.DESCRIBE,
    )
    bindings = []
    for i in range(n):
        name, app, listener = f"bench.p{i:05d}", f"User:bench.p{i:05d}.app.g1", f"User:bench.p{i:05d}.listener.g1"
        for principal, kind, resource, operation in [
            (app, topic, name, write),
            (app, topic, name, describe),
            (listener, topic, name, read),
            (listener, topic, name, describe),
            (listener, group, f"eventpipeline.{name}", read),
            (listener, topic, f"{name}.dlq", write),
            (listener, topic, f"{name}.dlq", describe),
        ]:
            literal = ResourcePatternType.LITERAL
            bindings.append(AclBinding(kind, resource, literal, principal, "*", operation, AclPermissionType.ALLOW))
    acls = _managed_kinds(bindings)
    del bindings
    topics = {name: ObservedTopic(name, 1) for i in range(n) for name in (f"bench.p{i:05d}", f"bench.p{i:05d}.dlq")}
    users = {f"bench.p{i:05d}.{principal}.g1" for i in range(n) for principal in ("app", "listener")}
    return KafkaState.of(topics, users, acls)


def kopf_state(bodies: list[dict[str, Any]]) -> object:
    from kopf._core.reactor.inventory import ResourceMemories  # noqa: PLC0415 - kopf's internals, bench only

    memories = ResourceMemories()

    async def fill() -> None:
        for b in bodies:
            await memories.recall(copy.deepcopy(b), noticed_by_listing=True)

    asyncio.run(fill())
    return memories


if __name__ == "__main__":
    main()
