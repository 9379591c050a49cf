"""Benchmark: apply N EventPipelines at once and measure the controller.

Measures, on a stack of its own (kube + Kafka + Airflow, in its own state dir):
- time until all N pipelines are Ready, and the rate;
- the controller's peak RSS while converging;
- an idle window after convergence: CPU seconds used and backend calls made, over a full
  drift-check period, read from the controller's /proc entry and its Prometheus metrics.

    .venv/bin/python bench/operator/apply_many.py --pipelines 1000 --idle-seconds 330

Results are printed as JSON and appended to bench/operator/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from eventpipeline_devenv import stack
from eventpipeline_devenv.airflow_api import AirflowApi, noop_dag, write_dag
from eventpipeline_devenv.runtime import Layout, Reporter, free_port, recorded_processes

HERE = Path(__file__).resolve().parent
GROUP, VERSION = "eventpipeline.dev", "v1alpha1"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# The DAG the pipelines trigger; its tag lets pipelines of every namespace trigger it (DAG authorization).
BENCH_DAG = "bench"
BENCH_DAG_TAGS = ("eventpipeline-bench", "eventpipeline:*")
TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def memory_breakdown(pid: int) -> dict[str, int]:
    """The process's resident memory by kind, in MiB (anonymous is the heap: Python's and C's)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        if key in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean"):
            fields[key] = round(int(value.split()[0]) / 1024)
    return fields


def calls_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after if after[key] - before.get(key, 0.0) > 0}


def wait_for_metrics(metrics_port: int, operator: subprocess.Popen[bytes]) -> None:
    """Until the controller serves its metrics (its start takes seconds on a loaded machine)."""
    deadline = time.monotonic() + 120
    while True:
        assert operator.poll() is None, "the operator exited"
        try:
            backend_calls(metrics_port)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def operator_source() -> str:
    """Which code the controller runs: PYTHONPATH when the bench was pointed at another tree, else HEAD."""
    if os.environ.get("PYTHONPATH"):
        return f"PYTHONPATH={os.environ['PYTHONPATH']}"
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, cwd=HERE, capture_output=True, text=True
    )
    return head.stdout.strip()


