"""Chaos, measured: N messages over a Kafka and a Pulsar pipeline while the listener, the controller,
Airflow's API and both brokers fail, then every run counted.

While producers write at a steady rate for `production_seconds`, the harness runs its faults one
after another, spread over that window:

- listener SIGKILL, then started again a second later (the pipelines' only consumer);
- Airflow's api-server frozen (SIGSTOP of its process group: connections hang, state is kept), then SIGCONT;
- Kafka / Pulsar restarted for real (SIGTERM, started again with the same command, data and ports)
  or frozen with SIGSTOP/SIGCONT (`kafka_fault` / `pulsar_fault`; both are restarted by default,
  in the short plan too, see RESULTS.md);
- controller SIGKILL, then started again.

Then it waits until every message has its run and checks, per pipeline: one run per message (the
runs' `conf.value`s are exactly the values sent: none lost, none doubled), one message per run
(distinct positions), and the drain time: the last run's `queued_at` minus the end of the last
fault. The DAG is paused by default (runs are created and stay queued, so Airflow keeps up); with
`dag_paused=False` and a high `max_active_runs` the scheduler executes them on this machine's
cores and Airflow falls behind.

    EVENTPIPELINE_STATE_DIR=/tmp/state-chaos .venv/bin/python bench/chaos/harness.py          # 10,000
    EVENTPIPELINE_STATE_DIR=/tmp/state-chaos .venv/bin/python bench/chaos/harness.py --unpaused \
        --max-active-runs 256 --messages 3000                                                  # overloaded

`tests/integration/chaos/test_chaos.py` runs `Plan.short()` (a few hundred messages, one fault of
each kind) in `make test`. Prints the outcome as JSON (and appends it to bench/chaos/results.jsonl).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import pulsar
from bench.chaos.kafka_writer import BrokerFaults, KafkaWriter
from bench.chaos.rig import BROKERS, Pipeline, Rig, parse_time
from tests.integration.listener.brokers import pulsar_client
from tests.integration.listener.conftest import Listener
from tests.integration.support import eventually

from eventpipeline_devenv.kafka import KafkaComponent
from eventpipeline_devenv.pulsar import PulsarComponent
from eventpipeline_devenv.runtime import Layout, recorded_processes, restart_process, tail

RESULTS = Path(__file__).resolve().parent / "results.jsonl"
BROKER_READY_SECONDS = 240.0


@dataclass(frozen=True)
class Plan:
    """What to send and which faults to inject."""

    kafka_messages: int = 6000
    pulsar_messages: int = 4000
    production_seconds: float = 600.0
    listener_kills: int = 10
    airflow_outages: int = 2
    airflow_outage_seconds: float = 20.0
    kafka_restarts: int = 1
    pulsar_restarts: int = 1
    # restart | freeze. A restarted Kafka keeps every SCRAM user since the stack formats its storage
    # with an anchor user (eventpipeline_devenv.kafka.SCRAM_ANCHOR_USER: the broker bug it works
    # around lost every login at about every other restart), see RESULTS.md.
    kafka_fault: str = "restart"
    pulsar_fault: str = "restart"
    broker_freeze_seconds: float = 20.0
    controller_kills: int = 2
    dag_paused: bool = True
    max_active_runs: int = 4
    max_in_flight: int = 8
    kafka_partitions: int = 4
    pulsar_partitions: int = 2
    drain_timeout_seconds: float = 1800.0

    @classmethod
    def short(cls) -> Plan:
        """One fault of each kind over a few hundred messages: the `make test` version."""
        return cls(
            kafka_messages=200,
            pulsar_messages=100,
            production_seconds=50,
            listener_kills=1,
            airflow_outages=1,
            airflow_outage_seconds=8,
            kafka_restarts=1,
            pulsar_restarts=1,
            kafka_fault="restart",
            pulsar_fault="restart",
            controller_kills=1,
            drain_timeout_seconds=240,
        )

    def faults(self) -> list[str]:
        """The faults in the order they run: the listener kills spread between the others."""
        others = (
            ["airflow"] * self.airflow_outages
            + ["kafka"] * self.kafka_restarts
            + ["controller"] * self.controller_kills
            + ["pulsar"] * self.pulsar_restarts
        )
        kills = ["listener"] * self.listener_kills
        order: list[str] = []
        while others or kills:
            if kills:
                order.append(kills.pop())
            if others:
                order.append(others.pop(0))
        return order


@dataclass
class Fault:
    kind: str
    started: float
    ended: float = 0.0
    note: str = ""


@dataclass
class PipelineOutcome:
    broker: str
    messages: int
    runs: int
    lost: int
    doubled: int
    positions_distinct: bool
    last_run_at: float


@dataclass
class Outcome:
    plan: dict[str, Any]
    faults: list[Fault] = field(default_factory=list)
    pipelines: list[PipelineOutcome] = field(default_factory=list)
    produced_until: float = 0.0
    last_fault_end: float = 0.0
    drain_seconds: float | None = None
    listener_errors: list[str] = field(default_factory=list)
    # What the harness's Kafka producer had to repair (its client given up, missing values produced
    # again): the harness's side, not the operator's. See kafka_writer.py.
    producer_repairs: list[str] = field(default_factory=list)
    failure: str | None = None
    listener_log: list[str] = field(default_factory=list)  # its last lines, when something failed
    load: list[float] = field(default_factory=list)  # the machine's 1-minute load average, every 3 s

    @property
    def exactly_once(self) -> bool:
        return bool(self.pipelines) and all(
            p.runs == p.messages and not p.lost and not p.doubled and p.positions_distinct for p in self.pipelines
        )


# -- producing -------------------------------------------------------------------------------------


def values(pipeline: Pipeline, count: int) -> list[str]:
    return [f"{pipeline.name}-{index}" for index in range(count)]


def paced(count: int, seconds: float) -> Iterator[int]:
    """0 … count-1, each at its due time over `seconds`."""
    started = time.monotonic()
    for index in range(count):
        time.sleep(max(0.0, started + index * seconds / count - time.monotonic()))
        yield index


def produce_kafka(writer: KafkaWriter, sent: list[str], seconds: float, errors: list[str]) -> None:
    """Each value once on the topic, whatever the broker's restart does to the client (`KafkaWriter`)."""
    try:
        for index in paced(len(sent), seconds):
            writer.send(index, sent[index])
        writer.finish()
    except Exception as error:  # a dead producer thread must not pass for a quiet one
        errors.append(f"kafka producer: {type(error).__name__}: {error}")
    errors.extend(writer.errors)


