"""The listener and the pipeline's schema, on the real stack, for Kafka and for Pulsar: the runs'
conf carries the decoded value and the schema version; messages of a version newer than the DAG
states wait (DagBehindSchema), uncommitted, and become exactly one run each, in order, once the
DAG states that version; an undecodable message goes to the dead-letter topic with the reason.

The controller registers the schema (Apicurio Registry on Kafka, Pulsar's own registry) and hands
the versions to the listener; producers write the Confluent wire format (Kafka) or use the
registered Avro schema (Pulsar)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import fastavro
import pytest
from pulsar.schema import AvroSchema

from tests.integration.listener.broker_cases import BOTH, KAFKA, BrokerCase
from tests.integration.listener.brokers import kafka_committed, kafka_read_all
from tests.integration.listener.conftest import Airflow, Harness, listener_status, wait_ready
from tests.integration.listener.test_dag_authorization import publish_dag
from tests.integration.listener.test_messages_become_runs import run_prefix, wait_runs
from tests.integration.support import (
    eventually,
    handed_over_schemas,
    kafka_producer,
    pulsar_client,
    schema_status,
    unique,
)

pytestmark = pytest.mark.integration

V1 = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "orderId", "type": "int"},
        {"name": "item", "type": "string"},
        {"name": "quantity", "type": "int"},
    ],
}
V2 = {"type": "record", "name": "Order", "fields": [*V1["fields"], {"name": "note", "type": "string", "default": ""}]}
OPEN_TAGS = ("eventpipeline-test", "eventpipeline:*")


def text(schema: Mapping[str, Any]) -> str:
    """The definition as the Pulsar client sends it for a dict schema, so producer and registry agree."""
    return json.dumps(schema, indent=True)


def spec(broker: str, dag_id: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": broker},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "schema": {"type": "AVRO", "definition": text(schema)},
        "airflow": {
            "instanceRef": {"name": "local"},
            # One request at a time: the order of the runs is the order of the messages.
            "trigger": {"dagId": dag_id, "maxInFlight": 1, "retry": {"limit": 5, "backoff": "2s", "maxBackoff": "10s"}},
        },
    }


@pytest.fixture
def schema_dag(stack: Any, airflow: Airflow) -> Iterator[str]:
    name = "ep_schema_" + unique("t").replace("-", "_")
    yield name
    (Path(stack.exports["AIRFLOW_DAGS_FOLDER"]) / f"{name}.py").unlink(missing_ok=True)


def wait_schema_version(h: Harness, name: str, newer_than: int | None = None) -> dict[str, Any]:
    def registered() -> dict[str, Any] | None:
        found = schema_status(h.kube, h.namespace, name)
        version = found.get("version")
        return found if version is not None and (newer_than is None or version > newer_than) else None

    return eventually(registered, timeout=120, interval=1, what=f"a registered schema version of {name}")


def avro(schema: Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(dict(schema)), dict(record))
    return out.getvalue()


def produce(
    broker: BrokerCase,
    secret: Mapping[str, str],
    topic: str,
    schema: Mapping[str, Any],
    *,
    schema_id: int | None,
    records: Sequence[Mapping[str, Any]],
) -> None:
    """Publish the records as the schema-registry serializers do: Kafka, the Confluent wire format
    with the registered id; Pulsar, a producer declaring the registered Avro schema."""
    if broker.name == "kafka":
        assert schema_id is not None
        producer = kafka_producer(secret)
        for record in records:
            value = b"\x00" + schema_id.to_bytes(4, "big") + avro(schema, record)
            producer.produce(topic, value=value, partition=0)
        assert producer.flush(15) == 0
        return
    with pulsar_client(secret) as client:
        producer = client.create_producer(
            topic, schema=AvroSchema(None, schema_definition=dict(schema)), batching_enabled=False
        )
        for record in records:
            producer.send(dict(record))


def ordered_runs(airflow: Airflow, dag_id: str, prefix: str) -> list[dict[str, Any]]:
    """The pipeline's runs in the order Airflow created them."""
    return sorted(airflow.runs(dag_id, prefix).values(), key=lambda run: (run["queued_at"], run["dag_run_id"]))


