"""Benchmark: the controller's idle cost, A/B, on pipelines that already exist.

Starts the controller once per variant and round on the same stack and the same pipelines (made
by `apply_many.py --keep`), lets its start-up wave (kopf resumes every object: one full
reconciliation each) and every pipeline's first drift check pass, then measures an idle window:
CPU seconds, drift checks (the scheduler's `drift` runs; for code before that counter, the
claims listing each check made) and backend calls per check. Variants alternate round by round,
so both see the same machine load as far as it can be had on a shared machine.

    .venv/bin/python bench/operator/idle_ab.py --state-dir /tmp/state-x \\
        --variant before=/tmp/tree-before/operator --variant after=/tmp/tree-after/operator \\
        --rounds 2 --resync-seconds 20 --idle-seconds 60

A variant is `label=path` (a tree's `operator` folder, put first on PYTHONPATH) or `label=` (the
installed package). Results are printed as JSON and appended to bench/operator/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apply_many import GROUP, HERE, VERSION, backend_calls, calls_between, cpu_seconds, drift_runs, rss_bytes

from eventpipeline_devenv import stack
from eventpipeline_devenv.runtime import Layout, Reporter, free_port


def drift_checks(metrics_port: int) -> float:
    """Drift checks so far: the counter, or (older code) one claims listing per reconciliation
    less the start-up wave's (the caller subtracts it)."""
    runs = drift_runs(metrics_port)
    return runs if runs is not None else backend_calls(metrics_port).get("kubernetes._list", 0.0)


def one_round(
    variant: tuple[str, str], exports: dict[str, str], layout: Layout, args: argparse.Namespace, pipelines: int
) -> dict[str, Any]:
    label, path = variant
    metrics_port = free_port()
    env = {**os.environ, **exports, "EVENTPIPELINE_RESYNC_SECONDS": str(args.resync_seconds)}
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = path
    log = layout.log_path(f"idle-ab-{label}").open("ab")
    operator = subprocess.Popen(
        [sys.executable, "-m", "eventpipeline.cli", "run", "--metrics-port", str(metrics_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        started = time.monotonic()
        # Warm: the start-up wave done and every pipeline checked for drift once (older code: its
        # claims listings are the wave's N plus one per check).
        while True:
            assert operator.poll() is None, "the operator exited"
            time.sleep(2)
            try:
                runs = drift_runs(metrics_port)
                listings = backend_calls(metrics_port).get("kubernetes._list", 0.0)
            except httpx.HTTPError:
                continue
            warm = runs >= pipelines if runs is not None else listings >= 2 * pipelines
            if warm or time.monotonic() - started > 900:
                break
        load_at_start = [round(value, 1) for value in os.getloadavg()]
        calls_before, cpu_before = backend_calls(metrics_port), cpu_seconds(operator.pid)
        checks_before = drift_checks(metrics_port)
        time.sleep(args.idle_seconds)
        checks = drift_checks(metrics_port) - checks_before
        cpu = cpu_seconds(operator.pid) - cpu_before
        calls = calls_between(calls_before, backend_calls(metrics_port))
        kubernetes = sum(value for key, value in calls.items() if key.startswith("kubernetes."))
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bench": "idle_ab",
            "variant": label,
            "operator_source": f"PYTHONPATH={path}" if path else "installed",
            "pipelines": pipelines,
            "warm_up_seconds": round(time.monotonic() - started - args.idle_seconds, 1),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(value, 1) for value in os.getloadavg()],
            "resync_seconds": args.resync_seconds,
            "idle_window_seconds": args.idle_seconds,
            "idle_cpu_percent_of_one_core": round(100 * cpu / args.idle_seconds, 2),
            "drift_checks": int(checks),
            "cpu_ms_per_drift_check": round(1000 * cpu / max(checks, 1), 2),
            "kubernetes_calls_per_drift_check": round(kubernetes / max(checks, 1), 2),
            "idle_backend_calls": {key: int(value) for key, value in sorted(calls.items())},
            "operator_rss_mib": round(rss_bytes(operator.pid) / 2**20),
        }
    finally:
        operator.terminate()
        operator.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--variant", action="append", required=True, help="label=path of a tree's operator folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--resync-seconds", type=float, default=20)
    args = parser.parse_args()
    variants = [(label, path) for label, _, path in (variant.partition("=") for variant in args.variant)]

    os.environ["EVENTPIPELINE_STATE_DIR"] = args.state_dir
    layout = Layout.from_environment()
    report = Reporter()
    exports = dict(stack.up(layout, report, only=["kube", "kafka", "airflow"]).exports)
    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=exports["KUBECONFIG"]))
    pipelines = len(custom.list_cluster_custom_object(GROUP, VERSION, "eventpipelines")["items"])
    report.step("bench", f"{pipelines} pipelines; {len(variants)} variants x {args.rounds} rounds")
    for round_number in range(args.rounds):
        for label, path in variants:
            result = one_round((label, path), exports, layout, args, pipelines)
            result["round"] = round_number + 1
            report.step(
                "bench",
                f"{label} round {round_number + 1}: {result['idle_cpu_percent_of_one_core']} % of a core, "
                f"{result['drift_checks']} checks, {result['cpu_ms_per_drift_check']} ms CPU and "
                f"{result['kubernetes_calls_per_drift_check']} Kubernetes calls per check, "
                f"load {result['load_average_at_start']}",
            )
            print(json.dumps(result))
            with (HERE / "results.jsonl").open("a") as results:
                results.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
