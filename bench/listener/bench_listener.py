"""Benchmark of the trigger listener on the local stack (`eventpipeline dev up` must be running).

Measures, in one run and against the same Airflow:

1. the ceiling: DAG runs per second a bare REST client (16 threads, one httpx client each)
   creates with `POST /api/v2/dags/{id}/dagRuns`;
2. the listener's maximum sustained rate: a backlog of messages on a Kafka topic drained by one
   listener replica, as DAG runs per second, and as a fraction of the ceiling;
2b. the same side by side (`--rounds`, default 4): segments of `--segment` runs by the bare client
   (at the ceiling's best parallelism) and by the listener (a burst of as many messages, maxInFlight
   the same), alternating B L B L … B; both rates from the runs' `queued_at` in Airflow, and each
   listener segment compared with the mean of the bare segments either side of it. The machine is
   shared, and the ceiling moves by tens of percent within a minute: adjacent segments are what
   can be compared;
3. message-to-run latency (produce time → the run's `queued_at` in Airflow), p50 and p99, with
   messages produced at half the ceiling for a while;
4. optionally (`--idle 1000`), the listener's RSS with that many idle pipelines: workers with a
   real Kafka consumer each, on their own consumer groups, in this process.

The DAG is paused, so Airflow only stores runs and does not execute them: the figures are about
creating runs, which is the listener's job, not about the scheduler's throughput on 2 cores.

    .venv/bin/python bench/listener/bench_listener.py [--backlog 600] [--rounds 4 --segment 300] \
        [--latency-seconds 60] [--idle 1000]

Prints a Markdown block to paste into RESULTS.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer
from kubernetes import client, config

from eventpipeline.adapters.kube import decode_secret_data
from eventpipeline.planning import delivery, naming
from eventpipeline.planning.delivery import Message
from eventpipeline_devenv import stack as devstack
from eventpipeline_devenv.airflow_api import AirflowApi, noop_dag, write_dag
from eventpipeline_devenv.clients import kafka_settings
from eventpipeline_devenv.runtime import Layout, free_port

GROUP, VERSION = "eventpipeline.dev", "v1alpha1"
BENCH_DAG_TAGS = ("eventpipeline-bench", "eventpipeline:*")  # any namespace may trigger it


class Airflow(AirflowApi):
    """The stack's Airflow API; `session()` gives each benchmark thread an HTTP client of its own."""

    def session(self) -> httpx.Client:
        return httpx.Client(base_url=self.exports["AIRFLOW_API_URL"], headers=self.headers(), timeout=60)


def wait(check: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def make_dag(airflow: Airflow, exports: Mapping[str, str]) -> str:
    dag_id = f"ep_bench_{uuid.uuid4().hex[:8]}"
    write_dag(exports["AIRFLOW_DAGS_FOLDER"], dag_id, noop_dag(dag_id, BENCH_DAG_TAGS))
    wait(lambda: airflow.dag_listed(dag_id), 180, f"Airflow to list {dag_id}")
    airflow.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True}).raise_for_status()
    return dag_id


# -- 1. the ceiling --------------------------------------------------------------------------


def trivial_body(prefix: str, index: int) -> dict[str, Any]:
    """The bare client's usual run: a small conf."""
    return {"dag_run_id": f"{prefix}{index}", "logical_date": None, "conf": {"i": index}}


def listener_body(topic: str) -> Callable[[str, int], dict[str, Any]]:
    """Runs as the listener asks for them (its run id shape and conf: topic, partition, offset, key,
    value, headers, timestamp), for a message like the benchmark's; `prefix` stands for the topic's
    incarnation, so the run ids are new."""

    def body(prefix: str, index: int) -> dict[str, Any]:
        message = Message(
            topic=topic, partition=index % 4, position=str(index),
            run_id=naming.kafka_run_id(topic, prefix.strip("_"), index % 4, index), key=str(index).encode(),
            value=json.dumps({"i": index}).encode(), headers=(), timestamp_ms=int(time.time() * 1000), offset=index,
        )  # fmt: skip
        return delivery.dag_run_body(message, "Kafka")

    return body


