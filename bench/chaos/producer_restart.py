"""The chaos harness's Kafka producer (`KafkaWriter`) across real Kafka restarts, on its own: does
the idempotent client deliver again after a restart, or does the writer have to repair it?

Each round produces `--per-round` values paced over `--seconds` to a fresh 4-partition topic (admin
credential) and restarts the stack's Kafka for real halfway (SIGTERM, same command and data, until
healthy), as the harness does. At the end the topic must hold every value exactly once. Prints one
JSON line per round: the restart's duration, the writer's repairs and errors, the topic's count.
The clients' librdkafka debug log: $EVENTPIPELINE_STATE_DIR/logs/chaos-producer-restart-<topic>.log.

    EVENTPIPELINE_STATE_DIR=/tmp/state-chaos .venv/bin/python bench/chaos/producer_restart.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.chaos.kafka_writer import BrokerFaults, KafkaWriter, read_values
from confluent_kafka.admin import AdminClient, NewTopic
from tests.integration.listener.brokers import kafka_admin_secret, kafka_admin_settings
from tests.integration.support import eventually

from eventpipeline_devenv import stack as devstack
from eventpipeline_devenv.kafka import KafkaComponent
from eventpipeline_devenv.runtime import Layout, restart_process

PARTITIONS = 4
READY_SECONDS = 240.0


def one_round(exports: dict[str, str], per_round: int, seconds: float) -> dict[str, object]:
    layout = Layout.from_environment()
    admin = AdminClient(kafka_admin_settings(exports))
    topic = f"chaos-restart-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(timeout=60)
    secret = kafka_admin_secret(exports)
    faults = BrokerFaults()
    log_path = layout.log_path(f"chaos-producer-restart-{topic}")
    writer = KafkaWriter(secret, exports, topic, PARTITIONS, faults=faults, log_path=log_path)
    values = [f"{topic}-{index}" for index in range(per_round)]

    def produce() -> None:
        started = time.monotonic()
        for index, value in enumerate(values):
            time.sleep(max(0.0, started + index * seconds / per_round - time.monotonic()))
            writer.send(index, value)
        writer.finish()

    thread = threading.Thread(target=produce)
    thread.start()
    time.sleep(seconds / 2)
    restart_started = time.monotonic()
    with faults.during("kafka"):
        restart_process(layout, "kafka")
        eventually(lambda: KafkaComponent().healthy(exports), timeout=READY_SECONDS, interval=1, what="kafka")
    restart_seconds = time.monotonic() - restart_started
    thread.join()
    finished = time.monotonic() - restart_started
    on_topic = read_values(exports, topic, PARTITIONS, timeout=180)
    admin.delete_topics([topic])[topic].result(timeout=60)
    return {
        "topic": topic,
        "values": per_round,
        "restart_s": round(restart_seconds, 1),
        "all_delivered_s_after_restart_began": round(finished, 1),
        "exactly_once_on_topic": on_topic == Counter(values),
        "repairs": writer.repairs,
        "errors": writer.errors,
        "load_average": os.getloadavg()[0],
        "log": str(log_path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    info = devstack.read_stack(Layout.from_environment())
    if info is None:
        raise SystemExit("no stack runs for this EVENTPIPELINE_STATE_DIR; start one with `eventpipeline dev up`")
    for _ in range(args.rounds):
        print(json.dumps(one_round(dict(info.exports), args.per_round, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
