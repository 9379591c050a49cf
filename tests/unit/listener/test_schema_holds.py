"""Messages and the DAG's schema version: decoded values in the run's conf, messages newer than the
DAG states held in order and released once it states their version, undecodable messages
dead-lettered with the reason. The worker loop against fakes, a fake clock, no threads."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from eventpipeline.listener.holding import HOLD_RECHECK_SECONDS
from eventpipeline.listener.stalls import REQUEST_ALLOWANCE_SECONDS
from eventpipeline.listener.trigger import Answer, AuthorizingTrigger, DagAuthorization
from eventpipeline.listener.worker import Worker
from eventpipeline.planning import delivery
from eventpipeline.planning.delivery import Message
from eventpipeline.planning.schema_versions import SchemaVersion, schemas_json
from eventpipeline.planning.serving import PipelineConfig
from tests.unit.listener.fakes import FakeAirflow, FakeClock, FakeSource, InlineExecutor, config
from tests.unit.listener.test_decoding import KAFKA, ORDER_V1, ORDER_V2, avro, wire
from tests.unit.listener.test_worker import Rig


class RecordingAirflow(FakeAirflow):
    """Keeps the conf of every run created, in the order they were created."""

    def __init__(self) -> None:
        super().__init__()
        self.confs: list[tuple[str, dict[str, Any]]] = []

    def dag_run(self, dag_id: str, message: Message, broker_type: str) -> Answer:
        answer = super().dag_run(dag_id, message, broker_type)
        if answer.status_code == 200:
            self.confs.append((message.run_id, delivery.run_conf(message, "Kafka")))
        return answer


class CountingTrigger(AuthorizingTrigger):
    """The listener's own trigger (authorization, the schema check), counting the tries per message."""

    def __init__(self, airflow: RecordingAirflow, authorization: DagAuthorization) -> None:
        super().__init__(airflow, authorization, "ns")
        self.tries: dict[str, int] = {}

    def dag_run(self, dag_id: str, message: Message, broker_type: Any) -> Answer:
        self.tries[message.run_id] = self.tries.get(message.run_id, 0) + 1
        return super().dag_run(dag_id, message, broker_type)


class Dags:
    """The DAG `d` as Airflow reports it, with tags the test changes."""

    def __init__(self, *tags: str) -> None:
        self.current = ["eventpipeline:ns", *tags]
        self.reads = 0

    def tags(self, dag_id: str) -> list[str] | None:
        self.reads += 1
        return list(self.current) if dag_id == "d" else None

    def asset_consumers(self, asset_uri: str) -> list[tuple[str, list[str]]] | None:
        return None

    def close(self) -> None:
        pass


def order(partition: int, offset: int, version: int) -> Message:
    schema, schema_id = (ORDER_V1, 11) if version == 1 else (ORDER_V2, 12)
    value = wire(
        schema_id, avro(schema, {"id": offset, "item": f"p{partition}", **({"note": None} if version == 2 else {})})
    )
    return Message("t", partition, str(offset), f"run-{partition}-{offset}", None, value, (), None, offset=offset)


def schema_rig(
    source: FakeSource, dags: Dags, pipeline: PipelineConfig | None = None, schemas: list[SchemaVersion] = KAFKA
) -> tuple[Rig, RecordingAirflow, CountingTrigger]:
    clock, events, airflow = FakeClock(), [], RecordingAirflow()
    trigger = CountingTrigger(airflow, DagAuthorization(dags, clock=clock))
    secret: Mapping[str, str] = {"schemas.json": schemas_json(schemas)}
    worker = Worker(
        pipeline or config(),
        replica="test",
        source_factory=lambda _config, _secret: source,
        read_secret=lambda _ns, _name: (dict(secret), "fp"),
        resolve_trigger=lambda _config, _data: trigger,
        emit_event=lambda _config, *event: events.append(event),
        clock=clock,
        executor=InlineExecutor(),
        receive_timeout=0.0,
    )
    connection = worker.connect()
    assert connection is not None and (connection.decoder is not None) == bool(schemas)
    return Rig(worker, connection, clock, events), airflow, trigger


def test_runs_carry_the_decoded_value_and_the_schema_version() -> None:
    source = FakeSource([order(0, 0, 1), order(0, 1, 2)])
    r, airflow, _ = schema_rig(source, Dags())
    r.run(lambda: source.committed == {0: 2})
    [(_, first), (_, second)] = airflow.confs
    assert first["value"] == {"id": 0, "item": "p0"} and first["schema"] == {"version": 1, "id": 11}
    assert second["value"] == {"id": 1, "item": "p0", "note": None} and second["schema"] == {"version": 2, "id": 12}


