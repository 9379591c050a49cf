"""How fast a listener resumes after a crash: N messages across one SIGKILL, on Kafka and Pulsar.

Per round and broker: a fresh pipeline (2 partitions) and a listener dedicated to it; half the
messages produced and some of them triggered, then the listener SIGKILLed (no final commit, no
goodbye to the broker), the other half produced, and the listener started again. Measured from the
restart (the moment the new process is launched):

- resume: until the first run created after the restart;
- drained: until the last run exists (Airflow's `queued_at`);

and checked: exactly one run per message (the values in the runs' conf are the values sent).
The DAG is paused, so Airflow only stores the runs (as in bench_listener.py).

    EVENTPIPELINE_STATE_DIR=/tmp/state-x .venv/bin/python bench/listener/bench_restart.py \
        --rounds 3 --kafka 300 --pulsar 150

Prints one JSON line per round and broker, then a summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script from the repository: the rig and the test helpers live in the repository's packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.chaos.rig import BROKERS, Pipeline, Rig, parse_time, values_of, wait_for_runs
from tests.integration.support import eventually

FIRST_RUNS_BEFORE_KILL = 10


def one_round(rig: Rig, dag_id: str, broker: str, messages: int, index: int) -> dict[str, Any]:
    case = BROKERS[broker]
    pipeline = rig.pipeline(case, f"restart-{broker}-{index:02d}", dag_id, partitions=2, max_in_flight=8)
    listener = rig.listener(pipeline, name=f"listener-restart-{broker}-{index}")
    listener.start()
    first = [f"{broker}-{index}-{n}" for n in range(messages // 2)]
    second = [f"{broker}-{index}-{n}" for n in range(messages // 2, messages)]
    case.produce(pipeline.producer, pipeline.topic, first)
    eventually(
        lambda: (rig.run_count(dag_id, pipeline) or 0) >= FIRST_RUNS_BEFORE_KILL,
        timeout=120,
        interval=0.2,
        what="the first runs",
    )
    listener.kill()
    before_kill = rig.run_count(dag_id, pipeline) or 0
    case.produce(pipeline.producer, pipeline.topic, second)
    restarted = time.time()
    listener.start()
    wait_for_runs(rig, dag_id, pipeline, messages, timeout=600)
    runs = rig.runs(dag_id, pipeline)
    listener.stop()
    assert values_of(runs) == sorted(first + second), f"{len(runs)} runs for {messages} messages"
    return summarize(pipeline, runs, restarted, before_kill)


def summarize(
    pipeline: Pipeline, runs: dict[str, dict[str, Any]], restarted: float, before_kill: int
) -> dict[str, Any]:
    queued = sorted(parse_time(run["queued_at"]) for run in runs.values())
    after = [moment for moment in queued if moment >= restarted]
    return {
        "broker": pipeline.broker.name,
        "messages": len(runs),
        "runs_before_kill": before_kill,
        "resume_s": round(after[0] - restarted, 2) if after else None,
        "drained_s": round(queued[-1] - restarted, 2),
        "exactly_once": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kafka", type=int, default=300, help="messages per Kafka round (0: skip Kafka)")
    parser.add_argument("--pulsar", type=int, default=150, help="messages per Pulsar round (0: skip Pulsar)")
    args = parser.parse_args()

    rig = Rig.open("restart")
    results: list[dict[str, Any]] = []
    try:
        dag_id = rig.dag(paused=True)
        for index in range(args.rounds):
            for broker, messages in (("kafka", args.kafka), ("pulsar", args.pulsar)):
                if messages:
                    result = one_round(rig, dag_id, broker, messages, index)
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        rig.close()
    for broker in BROKERS:
        mine = [r for r in results if r["broker"] == broker]
        if mine:
            drained = [r["drained_s"] for r in mine]
            resumed = [r["resume_s"] for r in mine if r["resume_s"] is not None]
            summary = {
                "broker": broker,
                "rounds": len(mine),
                "drained_s": drained,
                "drained_median_s": statistics.median(drained),
                "resume_s": resumed,
            }
            print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