def ceiling(
    airflow: Airflow,
    dag_id: str,
    total: int,
    threads: int,
    *,
    prefix: str = "",
    body: Callable[[str, int], dict[str, Any]] = trivial_body,
) -> float:
    prefix = prefix or f"bare__{uuid.uuid4().hex[:6]}__"

    def create(chunk: range) -> int:
        with airflow.session() as http:
            for index in chunk:
                response = http.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body(prefix, index))
                # The api-server has 15 database connections (SQLAlchemy pool 5 + overflow 10);
                # above that concurrency a request waits 30 s and fails: the bare client must not.
                assert response.status_code == 200, response.text
        return len(chunk)

    chunks = [range(start, total, threads) for start in range(threads)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        created = sum(pool.map(create, chunks))
    return created / (time.monotonic() - started)


def stamped_rate(runs: Mapping[str, Mapping[str, Any]]) -> float:
    """Runs per second as Airflow stamped them: (n - 1) / (last queued_at - first queued_at)."""
    queued = sorted(parse_time(run["queued_at"]) for run in runs.values())
    return (len(queued) - 1) / max(queued[-1] - queued[0], 1e-3)


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# -- pipelines, operator, listener -----------------------------------------------------------


def start_process(args: list[str], exports: Mapping[str, str], name: str) -> subprocess.Popen[bytes]:
    log = Layout.from_environment().log_path(name).open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "eventpipeline.cli", *args], env={**os.environ, **exports}, stdout=log, stderr=log
    )


def create_pipeline(
    custom: client.CustomObjectsApi, namespace: str, name: str, dag_id: str, *, partitions: int, in_flight: int
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EventPipeline",
        "metadata": {"name": name},
        "spec": {
            "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
            "topic": {"partitions": partitions, "deletionPolicy": "Delete"},
            "producers": [{"name": "bench"}],
            "airflow": {"instanceRef": {"name": "local"}, "trigger": {"dagId": dag_id, "maxInFlight": in_flight}},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", body)


def ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", name)
    for condition in body.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] == "True":
            return dict(body)
    return None


def secret(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str]:

    data = core.read_namespaced_secret(name, namespace).data
    return decode_secret_data(data)


def producer_for(data: Mapping[str, str]) -> Producer:
    return Producer({**kafka_settings(data), "linger.ms": 5})


def runs_created(metrics_port: int, pipeline: str) -> int:
    """The listener's own count of runs created (Prometheus), polled instead of Airflow."""
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("eventpipeline_listener_runs_created_total") and f'pipeline="{pipeline}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def cleanup(custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str) -> None:
    """Delete the benchmark's pipelines (the operator removes topics, users, ACLs), then the namespace."""
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines")
    for item in listing["items"]:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", item["metadata"]["name"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines")["items"]:
            break
        time.sleep(2)
    core.delete_namespace(namespace)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- 2b. side by side ------------------------------------------------------------------------