def tree_cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process and its living descendants (Airflow's workers, ...)."""
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    owner = {pid: name for name, pid in roots.items()}
    totals = dict.fromkeys(roots, 0.0)
    for pid, seconds in used.items():
        ancestor, hops = pid, 0
        while ancestor not in owner and ancestor in parent and hops < 64:
            ancestor, hops = parent[ancestor], hops + 1
        if ancestor in owner:
            totals[owner[ancestor]] += seconds
    return totals


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def backend_calls(metrics_port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    calls: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(
            r'eventpipeline_backend_calls_total\{operation="(\w+)",outcome="\w+",system="(\w+)"\} (\S+)', line
        )
        if match:
            key = f"{match.group(2)}.{match.group(1)}"
            calls[key] = calls.get(key, 0.0) + float(match.group(3))
    return calls


def drift_runs(metrics_port: int) -> float | None:
    """The scheduler's drift checks so far; None for code without that counter (before 2026-12-01)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    match = re.search(r'^eventpipeline_scheduled_runs_total\{reason="drift"\} (\S+)', text, re.MULTILINE)
    if match:
        return float(match.group(1))
    return 0.0 if "eventpipeline_scheduled_runs_total" in text else None


def pipeline_spec(dead_letter: bool = True) -> dict[str, Any]:
    trigger: dict[str, Any] = {"dagId": BENCH_DAG}
    if not dead_letter:
        trigger["deadLetter"] = {"enabled": False}
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-kafka"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "airflow": {"instanceRef": {"name": "local"}, "trigger": trigger},
    }


def ready_count(custom: client.CustomObjectsApi, namespace: str) -> int:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines")["items"]
    return sum(
        1
        for item in items
        if any(c["type"] == "Ready" and c["status"] == "True" for c in item.get("status", {}).get("conditions", []))
    )


def generation_two_count(custom: client.CustomObjectsApi, namespace: str) -> int:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines")["items"]
    return sum(
        1
        for item in items
        if all(p["generation"] >= 2 for p in item.get("status", {}).get("principals", []) or [{"generation": 0}])
    )


def kafka_calls(metrics_port: int) -> float:
    return sum(value for key, value in backend_calls(metrics_port).items() if key.startswith("kafka."))


def rotation_wave(
    custom: client.CustomObjectsApi, namespace: str, metrics_port: int, pipelines: int, report: Reporter
) -> dict[str, Any]:
    """Annotate every pipeline to rotate at once; time to all rotated and peak broker admin calls/s."""
    started = time.monotonic()
    patch = {"metadata": {"annotations": {"eventpipeline.dev/rotate": str(time.time())}}}
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, "eventpipelines", f"p{i:04d}", patch
                ),
                range(pipelines),
            )
        )
    peak, previous, last_sample = 0.0, kafka_calls(metrics_port), time.monotonic()
    rotated = 0
    while rotated < pipelines and time.monotonic() - started < 1800:
        time.sleep(1)
        now, calls = time.monotonic(), kafka_calls(metrics_port)
        peak = max(peak, (calls - previous) / (now - last_sample))
        previous, last_sample = calls, now
        if int(now - started) % 5 == 0:
            rotated = generation_two_count(custom, namespace)
            report.step(
                "bench", f"{rotated}/{pipelines} rotated after {now - started:.0f}s, peak {peak:.0f} Kafka calls/s"
            )
    elapsed = time.monotonic() - started
    return {"rotated": rotated, "seconds": round(elapsed, 1), "peak_kafka_admin_calls_per_second": round(peak, 1)}


def ensure_bench_dag(exports: dict[str, str], report: Reporter) -> None:
    """The bench DAG in Airflow, paused, once Airflow lists it with its tags (else no pipeline is Ready)."""
    airflow = AirflowApi(exports)
    write_dag(exports["AIRFLOW_DAGS_FOLDER"], BENCH_DAG, noop_dag(BENCH_DAG, BENCH_DAG_TAGS))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        response = airflow.request("GET", f"/api/v2/dags/{BENCH_DAG}")
        if response.status_code == 200 and {t["name"] for t in response.json()["tags"]} == set(BENCH_DAG_TAGS):
            airflow.request("PATCH", f"/api/v2/dags/{BENCH_DAG}", json={"is_paused": True}).raise_for_status()
            return
        report.step("bench", f"waiting for Airflow to list DAG {BENCH_DAG}")
        time.sleep(5)
    raise SystemExit(f"Airflow did not list DAG {BENCH_DAG} within 10 minutes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=330)
    parser.add_argument("--resync-seconds", type=float, default=300)
    parser.add_argument("--state-dir", default=str(Path.home() / ".local/state/eventpipeline/bench"))
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running")
    parser.add_argument("--rotate-wave", action="store_true", help="then rotate every pipeline's credentials at once")
    parser.add_argument(
        "--max-admin-calls-per-second",
        type=float,
        help="set local-kafka's maxAdminCallsPerSecond for this run (default: leave the broker's own, 50)",
    )
    parser.add_argument(
        "--no-dead-letter",
        action="store_true",
        help="pipelines without a dead-letter topic: one partition each instead of two. The local Kafka "
        "keeps a file open per partition, and this machine's hard limit of 20,000 open files per process "
        "stops one broker short of 10,000 pipelines with their dead-letter topics",
    )
    parser.add_argument("--label", default="", help="a note recorded with the result (what this run compares)")
    args = parser.parse_args()
    load_at_start = [round(value, 1) for value in os.getloadavg()]

    os.environ["EVENTPIPELINE_STATE_DIR"] = args.state_dir
    layout = Layout.from_environment()
    report = Reporter()
    info = stack.up(layout, report, only=["kube", "kafka", "airflow"])
    exports = info.exports
    ensure_bench_dag(dict(exports), report)
    api = config.new_client_from_config(config_file=exports["KUBECONFIG"])
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace = f"bench-{int(time.time())}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    # One namespace holds every bench pipeline: raise the broker's per-namespace partition quota
    # (256 by default, tenancy) the way a platform team would for one big tenant.
    quota: dict[str, Any] = {"spec": {"topicPolicy": {"maxPartitionsPerNamespace": max(256, 2 * args.pipelines)}}}
    if args.max_admin_calls_per_second:
        quota["spec"]["maxAdminCallsPerSecond"] = args.max_admin_calls_per_second
    custom.patch_cluster_custom_object(GROUP, VERSION, "clusterbrokers", "local-kafka", quota)
    admin_rate = custom.get_cluster_custom_object(GROUP, VERSION, "clusterbrokers", "local-kafka")["spec"].get(
        "maxAdminCallsPerSecond", 50
    )

    metrics_port = free_port()
    env = {**os.environ, **exports, "EVENTPIPELINE_RESYNC_SECONDS": str(args.resync_seconds)}
    log = layout.log_path("bench-operator").open("ab")
    operator = subprocess.Popen(
        [sys.executable, "-m", "eventpipeline.cli", "run", "--metrics-port", str(metrics_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    peak_rss = peak_threads = 0
    peak_memory: dict[str, int] = {}
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_threads, peak_memory
        while not stop.is_set():
            rss = rss_bytes(operator.pid)
            if rss > peak_rss:
                peak_rss, peak_memory = rss, memory_breakdown(operator.pid)
            peak_threads = max(peak_threads, threads(operator.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        wait_for_metrics(metrics_port, operator)
        sampler.start()
        report.step("bench", f"applying {args.pipelines} pipelines in {namespace}")
        calls_at_start, cpu_at_start = backend_calls(metrics_port), cpu_seconds(operator.pid)
        # Where the machine's CPU goes while the pipelines converge, by process of the stack.
        roots = {record.name: record.pid for record in recorded_processes(layout)} | {"controller": operator.pid}
        stack_cpu_at_start = tree_cpu_seconds(roots)
        started = time.monotonic()

        def create(index: int) -> None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "EventPipeline",
                "metadata": {"name": f"p{index:04d}"},
                "spec": pipeline_spec(dead_letter=not args.no_dead_letter),
            }
            for attempt in range(5):
                try:
                    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "eventpipelines", body)
                    return
                except ApiException as error:
                    if error.status == 409 or attempt == 4:
                        raise
                    time.sleep(1)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(args.pipelines)))
        applied = time.monotonic() - started
        report.step("bench", f"applied in {applied:.1f}s; waiting for Ready")
        ready = 0
        # Each poll lists every pipeline: at 10,000 that is tens of MB, so poll less often at scale.
        poll_seconds = max(5.0, args.pipelines / 500)
        give_up_after = max(1800.0, args.pipelines * 0.3)
        while ready < args.pipelines:
            assert operator.poll() is None, "the operator exited"
            time.sleep(poll_seconds)
            ready = ready_count(custom, namespace)
            report.step(
                "bench",
                f"{ready}/{args.pipelines} Ready after {time.monotonic() - started:.0f}s, "
                f"operator RSS {rss_bytes(operator.pid) / 2**20:.0f} MiB",
            )
            if time.monotonic() - started > give_up_after:
                break
        converged = time.monotonic() - started
        converging_rss = peak_rss
        converging_cpu = cpu_seconds(operator.pid) - cpu_at_start
        stack_cpu = tree_cpu_seconds(roots)
        converging_stack_cpu = {
            name: round(stack_cpu[name] - stack_cpu_at_start[name], 1)
            for name in sorted(roots, key=lambda name: stack_cpu_at_start[name] - stack_cpu[name])
        }
        creation_calls = calls_between(calls_at_start, backend_calls(metrics_port))
        rss_at_ready = memory_breakdown(operator.pid)
        report.step("bench", f"idle window of {args.idle_seconds:.0f}s (resync every {args.resync_seconds:.0f}s)")
        calls_before, cpu_before = backend_calls(metrics_port), cpu_seconds(operator.pid)
        drift_before = drift_runs(metrics_port)
        time.sleep(args.idle_seconds)
        calls_after, cpu_after = backend_calls(metrics_port), cpu_seconds(operator.pid)
        drift_after = drift_runs(metrics_port)
        idle_calls = calls_between(calls_before, calls_after)
        # The scheduler's drift runs; older code listed a pipeline's claims once per check.
        checks = (
            drift_after - drift_before
            if drift_after is not None and drift_before is not None
            else idle_calls.get("kubernetes._list", 0.0)
        )
        periods = args.idle_seconds / args.resync_seconds
        kafka_idle = {key: value for key, value in idle_calls.items() if key.startswith("kafka.")}
        result = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "label": args.label,
            "dead_letter_topics": not args.no_dead_letter,
            "operator_source": operator_source(),
            "malloc_arenas": os.environ.get("EVENTPIPELINE_MALLOC_ARENAS", "default (2)"),
            "workers": os.environ.get("EVENTPIPELINE_WORKERS", "default"),
            "max_admin_calls_per_second": admin_rate,
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(value, 1) for value in os.getloadavg()],
            "pipelines": args.pipelines,
            "ready": ready,
            "apply_seconds": round(applied, 1),
            "all_ready_seconds": round(converged, 1),
            "ready_per_second": round(ready / converged, 2),
            "operator_peak_rss_mib": round(converging_rss / 2**20),
            "operator_memory_at_peak_mib": peak_memory,
            "operator_memory_at_all_ready_mib": rss_at_ready,
            "operator_peak_threads": peak_threads,
            "converging_cpu_seconds": round(converging_cpu, 1),
            "converging_cpu_seconds_by_process": converging_stack_cpu,
            "creation_backend_calls_per_pipeline": {
                key: round(value / args.pipelines, 2) for key, value in sorted(creation_calls.items())
            },
            "creation_kafka_admin_calls_per_pipeline": round(
                sum(value for key, value in creation_calls.items() if key.startswith("kafka.")) / args.pipelines, 2
            ),
            "idle_window_seconds": args.idle_seconds,
            "resync_seconds": args.resync_seconds,
            "idle_cpu_seconds": round(cpu_after - cpu_before, 1),
            "idle_cpu_percent_of_one_core": round(100 * (cpu_after - cpu_before) / max(args.idle_seconds, 1e-9), 2),
            "idle_backend_calls": {key: int(value) for key, value in sorted(idle_calls.items())},
            "idle_backend_calls_per_pipeline": round(sum(idle_calls.values()) / max(ready, 1), 2),
            # One Kafka broker in this bench: its admin calls per drift period are the broker's.
            "kafka_admin_calls_per_drift_period": round(sum(kafka_idle.values()) / periods, 1),
            "airflow_calls_per_drift_period": round(
                sum(value for key, value in idle_calls.items() if key.startswith("airflow.")) / periods, 1
            ),
            "drift_checks_per_pipeline_per_period": round(checks / max(ready, 1) / periods, 2),
            "kubernetes_reads_per_drift_check": round(
                sum(value for key, value in idle_calls.items() if key.startswith("kubernetes.")) / max(checks, 1.0),
                1,
            ),
            "cpu_ms_per_drift_check": round(1000 * (cpu_after - cpu_before) / max(checks, 1.0), 2),
            "operator_rss_after_idle_mib": round(rss_bytes(operator.pid) / 2**20),
        }
        if args.rotate_wave:
            result["rotation_wave"] = rotation_wave(custom, namespace, metrics_port, args.pipelines, report)
        print(json.dumps(result, indent=2))
        with (HERE / "results.jsonl").open("a") as results:
            results.write(json.dumps(result) + "\n")
    finally:
        stop.set()
        operator.terminate()
        operator.wait(timeout=30)
        if not args.keep:
            stack.down(layout, report)


if __name__ == "__main__":
    main()