def produce_pulsar(pipeline: Pipeline, sent: list[str], seconds: float, errors: list[str]) -> None:
    """Asynchronous sends that the client holds and resends across a broker restart; the topic
    deduplicates by producer sequence id (enabled by the harness), so a resend is not a second message."""
    client = pulsar_client(pipeline.producer)
    try:
        producer = client.create_producer(
            pipeline.topic, batching_enabled=False, send_timeout_millis=0, block_if_queue_full=True
        )

        def delivered(result: Any, _message_id: Any) -> None:
            if result != pulsar.Result.Ok:
                errors.append(f"pulsar delivery: {result}")

        for index in paced(len(sent), seconds):
            producer.send_async(sent[index].encode(), delivered, partition_key=str(index % 16))
        producer.flush()
        producer.close()
    finally:
        client.close()


def enable_pulsar_deduplication(rig: Rig, pipeline: Pipeline) -> None:
    """Broker-side deduplication on the pipeline's topic, with the admin token."""
    path = "/admin/v2/persistent/" + pipeline.topic.removeprefix("persistent://") + "/deduplicationEnabled"
    response = httpx.post(
        rig.exports["PULSAR_ADMIN_URL"] + path,
        json=True,
        headers={"Authorization": f"Bearer {rig.exports['PULSAR_ADMIN_TOKEN']}"},
        timeout=30,
    )
    assert response.status_code in (200, 204), f"deduplication on {pipeline.topic}: HTTP {response.status_code}"