def side_by_side(
    airflow: Airflow,
    dag_id: str,
    producer: Producer,
    *,
    topic: str,
    metrics_port: int,
    pipeline: str,
    args: argparse.Namespace,
    threads: int,
) -> dict[str, Any]:
    """Alternate bare-client and listener segments of `args.segment` runs; compare each listener
    segment with the bare segments either side of it (both rates from Airflow's queued_at)."""
    prefix = f"ep__{topic}__"
    seen = set(airflow.runs(dag_id, prefix, conf_contains=topic))
    created = runs_created(metrics_port, pipeline)

    def bare(body: Callable[[str, int], dict[str, Any]]) -> float:
        label = f"bare__{uuid.uuid4().hex[:6]}__"
        ceiling(airflow, dag_id, args.segment, threads, prefix=label, body=body)
        pattern = label if body is trivial_body else f"__{label.strip('_')}__"
        return stamped_rate(airflow.runs(dag_id, "", run_id_pattern=pattern))

    def listener() -> float:
        nonlocal created, seen
        for index in range(args.segment):
            producer.produce(topic, value=json.dumps({"i": index}).encode(), key=str(index).encode())
        producer.flush(60)
        created += args.segment
        wait(lambda: runs_created(metrics_port, pipeline) >= created, 600, "segment", interval=1.0)
        every = airflow.runs(dag_id, prefix, conf_contains=topic)
        new = {run_id: run for run_id, run in every.items() if run_id not in seen and "__bare__" not in run_id}
        assert len(new) == args.segment, f"{len(new)} runs for {args.segment} messages"
        seen = set(every)
        return stamped_rate(new)

    # Two bare clients: the usual small conf, and the very runs the listener asks for (its run id
    # shape and conf, which cost Airflow more to store and answer).
    same = listener_body(topic)
    trivial_rates, same_rates, listener_rates, loads = [bare(trivial_body)], [bare(same)], [], []
    for round_ in range(args.rounds):
        loads.append(load_average())
        listener_rates.append(listener())
        trivial_rates.append(bare(trivial_body))
        same_rates.append(bare(same))
        print(
            f"   round {round_ + 1}: listener {listener_rates[-1]:.1f} runs/s; bare small conf "
            f"{trivial_rates[-2]:.1f} / {trivial_rates[-1]:.1f}, bare listener's runs {same_rates[-2]:.1f} / "
            f"{same_rates[-1]:.1f} (load {loads[-1]:.1f})",
            file=sys.stderr,
        )

    def against(bare_rates: list[float]) -> dict[str, Any]:
        fractions = [rate / ((bare_rates[i] + bare_rates[i + 1]) / 2) for i, rate in enumerate(listener_rates)]
        return {
            "bare_runs_per_s": [round(rate, 1) for rate in bare_rates],
            "fractions": [round(fraction, 3) for fraction in fractions],
            "fraction_median": round(statistics.median(fractions), 3),
        }

    return {
        "parallel_requests": threads,
        "segment_runs": args.segment,
        "listener_runs_per_s": [round(rate, 1) for rate in listener_rates],
        "against_small_conf": against(trivial_rates),
        "against_listener_runs": against(same_rates),
        "load_average": loads,
    }


# -- 4. idle pipelines -----------------------------------------------------------------------