def test_messages_newer_than_the_dag_wait_in_order_and_become_runs_once_it_states_their_version() -> None:
    # Partition 0 moves from version 1 to 2; partition 1 stays on version 1 and is not held up.
    source = FakeSource([order(0, 0, 1), order(1, 0, 1), order(0, 1, 2), order(1, 1, 1), order(0, 2, 2)])
    dags = Dags("eventpipeline-schema:1")
    r, airflow, trigger = schema_rig(source, dags)
    r.run(lambda: source.committed == {0: 1, 1: 2})
    r.steps(20, tick=0.1)
    assert source.committed == {0: 1, 1: 2}, "held: not committed"
    assert [run for run, _ in airflow.confs] == ["run-0-0", "run-1-0", "run-1-1"]
    assert source.dead == [], "held: not dead-lettered"
    status = r.worker.status()
    assert status.error is not None and status.error.startswith(
        "DagBehindSchema: DAG d handles schema versions up to 1"
    )
    assert "messages of version 2 wait on partition(s) 0" in status.error and "(2 message(s) held)" in status.error
    assert [reason for _type, reason, _msg in r.events] == ["DagBehindSchema"]

    # More of partition 0 arrives meanwhile: it waits behind, in order. Long waits are no stall.
    source.pending.extend([order(0, 3, 2), order(0, 4, 2)])
    for _ in range(5):
        r.clock.advance(REQUEST_ALLOWANCE_SECONDS)
        r.steps(3)
    assert r.worker.status().stalled_partitions is None and not r.worker._reopen
    probes = trigger.tries["run-0-1"]
    assert 1 < probes <= 2 + 5 * REQUEST_ALLOWANCE_SECONDS / HOLD_RECHECK_SECONDS, (
        "only its first message is tried again"
    )
    assert trigger.tries.get("run-0-3", 0) == 0 and source.committed == {0: 1, 1: 2}

    dags.current.append("eventpipeline-schema:2")
    r.run(lambda: source.committed == {0: 5, 1: 2}, tick=1.0)
    assert [run for run, _ in airflow.confs][3:] == ["run-0-1", "run-0-2", "run-0-3", "run-0-4"], "in order"
    assert len(airflow.created) == 7 and all(n == 1 for run, n in airflow.attempts.items() if run != "run-0-1"), (
        "exactly one run each; only the first held message was tried more than once"
    )
    assert r.worker.status().error is None
    assert [reason for _type, reason, _msg in r.events] == ["DagBehindSchema", "SchemaHoldReleased"]


def test_a_dag_without_a_schema_tag_takes_every_version() -> None:
    source = FakeSource([order(0, 0, 2), order(0, 1, 1)])
    r, airflow, _ = schema_rig(source, Dags())
    r.run(lambda: source.committed == {0: 2})
    assert len(airflow.confs) == 2 and r.events == []


def test_a_message_that_does_not_decode_goes_to_the_dead_letter_topic_with_the_reason() -> None:
    source = FakeSource(
        [order(0, 0, 1), Message("t", 0, "1", "run-0-1", None, b'{"not": "avro"}', (), None, offset=1), order(0, 2, 1)]
    )
    r, airflow, _ = schema_rig(source, Dags())
    r.run(lambda: source.committed == {0: 3})
    [(run_id, headers)] = source.dead
    assert run_id == "run-0-1" and "magic byte 0" in headers["eventpipeline.error"]
    assert headers["eventpipeline.error"].startswith("undecodable: ")
    assert [run for run, _ in airflow.confs] == ["run-0-0", "run-0-2"]
    [(kind, reason, text)] = r.events
    assert (kind, reason) == ("Warning", "MessageDeadLettered") and "undecodable" in text and "Airflow" not in text


def test_an_unknown_schema_id_waits_for_the_handoff_then_is_dead_lettered_after_the_retry_limit() -> None:
    source = FakeSource([Message("t", 0, "0", "run-0-0", None, wire(77, b"\x02"), (), None, offset=0), order(0, 1, 1)])
    r, _, _ = schema_rig(source, Dags())
    r.steps(3)
    assert source.dead == [] and source.committed.get(0, 0) == 0, "retried first: the schema may be handed over"
    r.run(lambda: source.committed == {0: 2}, tick=1.0)
    [(_, headers)] = source.dead
    assert "schema id 77 is not a registered version" in headers["eventpipeline.error"]
    assert headers["eventpipeline.attempts"] == "3", "the first attempt and retry.limit (2) retries"


def test_a_pipeline_without_schemas_json_keeps_bytes_and_text() -> None:
    source = FakeSource([Message("t", 0, "0", "run-0-0", None, b"plain", (), None, offset=0)])
    r, airflow, _ = schema_rig(source, Dags("eventpipeline-schema:1"), schemas=[])
    r.run(lambda: source.committed == {0: 1})
    [(_, conf)] = airflow.confs
    assert conf["value"] == "plain" and "schema" not in conf


def test_a_broken_handoff_stops_the_pipeline_with_the_reason_instead_of_guessing() -> None:
    source = FakeSource([order(0, 0, 1)])
    bad = SchemaVersion(version=1, id=1, type="AVRO", definition=json.dumps({"type": "nope"}))
    clock = FakeClock()
    worker = Worker(
        config(),
        replica="test",
        source_factory=lambda _config, _secret: source,
        read_secret=lambda _ns, _name: ({"schemas.json": schemas_json([bad])}, "fp"),
        resolve_trigger=lambda _config, _data: FakeAirflow(),
        emit_event=lambda _config, *_event: None,
        clock=clock,
        executor=InlineExecutor(),
    )
    assert worker.connect() is None
    error = worker.status().error
    assert error is not None and "schema version 1 (AVRO) cannot be read" in error


def test_a_pipeline_with_a_schema_triggers_nothing_undecoded_before_its_versions_are_handed_over() -> None:
    source = FakeSource([order(0, 0, 1)])
    worker = Worker(
        dataclasses.replace(config(), schema_expected=True),
        replica="test",
        source_factory=lambda _config, _secret: source,
        read_secret=lambda _ns, _name: ({"token": "t"}, "fp"),
        resolve_trigger=lambda _config, _data: FakeAirflow(),
        emit_event=lambda _config, *_event: None,
        clock=FakeClock(),
        executor=InlineExecutor(),
    )
    assert worker.connect() is None and source.opened == []
    error = worker.status().error
    assert error is not None and "schemas.json" in error