def condition(h: Harness, name: str, kind: str) -> dict[str, Any]:
    conditions = ((h.kube.get_pipeline(h.namespace, name) or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


@BOTH
def test_decoded_values_in_the_conf_and_newer_versions_held_until_the_dag_states_them(
    harness: Harness, broker: BrokerCase, schema_dag: str
) -> None:
    h, name = harness, "orders"
    h.kube.create_pipeline(h.namespace, name, spec(broker.cluster_broker, schema_dag, V1))
    first = wait_schema_version(h, name)
    v1 = first["version"]  # Kafka: the subject's first version (1); Pulsar: the broker's (0)
    # The DAG reads version 1 only, and says so.
    publish_dag(h.stack, h.airflow, schema_dag, [*OPEN_TAGS, f"eventpipeline-schema:{v1}"])
    topic = wait_ready(h.kube, h.namespace, name)["status"]["topic"]
    producer = h.kube.secret(h.namespace, f"{name}.app.credentials")
    assert producer is not None
    prefix = run_prefix(h.namespace, name)
    h.listener_factory(f"{h.namespace}/{name}")

    old = [{"orderId": n, "item": "tea", "quantity": n + 1} for n in range(3)]
    produce(broker, producer, topic, V1, schema_id=first.get("id"), records=old)
    runs = wait_runs(h.airflow, schema_dag, prefix, 3, timeout=120)
    assert sorted((r["conf"]["value"]["orderId"], r["conf"]["value"]["item"]) for r in runs.values()) == [
        (0, "tea"), (1, "tea"), (2, "tea"),
    ]  # fmt: skip
    for run in runs.values():
        conf = run["conf"]
        assert conf["schema"] == {"version": v1, "id": first.get("id")}
        assert conf["value"]["quantity"] == conf["value"]["orderId"] + 1 and "valueEncoding" not in conf
        assert conf["topic"] == topic and conf["partition"] == 0

    # A compatible change: version 2 is registered and handed to the listener; the DAG still says v1.
    h.kube.patch_pipeline(h.namespace, name, {"spec": {"schema": {"definition": text(V2)}}})
    second = wait_schema_version(h, name, newer_than=v1)
    v2 = second["version"]
    eventually(
        lambda: v2 in [v["version"] for v in handed_over_schemas(h.kube, h.namespace, name)],
        timeout=60,
        what="version 2 handed to the listener",
    )
    new = [{"orderId": 10 + n, "item": "pot", "quantity": 1, "note": f"gift {n}"} for n in range(4)]
    produce(broker, producer, topic, V2, schema_id=second.get("id"), records=new)

    def holding() -> str | None:
        error = str(listener_status(h.kube, h.namespace, name).get("error") or "")
        return error if error.startswith("DagBehindSchema") else None

    held = eventually(holding, timeout=120, what="the listener to hold the version-2 messages (DagBehindSchema)")
    assert held is not None
    assert f"up to {v1}" in held and f"version {v2}" in held and f"eventpipeline-schema:{v2}" in held
    listener_ready = h.kube.wait_condition(h.namespace, name, "ListenerReady", "False", reason="DagBehindSchema")
    assert f"version {v2}" in listener_ready["message"]
    assert condition(h, name, "Ready")["status"] == "True", "a hold does not overrule Ready"
    assert any(reason == "DagBehindSchema" for _, reason, _ in h.kube.events(h.namespace, name))
    assert len(h.airflow.runs(schema_dag, prefix)) == 3, "held: no run"
    if broker.name == "kafka":
        group = f"ep.{h.namespace}.{name}.listener"
        assert kafka_committed(h.stack.exports, group, topic, 1) == {0: 3}, "held: not committed"
    assert listener_status(h.kube, h.namespace, name).get("deadLettered", 0) == 0, "held: not dead-lettered"

    # The DAG's owner updates it to read version 2: the held messages become runs, one each, in order.
    publish_dag(h.stack, h.airflow, schema_dag, [*OPEN_TAGS, f"eventpipeline-schema:{v2}"])
    wait_runs(h.airflow, schema_dag, prefix, 7, timeout=120)
    released = ordered_runs(h.airflow, schema_dag, prefix)[3:]
    assert [r["conf"]["value"] for r in released] == new, "in the order produced, with the new field"
    assert all(r["conf"]["schema"] == {"version": v2, "id": second.get("id")} for r in released)
    h.kube.wait_condition(h.namespace, name, "ListenerReady", "True", timeout=60)
    if broker.name == "kafka":
        eventually(
            lambda: kafka_committed(h.stack.exports, f"ep.{h.namespace}.{name}.listener", topic, 1) == {0: 7},
            timeout=30,
            what="every message committed",
        )
    assert len(h.airflow.runs(schema_dag, prefix)) == 7, "exactly one run per message"


def test_a_kafka_message_not_in_the_wire_format_goes_to_the_dead_letter_topic_with_the_reason(
    harness: Harness, schema_dag: str
) -> None:
    h, name = harness, "mixed"
    publish_dag(h.stack, h.airflow, schema_dag, list(OPEN_TAGS))
    pipeline = spec("local-kafka", schema_dag, V1)
    pipeline["airflow"]["trigger"]["deadLetter"] = {"enabled": True}
    h.kube.create_pipeline(h.namespace, name, pipeline)
    registered = wait_schema_version(h, name)
    topic = wait_ready(h.kube, h.namespace, name)["status"]["topic"]
    producer_secret = h.kube.secret(h.namespace, f"{name}.app.credentials")
    assert producer_secret is not None
    h.listener_factory(f"{h.namespace}/{name}")

    producer = kafka_producer(producer_secret)
    producer.produce(topic, value=b'{"orderId": 1}', partition=0)  # plain JSON, no schema id
    header_only = b"\x00" + int(registered["id"]).to_bytes(4, "big")  # the registered id, then no record
    producer.produce(topic, value=header_only, partition=0)
    assert producer.flush(15) == 0
    good = {"orderId": 5, "item": "jug", "quantity": 2}
    produce(KAFKA, producer_secret, topic, V1, schema_id=registered["id"], records=[good])

    # The partition moves on: the good message after them becomes its run.
    [run] = wait_runs(h.airflow, schema_dag, run_prefix(h.namespace, name), 1, timeout=120).values()
    assert run["conf"]["value"] == good and run["conf"]["offset"] == 2
    dead = kafka_read_all(h.stack.exports, f"{topic}.dlq", 2, timeout=90)
    assert [message.value() for message in dead] == [b'{"orderId": 1}', header_only], "unchanged"
    reasons = [dict(message.headers())["eventpipeline.error"].decode() for message in dead]
    assert reasons[0].startswith("undecodable: ") and "magic byte 0" in reasons[0]
    assert reasons[1].startswith("undecodable: ") and "not AVRO of the schema" in reasons[1]
    eventually(
        lambda: kafka_committed(h.stack.exports, f"ep.{h.namespace}.{name}.listener", topic, 1) == {0: 3},
        timeout=30,
        what="the dead-lettered messages committed",
    )
    assert sum(reason == "MessageDeadLettered" for _, reason, _ in h.kube.events(h.namespace, name)) == 2
