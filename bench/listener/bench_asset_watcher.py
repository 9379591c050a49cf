"""The peer: Airflow's own Kafka AssetWatcher (KafkaMessageQueueTrigger) on the same local stack.

Measures what `bench_listener.py` measures for the listener, where it applies:

1. message-to-asset-event latency (produce time → the asset event's timestamp), p50 / p99, and
   how many DAG runs the events became (Airflow merges queued asset events into one run);
2. how many of N messages become asset events when the triggerer is SIGKILLed mid-stream and
   started again (the trigger commits the offset before Airflow stores the event).

The watcher reads with the credential of an EventPipeline's listener principal through the
Airflow connection the operator keeps (`airflow` without `trigger`, so no listener competes).

    .venv/bin/python bench/listener/bench_asset_watcher.py [--messages 100] [--rate 5]

Restarts the stack's triggerer with its recorded command and environment (the pid record is
rewritten, so `eventpipeline dev down` still stops it). Prints JSON for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_listener import (
    GROUP,
    VERSION,
    Airflow,
    cleanup,
    parse_time,
    percentile,
    producer_for,
    ready,
    secret,
    start_process,
    wait,
)
from kubernetes import client, config

from eventpipeline_devenv import stack as devstack
from eventpipeline_devenv.airflow_api import write_dag
from eventpipeline_devenv.runtime import Layout, restart_process

WATCHER_DAG = """\
from airflow.providers.apache.kafka.triggers.msg_queue import KafkaMessageQueueTrigger
from airflow.sdk import DAG, Asset, AssetWatcher, task

trigger = KafkaMessageQueueTrigger(
    topics=["{topic}"],
    kafka_config_id="{connection}",
    # No apply function: the trigger then emits the message value itself (a module of our own
    # would have to be importable by the triggerer's trigger runner, which the stack does not set up).
    apply_function="",
    poll_timeout=1,
    poll_interval=1,
)
asset = Asset("{dag_id}", watchers=[AssetWatcher(name="{dag_id}", trigger=trigger)])

with DAG(dag_id="{dag_id}", schedule=[asset], catchup=False, tags=["eventpipeline-bench"]):

    @task
    def noop() -> None:
        pass

    noop()
