"""How long a Kafka consumer that replaces a SIGKILLed one waits for its partitions, per group protocol.

The broker-side part of a listener restart, without the listener: consumer A joins a group on a
2-partition topic with messages and takes one; A is SIGKILLed (no LeaveGroup, no commit); consumer
B, configured the same, is created and timed from its creation to its first message. Variants:

- `classic`: the classic protocol, dynamic membership — B waits until the broker expels A
  (session timeout) before the rebalance can hand out A's partitions;
- `classic-static`: the classic protocol with `group.instance.id` — B takes A's place at once
  (what the listener configures);
- `consumer`, `consumer-static`: Kafka 4's consumer group protocol (KIP-848, `group.protocol=consumer`;
  the session timeout is the broker's `group.consumer.session.timeout.ms`), without / with
  `group.instance.id`.

As the stack's admin (the protocol, not ACLs, is what is measured here):

    EVENTPIPELINE_STATE_DIR=/tmp/state-x .venv/bin/python bench/listener/bench_group_takeover.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from eventpipeline_devenv import stack as devstack
from eventpipeline_devenv.kafka import admin_config
from eventpipeline_devenv.runtime import Layout

SESSION_TIMEOUT_MS = 10000  # as the listener sets it (classic protocol)
GIVE_UP_SECONDS = 400.0
VARIANTS: dict[str, dict[str, Any]] = {
    "classic": {"session.timeout.ms": SESSION_TIMEOUT_MS},
    "classic-static": {"session.timeout.ms": SESSION_TIMEOUT_MS, "group.instance.id": "bench.worker"},
    "consumer": {"group.protocol": "consumer"},
    "consumer-static": {"group.protocol": "consumer", "group.instance.id": "bench.worker"},
}


def consumer_settings(exports: Mapping[str, str], group: str, variant: str) -> dict[str, Any]:
    return {
        **admin_config(exports),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **VARIANTS[variant],
    }


def child(settings: dict[str, Any], topic: str) -> None:
    """Consume until the first message; print the seconds from creation to it (null after
    GIVE_UP_SECONDS), then keep the membership until killed."""
    created = time.monotonic()
    fatal: list[str] = []

    def on_error(error: KafkaError) -> None:
        if error.fatal():
            fatal.append(f"{error.name()} after {time.monotonic() - created:.1f} s")

    consumer = Consumer({**settings, "error_cb": on_error})
    consumer.subscribe([topic])
    first: float | None = None
    while first is None and not fatal and time.monotonic() - created < GIVE_UP_SECONDS:
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            first = round(time.monotonic() - created, 2)
    print(json.dumps({"first_message_s": first, "fatal": fatal[0] if fatal else None}), flush=True)
    while True:  # keep the membership (heartbeats) until SIGKILLed
        consumer.poll(0.5)


def spawn(settings: dict[str, Any], topic: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start a child consumer; its process and what it reported (seconds to its first message, or a fatal error)."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(settings), topic],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"the child consumer exited ({process.wait()}) before its first message")
    report: dict[str, Any] = json.loads(line)
    return process, report


def takeover(exports: Mapping[str, str], topic: str, variant: str) -> dict[str, Any]:
    group = f"bench-takeover-{uuid.uuid4().hex[:8]}"
    settings = consumer_settings(exports, group, variant)
    first, first_report = spawn(settings, topic)
    first_s = first_report["first_message_s"]
    time.sleep(2)  # past the join: A heartbeats as a settled member
    print(f"  {variant}: A took its first message after {first_s} s; SIGKILL", file=sys.stderr)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second, second_report = spawn(settings, topic)
    second.send_signal(signal.SIGKILL)
    second.wait()
    return {
        "variant": variant,
        "first_join_s": first_s,
        "takeover_s": second_report["first_message_s"],
        "fatal": second_report["fatal"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child[0]), args.child[1])
        return
    info = devstack.read_stack(Layout.from_environment())
    if info is None:
        raise SystemExit("no stack is running; start one with `eventpipeline dev up`")
    exports = info.exports
    topic = f"bench-takeover-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(admin_config(exports))
    for future in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        future.result(30)
    producer = Producer(admin_config(exports))
    for index in range(100):
        producer.produce(topic, value=str(index).encode(), partition=index % 2)
    producer.flush(30)
    results: dict[str, list[float]] = {}
    try:
        for _ in range(args.rounds):
            for variant in args.variants.split(","):
                result = takeover(exports, topic, variant)
                if result["takeover_s"] is not None:
                    results.setdefault(variant, []).append(result["takeover_s"])
                print(json.dumps(result), flush=True)
    finally:
        for future in admin.delete_topics([topic]).values():
            future.result(30)
    for variant, times in results.items():
        print(json.dumps({"variant": variant, "takeover_s": times, "median_s": statistics.median(times)}))


if __name__ == "__main__":
    main()
