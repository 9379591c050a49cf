"""A SIGKILLed listener, started again, resumes within seconds on both brokers — exactly once.

On Kafka this rests on static group membership (`group.instance.id`): the restarted consumer takes
the killed one's place and partitions at once, instead of waiting for the broker to expel it and
rebalance. On Pulsar, the Failover subscription hands the partitions over as soon as the killed
consumer's connection drops. `bench/listener/bench_restart.py` measures the same thing over more
messages; `bench/listener/RESULTS.md` has the figures.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.listener.broker_cases import BOTH, BrokerCase
from tests.integration.listener.conftest import Harness, wait_ready
from tests.integration.listener.test_messages_become_runs import assert_exactly, run_prefix, spec, values, wait_runs
from tests.integration.support import eventually

pytestmark = pytest.mark.integration
N = 20
# From the restarted listener answering on its metrics port to its first new run. Measured: 2-5 s on
# a loaded 2-core machine; a consumer that waits for the broker to expel its dead predecessor
# (session timeout, then a rebalance) took about 110 s.
RESUME_BOUND_SECONDS = 30


@BOTH
def test_a_restarted_listener_resumes_within_seconds_exactly_once(harness: Harness, broker: BrokerCase) -> None:
    h = harness
    kube, namespace, dag_id, airflow = h.kube, h.namespace, h.dag_id, h.airflow
    kube.create_pipeline(namespace, "resume", spec(broker.cluster_broker, dag_id))
    topic = wait_ready(kube, namespace, "resume")["status"]["topic"]
    producer = kube.secret(namespace, "resume.app.credentials")
    assert producer is not None
    prefix = run_prefix(namespace, "resume")
    listener = h.listener_factory(f"{namespace}/resume")
    first = values("before", N)
    broker.produce(producer, topic, first)
    wait_runs(airflow, dag_id, prefix, N)

    listener.kill()
    second = values("after", N)
    broker.produce(producer, topic, second)
    listener.start()  # returns once the new process answers on its metrics port
    up = time.monotonic()
    eventually(
        lambda: len(airflow.runs(dag_id, prefix)) > N,
        timeout=RESUME_BOUND_SECONDS,
        interval=0.5,
        what="the restarted listener's first run",
    )
    resumed = time.monotonic() - up
    wait_runs(airflow, dag_id, prefix, 2 * N, timeout=60)
    assert_exactly(airflow, dag_id, prefix, first + second)
    print(f"{broker.name}: resumed {resumed:.1f} s after the restarted listener was up")