"""


def payloads(events: list[dict[str, Any]], phase: str) -> list[dict[str, Any]]:
    found = []
    for event in events:
        payload = (event.get("extra") or {}).get("payload")
        if not isinstance(payload, str) or not payload.startswith("{"):
            continue
        body = json.loads(payload)
        if body.get("phase") == phase:
            found.append({**body, "event_time": parse_time(event["timestamp"])})
    return found


def produce_paced(producer: Any, topic: str, phase: str, count: int, rate: float) -> None:
    started = time.monotonic()
    for index in range(count):
        time.sleep(max(0.0, started + index / rate - time.monotonic()))
        body = {"phase": phase, "i": index, "t": time.time()}
        producer.produce(topic, value=json.dumps(body).encode())
        producer.poll(0)
    producer.flush(30)


def settle(
    airflow: Airflow, asset: int, phase: str, expected: int, *, quiet: float = 60, limit: float = 900
) -> list[Any]:
    """Events of a phase once all arrived, or none came for `quiet` seconds (the watcher is slow)."""
    started = last_change = time.monotonic()
    seen: list[Any] = []
    while time.monotonic() - started < limit:
        now_seen = payloads(airflow.asset_events(asset), phase)
        if len(now_seen) != len(seen):
            seen, last_change = now_seen, time.monotonic()
        if len({(item["i"], item["t"]) for item in seen}) >= expected or time.monotonic() - last_change > quiet:
            break
        time.sleep(5)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second")
    parser.add_argument("--no-operator", action="store_true", help="an operator already runs against the stack")
    args = parser.parse_args()

    layout = Layout.from_environment()
    info = devstack.read_stack(layout)
    if info is None:
        raise SystemExit("no stack is running; start one with `eventpipeline dev up`")
    exports = info.exports
    api = config.new_client_from_config(config_file=exports["KUBECONFIG"])
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    airflow = Airflow(exports)
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "messages": args.messages}
    processes: list[subprocess.Popen[bytes]] = []
    namespace, dag_file = "", None
    try:
        if not args.no_operator:
            processes.append(start_process(["run", "--metrics-port", "0"], exports, "operator-bench-watcher"))
        namespace = f"bench-watch-{uuid.uuid4().hex[:6]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        pipeline = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EventPipeline",
            "metadata": {"name": "watched"},
            "spec": {
                "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
                "topic": {"partitions": 1, "deletionPolicy": "Delete"},
                "producers": [{"name": "bench"}],
                # A connection only: no trigger, so no listener reads this topic.
                "airflow": {"instanceRef": {"name": "local"}},
            },
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", pipeline)
        body = wait(lambda: ready(custom, namespace, "watched"), 180, "pipeline watched Ready")
        topic, connection = body["status"]["topic"], body["status"]["airflowConnection"]
        dag_id = f"ep_watcher_{uuid.uuid4().hex[:8]}"
        dags = Path(exports["AIRFLOW_DAGS_FOLDER"])
        text = WATCHER_DAG.format(topic=topic, connection=connection, dag_id=dag_id)
        dag_file = write_dag(dags, dag_id, text)

        def asset_id() -> int | None:
            with airflow.session() as http:
                found = http.get("/api/v2/assets", params={"name_pattern": dag_id}).json().get("assets", [])
            return next((int(asset["id"]) for asset in found if asset["name"] == dag_id), None)

        asset = wait(asset_id, 180, f"Airflow to register asset {dag_id}", interval=2)
        producer = producer_for(secret(core, namespace, "watched.bench.credentials"))
        print("warming up: waiting for the watcher to turn a first message into an event…", file=sys.stderr)
        produce_paced(producer, topic, "warmup", 1, 1.0)
        wait(lambda: payloads(airflow.asset_events(asset), "warmup"), 300, "the watcher's first event", interval=2)

        print(f"1. latency: {args.messages} messages at {args.rate}/s…", file=sys.stderr)
        produce_paced(producer, topic, "latency", args.messages, args.rate)
        seen = settle(airflow, asset, "latency", args.messages)
        latencies = [item["event_time"] - item["t"] for item in seen]
        results["latency_events"] = len(seen)
        results["latency_distinct_messages"] = len({item["i"] for item in seen})
        if latencies:
            results["latency_p50_ms"] = statistics.median(latencies) * 1000
            results["latency_p99_ms"] = percentile(latencies, 0.99) * 1000
        print(f"   {results}", file=sys.stderr)

        print(f"2. {args.messages} messages with a triggerer SIGKILL in the middle…", file=sys.stderr)
        half = args.messages // 2
        produce_paced(producer, topic, "crash", half, args.rate)
        restarted = restart_process(layout, "airflow-triggerer", sig=signal.SIGKILL)
        print(f"   triggerer killed and started again as pid {restarted.pid}", file=sys.stderr)
        produce_paced(producer, topic, "crash", args.messages - half, args.rate)  # same phase, new indexes below
        seen = settle(airflow, asset, "crash", args.messages)
        results["crash_events"] = len(seen)
        results["crash_distinct_messages"] = len({(item["i"], item["t"]) for item in seen})
        results["crash_lost"] = args.messages - results["crash_distinct_messages"]
        with airflow.session() as http:
            runs = http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1}).json()["total_entries"]
        results["dag_runs_for_all_events"] = runs
        results["events_total"] = len(airflow.asset_events(asset))
    finally:
        if namespace:
            cleanup(custom, core, namespace)
        if dag_file is not None:
            dag_file.unlink(missing_ok=True)  # stops the watcher's trigger
        for process in processes:
            process.terminate()
            process.wait(30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