# -- faults ----------------------------------------------------------------------------------------


def stack_pid(name: str) -> int:
    record = next(r for r in recorded_processes(Layout.from_environment()) if r.name == name)
    return record.pid


@contextmanager
def frozen(name: str) -> Iterator[None]:
    """SIGSTOP a stack process's group, SIGCONT it whatever happens."""
    pid = stack_pid(name)
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


class Injector:
    """Runs one fault at a time and records when it started and ended."""

    def __init__(self, rig: Rig, listener: Listener, plan: Plan, broker_faults: BrokerFaults) -> None:
        self.rig, self.listener, self.plan, self.broker_faults = rig, listener, plan, broker_faults
        self.layout = Layout.from_environment()

    def run(self, kind: str) -> Fault:
        fault = Fault(kind, time.time())
        action: dict[str, Callable[[], str]] = {
            "listener": self.kill_listener,
            "controller": self.kill_controller,
            "airflow": self.airflow_down,
            "kafka": lambda: self.broker("kafka"),
            "pulsar": lambda: self.broker("pulsar"),
        }
        fault.note = action[kind]()
        fault.ended = time.time()
        return fault

    def kill_listener(self) -> str:
        self.listener.kill()
        time.sleep(1)
        self.listener.start()
        return "SIGKILL, started again after 1 s"

    def kill_controller(self) -> str:
        operator = self.rig.operator
        assert operator is not None, "the rig runs no controller"
        operator.kill()
        time.sleep(1)
        operator.start()
        return "SIGKILL, started again after 1 s"

    def airflow_down(self) -> str:
        with frozen("airflow-api-server"):
            time.sleep(self.plan.airflow_outage_seconds)
        return f"api-server SIGSTOP for {self.plan.airflow_outage_seconds:.0f} s"

    def broker(self, name: str) -> str:
        with self.broker_faults.during(name):
            return self._broker(name)

    def _broker(self, name: str) -> str:
        if (self.plan.kafka_fault if name == "kafka" else self.plan.pulsar_fault) == "freeze":
            with frozen(name):
                time.sleep(self.plan.broker_freeze_seconds)
            return f"SIGSTOP for {self.plan.broker_freeze_seconds:.0f} s"
        restart_process(self.layout, name)
        component = KafkaComponent() if name == "kafka" else PulsarComponent()
        eventually(
            lambda: component.healthy(self.rig.exports),
            timeout=BROKER_READY_SECONDS,
            interval=1,
            what=f"{name} to answer again",
        )
        return "SIGTERM, started again with the same data; healthy again"


def run_faults(injector: Injector, plan: Plan, outcome: Outcome, started: float) -> None:
    kinds = plan.faults()
    gap = plan.production_seconds / max(1, len(kinds))
    for index, kind in enumerate(kinds):
        due = started + (index + 0.5) * gap
        time.sleep(max(0.0, due - time.monotonic()))
        fault = injector.run(kind)
        outcome.faults.append(fault)
        print(f"  fault {index + 1}/{len(kinds)} {kind}: {fault.ended - fault.started:.1f} s", file=sys.stderr)


# -- counting --------------------------------------------------------------------------------------


def check(rig: Rig, dag_id: str, pipeline: Pipeline, sent: list[str]) -> PipelineOutcome:
    """One run per message and one message per run, from the runs' conf."""
    runs = rig.runs(dag_id, pipeline)
    seen = Counter(str(run["conf"]["value"]) for run in runs.values())
    positions = {
        (run["conf"].get("partition"), run["conf"].get("offset"), run["conf"].get("messageId")) for run in runs.values()
    }
    return PipelineOutcome(
        broker=pipeline.broker.name,
        messages=len(sent),
        runs=len(runs),
        lost=len(set(sent) - set(seen)),
        doubled=sum(count - 1 for count in seen.values() if count > 1),
        positions_distinct=len(positions) == len(runs),
        last_run_at=max((parse_time(run["queued_at"]) for run in runs.values()), default=0.0),
    )


