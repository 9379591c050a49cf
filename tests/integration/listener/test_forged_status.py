"""A tenant who can patch its pipeline's status points `status.topic` at another namespace's topic:
the listener takes the topic from the controller's hand-off Secret in its own namespace, so it
keeps consuming the tenant's own topic, and the victim's messages start no run of the tenant's DAG
(issue 11: nothing a tenant writes decides an identity)."""

from __future__ import annotations

import threading

import pytest

from eventpipeline.planning import handoff, naming
from tests.integration.listener.brokers import kafka_produce
from tests.integration.listener.conftest import Harness, listener_status, settle, wait_ready
from tests.integration.listener.test_messages_become_runs import assert_exactly, run_prefix, spec, values, wait_runs
from tests.integration.support import GROUP, VERSION, fresh_namespace

pytestmark = pytest.mark.integration


def test_a_forged_status_topic_never_moves_the_listener(harness: Harness) -> None:
    h = harness
    kube, namespace, dag_id, airflow = h.kube, h.namespace, h.dag_id, h.airflow
    with fresh_namespace(kube) as victim_namespace:
        kube.create_pipeline(victim_namespace, "victim", spec("local-kafka", dag_id))
        kube.create_pipeline(namespace, "thief", spec("local-kafka", dag_id))
        victim_topic = wait_ready(kube, victim_namespace, "victim")["status"]["topic"]
        own_topic = wait_ready(kube, namespace, "thief")["status"]["topic"]
        handed_over = kube.secret(naming.DEFAULT_LISTENER_NAMESPACE, naming.listener_secret_name(namespace, "thief"))
        assert handed_over is not None and handed_over[handoff.TOPIC_KEY] == own_topic

        # The tenant keeps pointing status.topic at the victim's topic (the controller reports its
        # own record again at each check, so the forgery is repeated for the whole test).
        stop = threading.Event()
        forgeries: list[str] = []

        def forge() -> None:
            while not stop.is_set():
                kube.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, "eventpipelines", "thief", {"status": {"topic": victim_topic}}
                )
                forgeries.append(victim_topic)
                stop.wait(0.5)

        forger = threading.Thread(target=forge, daemon=True)
        forger.start()
        try:
            settle(2)
            listener = h.listener_factory(f"{namespace}/thief")
            victim_producer = kube.secret(victim_namespace, naming.secret_name("victim", "app"))
            own_producer = kube.secret(namespace, naming.secret_name("thief", "app"))
            assert victim_producer is not None and own_producer is not None
            kafka_produce(victim_producer, victim_topic, values("victim", 5))
            kafka_produce(own_producer, own_topic, values("own", 5))
            thief_prefix = run_prefix(namespace, "thief")
            wait_runs(airflow, dag_id, thief_prefix, 5, timeout=300)  # a listener's start is slow on a loaded machine
            settle(5)  # time for any run from the victim's messages to appear
        finally:
            stop.set()
            forger.join(10)
        assert len(forgeries) > 10, "the forgery did not go on while the listener ran"
        assert_exactly(airflow, dag_id, thief_prefix, values("own", 5))
        victim_values = set(values("victim", 5))
        assert not [run for run in airflow.runs(dag_id).values() if run["conf"]["value"] in victim_values]
        assert victim_topic not in listener.log_path.read_text()
        assert listener_status(kube, namespace, "thief").get("error") is None
