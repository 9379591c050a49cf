"""Benchmark-style run of the hostile property-based suite: 1,000 generated specs (issue 11, item 7).

The generator and the invariants are those of tests/integration/tenancy/test_hostile_specs.py
(`tests/integration/tenancy/hostile.py`); `make test` runs a bounded number of them, this script
the full count, on a stack of its own and the controller as a local process:

    EVENTPIPELINE_STATE_DIR=/tmp/state-hostile .venv/bin/python bench/tenancy/hostile_specs.py --examples 1000

It records: examples run, refused at admission vs ended in a condition (counts per Ready reason),
operator crashes, stuck finalizers, victim changes, namespaces left behind, secret-scan findings,
and the total time. Printed as JSON and appended to bench/tenancy/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Run as a script from the repository: the shared generator lives in the tests package.
sys.path.insert(0, str(HERE.parent.parent))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from kubernetes import config  # noqa: E402
from tests.integration.conftest import OperatorProcess  # noqa: E402
from tests.integration.secret_scan import SecretScan, process_logs  # noqa: E402
from tests.integration.support import Kube  # noqa: E402
from tests.integration.tenancy import hostile  # noqa: E402

from eventpipeline_devenv import stack  # noqa: E402
from eventpipeline_devenv.runtime import Layout, Reporter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=1000, help="generated specs in all")
    parser.add_argument("--batch", type=int, default=20, help="specs applied at once in one namespace")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="leave the stack running (it is reused when it ran before)")
    args = parser.parse_args()

    layout, report = Layout.from_environment(), Reporter()
    already_running = stack.running_stack(layout) is not None
    info = stack.up(layout, report)
    exports = info.exports
    kube = Kube(config.new_client_from_config(config_file=exports["KUBECONFIG"]))
    operator = OperatorProcess(dict(exports), layout.log_path("bench-hostile-operator"))
    scan = SecretScan(kube, exports)
    scan.start()
    started = time.monotonic()
    totals: dict[str, Any] = {"examples": 0, "refused": 0, "settled": 0, "crashes": 0, "stuck": 0, "victim": 0}
    outcomes: Counter[str] = Counter()
    example_messages: dict[str, str] = {}  # one message per outcome, for the results page
    problems: list[str] = []
    namespaces: list[str] = []
    victim = hostile.create_victim(kube, exports)
    try:

        @settings(
            max_examples=math.ceil(args.examples / args.batch),
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @seed(args.seed)
        @given(data=st.data())
        def one_batch(data: st.DataObject) -> None:
            alive = lambda: operator.poll() is None  # noqa: E731
            namespace, cases, batch = hostile.apply_generated_batch(
                kube, exports, victim, data, size=args.batch, operator_alive=alive
            )
            namespaces.append(namespace)
            totals["examples"] += len(cases)
            totals["refused"] += batch.refused
            totals["settled"] += batch.settled
            totals["stuck"] += batch.stuck_finalizers
            totals["victim"] += batch.victim_changes
            outcomes.update(batch.outcomes)
            for _case, outcome in batch.by_case:
                key, _, message = outcome.partition(": ")
                example_messages.setdefault(key if key.startswith("Ready=") else "refused", message[:240])
            problems.extend(batch.problems)
            if batch.operator_crashed:
                totals["crashes"] += 1
                operator.start()
            report.step(
                "bench",
                f"{totals['examples']} specs in {time.monotonic() - started:.0f}s: {totals['refused']} refused, "
                f"{totals['settled']} settled, {len(problems)} problems",
            )

        one_batch()
        left = hostile.namespaces_left(kube, namespaces, timeout=300)
        elapsed = time.monotonic() - started
    finally:
        hostile.remove_victim(kube, exports, victim)
        operator.stop()
        scan.stop()
    leaks = scan.leaks(process_logs(layout.state_dir / "logs"))
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **totals,
        "batch": args.batch,
        "seed": args.seed,
        "outcomes": dict(outcomes.most_common()),
        "example_messages": example_messages,
        "namespaces_left": len(left),
        "secret_values_scanned": len(scan.values),
        "texts_scanned": len(scan.texts),
        "secret_leaks": leaks,
        "problems": problems,
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(result, indent=2))
    with (HERE / "results.jsonl").open("a") as results:
        results.write(json.dumps(result) + "\n")
    if not already_running and not args.keep:
        stack.down(layout, report)


if __name__ == "__main__":
    main()