def wait_drained(rig: Rig, dag_id: str, expected: dict[str, tuple[Pipeline, int]], timeout: float) -> None:
    """Until every pipeline has as many runs as messages (or more: then the check says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = {key: rig.run_count(dag_id, pipeline) for key, (pipeline, _) in expected.items()}
        if all(count is not None and count >= expected[key][1] for key, count in counts.items()):
            return
        time.sleep(2)
    raise TimeoutError(f"not every message had its run after {timeout:.0f} s: {counts}")


class StatusWatch:
    """Samples status.listener of the pipelines every few seconds; keeps each distinct error once."""

    def __init__(self, rig: Rig, pipelines: list[Pipeline]) -> None:
        self.rig, self.pipelines = rig, pipelines
        self.errors: dict[str, float] = {}
        self.load: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _read(self, pipeline: Pipeline) -> dict[str, Any]:
        try:
            return self.rig.kube.get_pipeline(pipeline.namespace, pipeline.name) or {}
        except Exception as error:  # the API server is not under test: a skipped sample
            print(f"  status sample of {pipeline.key} skipped: {type(error).__name__}", file=sys.stderr)
            return {}

    def _run(self) -> None:
        while not self._stop.wait(3):
            self.load.append(os.getloadavg()[0])
            for pipeline in self.pipelines:
                body = self._read(pipeline)
                error = (body.get("status", {}).get("listener") or {}).get("error")
                if error:
                    self.errors.setdefault(f"{pipeline.broker.name}: {error}", time.time())


# -- the run ---------------------------------------------------------------------------------------


def run(rig: Rig, plan: Plan, dag_id: str | None = None) -> Outcome:
    """Create the pipelines, produce under faults, wait for the runs, count them. Never raises for a
    failed expectation: the outcome says what happened (the test asserts on it)."""
    outcome = Outcome(plan=asdict(plan))
    if dag_id is None:
        dag_id = rig.dag(paused=plan.dag_paused, max_active_runs=plan.max_active_runs)
    kafka = rig.pipeline(
        BROKERS["kafka"], "kafka", dag_id, partitions=plan.kafka_partitions, max_in_flight=plan.max_in_flight
    )
    pulsar_pipeline = rig.pipeline(
        BROKERS["pulsar"], "pulsar", dag_id, partitions=plan.pulsar_partitions, max_in_flight=plan.max_in_flight
    )
    enable_pulsar_deduplication(rig, pulsar_pipeline)
    sent = {
        kafka.key: values(kafka, plan.kafka_messages),
        pulsar_pipeline.key: values(pulsar_pipeline, plan.pulsar_messages),
    }
    listener = rig.listener(kafka, pulsar_pipeline, name="listener-chaos")
    listener.start()
    broker_faults = BrokerFaults()
    injector = Injector(rig, listener, plan, broker_faults)
    writer = KafkaWriter(
        kafka.producer,
        rig.exports,
        kafka.topic,
        plan.kafka_partitions,
        faults=broker_faults,
        log_path=Layout.from_environment().log_path(f"chaos-kafka-producer-{rig.namespace}"),
    )
    errors: list[str] = []
    producers = [
        threading.Thread(target=produce_kafka, args=(writer, sent[kafka.key], plan.production_seconds, errors)),
        threading.Thread(
            target=produce_pulsar, args=(pulsar_pipeline, sent[pulsar_pipeline.key], plan.production_seconds, errors)
        ),
    ]
    started, started_at = time.monotonic(), time.time()
    with StatusWatch(rig, [kafka, pulsar_pipeline]) as watch:
        for thread in producers:
            thread.start()
        try:
            run_faults(injector, plan, outcome, started)
        finally:
            for thread in producers:
                thread.join()
        outcome.produced_until = time.time()
        outcome.last_fault_end = max(fault.ended for fault in outcome.faults) if outcome.faults else time.time()
        expected = {
            kafka.key: (kafka, plan.kafka_messages),
            pulsar_pipeline.key: (pulsar_pipeline, plan.pulsar_messages),
        }
        try:
            wait_drained(rig, dag_id, expected, plan.drain_timeout_seconds)
        except TimeoutError as error:
            outcome.failure = str(error)
        time.sleep(5)  # anything doubled arrives now, or not at all
    outcome.listener_errors = [f"+{at - started_at:.0f} s {text}" for text, at in watch.errors.items()]
    outcome.producer_repairs = writer.repairs
    outcome.load = watch.load
    if errors:
        outcome.failure = (outcome.failure or "") + f" producer errors: {errors[:5]}"
    if outcome.failure is not None:  # what the listener said last: the first thing to read in CI's output
        outcome.listener_log = tail(listener.log_path, 60).splitlines()
    outcome.pipelines = [check(rig, dag_id, p, sent[p.key]) for p in (kafka, pulsar_pipeline)]
    last_run = max(p.last_run_at for p in outcome.pipelines)
    outcome.drain_seconds = round(last_run - outcome.last_fault_end, 1) if outcome.failure is None else None
    return outcome


def report(outcome: Outcome) -> dict[str, Any]:
    """The outcome as JSON-ready data, with the figures RESULTS.md quotes."""
    data = asdict(outcome)
    data["exactly_once"] = outcome.exactly_once
    data["faults"] = [
        {"kind": f.kind, "seconds": round(f.ended - f.started, 1), "note": f.note} for f in outcome.faults
    ]
    data["messages"] = sum(p.messages for p in outcome.pipelines)
    data["runs"] = sum(p.runs for p in outcome.pipelines)
    data["production_after_last_fault_s"] = round(outcome.produced_until - outcome.last_fault_end, 1)
    # Shared machine: other sessions' work loads it too, so every figure comes with the load.
    load = outcome.load or [os.getloadavg()[0]]
    data["load_average"] = {"min": min(load), "mean": round(sum(load) / len(load), 1), "max": max(load)}
    del data["load"]
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10000, help="in total; 60 %% Kafka, 40 %% Pulsar")
    parser.add_argument("--seconds", type=float, default=600, help="production window; faults spread over it")
    parser.add_argument("--short", action="store_true", help="the `make test` plan")
    parser.add_argument("--kafka-fault", choices=("restart", "freeze"), help="default: the plan's")
    parser.add_argument("--pulsar-fault", choices=("restart", "freeze"), help="default: the plan's")
    parser.add_argument("--unpaused", action="store_true", help="Airflow executes the runs (does not keep up)")
    parser.add_argument("--max-active-runs", type=int, default=4)
    parser.add_argument("--max-in-flight", type=int, default=8)
    args = parser.parse_args()
    if args.short:
        plan = Plan.short()
    else:
        kafka_messages = args.messages * 3 // 5
        plan = Plan(
            kafka_messages=kafka_messages,
            pulsar_messages=args.messages - kafka_messages,
            production_seconds=args.seconds,
            dag_paused=not args.unpaused,
            max_active_runs=args.max_active_runs,
            max_in_flight=args.max_in_flight,
        )
    if args.kafka_fault is not None:
        plan = dataclasses.replace(plan, kafka_fault=args.kafka_fault)
    if args.pulsar_fault is not None:
        plan = dataclasses.replace(plan, pulsar_fault=args.pulsar_fault)
    rig = Rig.open("chaos")
    try:
        outcome = run(rig, plan)
    finally:
        rig.close()
    data = report(outcome)
    with RESULTS.open("a") as results:
        results.write(json.dumps(data) + "\n")
    print(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