def idle_rss(exports: Mapping[str, str], count: int) -> tuple[float, float]:
    """RSS (MiB) of this process before and after starting `count` idle workers with real consumers
    (each its own consumer group on one empty topic, as the admin: 1,000 pipelines through the
    operator would mostly measure the operator)."""
    from confluent_kafka.admin import AdminClient, NewTopic  # noqa: PLC0415

    from eventpipeline.api.common import AirflowInstanceRef  # noqa: PLC0415
    from eventpipeline.api.pipeline import TriggerSpec  # noqa: PLC0415
    from eventpipeline.listener.service import make_source  # noqa: PLC0415
    from eventpipeline.listener.worker import Worker  # noqa: PLC0415
    from eventpipeline.planning.serving import PipelineConfig  # noqa: PLC0415

    def rss() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    admin = {
        "bootstrap.servers": exports["KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "username": exports["KAFKA_ADMIN_USER"],
        "password": exports["KAFKA_ADMIN_PASSWORD"],
    }
    topic = f"bench-idle-{uuid.uuid4().hex[:6]}"
    kafka_admin = AdminClient(
        {
            "bootstrap.servers": admin["bootstrap.servers"],
            "security.protocol": admin["security.protocol"],
            "sasl.mechanism": admin["sasl.mechanism"],
            "sasl.username": admin["username"],
            "sasl.password": admin["password"],
        }
    )
    for future in kafka_admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    before = rss()
    workers = []
    for index in range(count):
        pipeline = PipelineConfig(
            "bench-idle", f"idle-{index}", "", "Kafka", topic, None, f"bench-idle-{uuid.uuid4().hex[:6]}-{index}",
            "unused", "unused", TriggerSpec(dag_id="unused"), AirflowInstanceRef(name="local"),
        )  # fmt: skip
        worker = Worker(
            pipeline,
            replica="bench",
            source_factory=make_source,
            read_secret=lambda _ns, _name: (admin, "fixed"),
            resolve_trigger=lambda _ref, _ns: None,  # type: ignore[arg-type,return-value]
            emit_event=lambda *_: None,
        )
        worker.start()
        workers.append(worker)
    time.sleep(30)  # consumers join their groups and settle
    after = rss()
    stoppers = [concurrent.futures.ThreadPoolExecutor(32)]
    list(stoppers[0].map(lambda w: w.stop(5), workers))
    return before, after


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ceiling-runs", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=4, help="side-by-side listener segments (0: skip)")
    parser.add_argument("--segment", type=int, default=300, help="runs per side-by-side segment")
    parser.add_argument("--latency-seconds", type=int, default=60)
    parser.add_argument("--idle", type=int, default=0, help="idle pipelines for the RSS figure (0: skip)")
    parser.add_argument("--no-operator", action="store_true", help="an operator already runs against the stack")
    args = parser.parse_args()

    info = devstack.read_stack(Layout.from_environment())
    if info is None:
        raise SystemExit("no stack is running; start one with `eventpipeline dev up`")
    exports = info.exports
    api = config.new_client_from_config(config_file=exports["KUBECONFIG"])
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    airflow = Airflow(exports)
    dag_id = make_dag(airflow, exports)
    results: dict[str, Any] = {"dag": dag_id, "date": datetime.now(UTC).isoformat(timespec="seconds")}

    print(f"1. ceiling: {args.ceiling_runs} runs by a bare REST client, at 4, 8 and 12 in parallel…", file=sys.stderr)
    sweep = {threads: ceiling(airflow, dag_id, args.ceiling_runs, threads) for threads in (4, 8, 12)}
    best_threads = max(sweep, key=lambda threads: sweep[threads])
    ceiling_rate = sweep[best_threads]
    results["ceiling_sweep_runs_per_s"] = sweep
    results["ceiling_runs_per_s"] = ceiling_rate
    results["ceiling_parallel_requests"] = best_threads
    print(f"   {sweep} → {ceiling_rate:.1f} runs/s with {best_threads} in parallel", file=sys.stderr)

    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    processes: list[subprocess.Popen[bytes]] = []
    # A SIGTERM (a cut benchmark) ends the run through the `finally` below, not around it: the
    # operator and listener it started would otherwise go on against the stack.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if not args.no_operator:
            processes.append(start_process(["run", "--metrics-port", "0"], exports, "operator-bench"))
        # The listener gets the same parallelism as the best bare client.
        create_pipeline(custom, namespace, "drain", dag_id, partitions=4, in_flight=best_threads)
        create_pipeline(custom, namespace, "steady", dag_id, partitions=4, in_flight=best_threads)
        drain = wait(lambda: ready(custom, namespace, "drain"), 180, "pipeline drain Ready")
        steady = wait(lambda: ready(custom, namespace, "steady"), 180, "pipeline steady Ready")

        # 2. maximum sustained rate: a backlog drained by one listener replica.
        topic = drain["status"]["topic"]
        producer = producer_for(secret(core, namespace, "drain.bench.credentials"))
        for index in range(args.backlog):
            producer.produce(topic, value=json.dumps({"i": index}).encode(), key=str(index).encode())
        producer.flush(60)
        print(f"2. draining a backlog of {args.backlog} messages…", file=sys.stderr)
        metrics_port = free_port()
        processes.append(
            start_process(
                ["listen", "--metrics-port", str(metrics_port), "--dedicated", f"{namespace}/drain",
                 "--dedicated", f"{namespace}/steady"],
                exports,
                "listener-bench",
            )
        )  # fmt: skip
        prefix = f"ep__{topic}__"
        wait(lambda: runs_created(metrics_port, f"{namespace}/drain") >= args.backlog, 600, "backlog", interval=0.5)
        runs = airflow.runs(dag_id, prefix, conf_contains=topic)
        assert len(runs) == args.backlog, f"{len(runs)} runs for {args.backlog} messages"
        queued = sorted(parse_time(run["queued_at"]) for run in runs.values())
        # From the 5th run on: the first ones include the consumer joining its group.
        window = queued[-1] - queued[4]
        rate = (len(queued) - 5) / window
        # The machine is shared: measure the ceiling again right after, and compare with the mean.
        after = ceiling(airflow, dag_id, args.ceiling_runs, best_threads)
        ceiling_rate = (ceiling_rate + after) / 2
        results["ceiling_after_runs_per_s"] = after
        results["ceiling_mean_runs_per_s"] = ceiling_rate
        results["listener_runs_per_s"] = rate
        results["fraction_of_ceiling"] = rate / ceiling_rate
        print(
            f"   {rate:.1f} runs/s; ceiling again {after:.1f}/s → {rate / ceiling_rate:.2f} of the mean",
            file=sys.stderr,
        )

        # 2b. side by side: bare client and listener segments alternating, B L B … L B.
        if args.rounds:
            results["side_by_side"] = side_by_side(
                airflow, dag_id, producer, topic=topic, metrics_port=metrics_port, pipeline=f"{namespace}/drain",
                args=args, threads=best_threads,
            )  # fmt: skip

        # 3. latency at half the ceiling, sustained.
        steady_topic = steady["status"]["topic"]
        producer = producer_for(secret(core, namespace, "steady.bench.credentials"))
        target = ceiling_rate / 2
        total = int(target * args.latency_seconds)
        print(f"3. {total} messages at {target:.1f}/s for {args.latency_seconds} s…", file=sys.stderr)
        sent: dict[int, float] = {}
        started = time.monotonic()
        for index in range(total):
            due = started + index / target
            time.sleep(max(0.0, due - time.monotonic()))
            sent[index] = time.time()
            producer.produce(steady_topic, value=json.dumps({"i": index}).encode(), key=str(index).encode())
            producer.poll(0)
        producer.flush(60)
        steady_prefix = f"ep__{steady_topic}__"
        wait(lambda: runs_created(metrics_port, f"{namespace}/steady") >= total, 300, "steady runs", interval=0.5)
        runs = airflow.runs(dag_id, steady_prefix, conf_contains=steady_topic)
        latencies = [
            parse_time(run["queued_at"]) - sent[json.loads(run["conf"]["value"])["i"]] for run in runs.values()
        ]
        results["latency_rate_per_s"] = target
        results["latency_messages"] = total
        results["latency_p50_ms"] = statistics.median(latencies) * 1000
        results["latency_p99_ms"] = percentile(latencies, 0.99) * 1000
        results["runs_for_messages"] = f"{len(runs)}/{total}"
        print(f"   p50 {results['latency_p50_ms']:.0f} ms, p99 {results['latency_p99_ms']:.0f} ms", file=sys.stderr)
    finally:
        # Listener first (it serves the pipelines), then the pipelines, while the operator runs.
        for process in processes[1:] if not args.no_operator else processes:
            process.terminate()
            process.wait(30)
        cleanup(custom, core, namespace)
        (Path(exports["AIRFLOW_DAGS_FOLDER"]) / f"{dag_id}.py").unlink(missing_ok=True)
        if not args.no_operator:
            processes[0].terminate()
            processes[0].wait(30)

    if args.idle:
        print(f"4. RSS with {args.idle} idle pipelines…", file=sys.stderr)
        before, after = idle_rss(exports, args.idle)
        results["idle_pipelines"] = args.idle
        results["idle_rss_mib_before"] = before
        results["idle_rss_mib_after"] = after
        print(f"   {before:.0f} MiB → {after:.0f} MiB", file=sys.stderr)

    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
