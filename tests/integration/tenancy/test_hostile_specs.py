"""Property-based hostile specs on the real API server with the operator running (issue 11, item 7).

Every generated EventPipeline (odd names, other namespaces' topics and connection ids, topic
configs outside the policy, reserved or duplicate principals, wildcard external principals,
tenant Brokers, forged status, ...) is refused at admission or ends in a clear `Ready` condition;
deleted, it goes away; the operator keeps running; and nothing of a victim pipeline in another
namespace changes. `make test` runs EVENTPIPELINE_HOSTILE_EXAMPLES specs (default 25) in batches
of EVENTPIPELINE_HOSTILE_BATCH; bench/tenancy/hostile_specs.py runs 1,000.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes import client

from eventpipeline_devenv.runtime import free_port
from tests.integration.support import GROUP, VERSION, Kube, eventually
from tests.integration.tenancy.hostile import (
    Victim,
    apply_generated_batch,
    attacker_namespace,
    create_victim,
    namespaces_left,
    remove_victim,
)

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("EVENTPIPELINE_HOSTILE_EXAMPLES", "25"))
BATCH = int(os.environ.get("EVENTPIPELINE_HOSTILE_BATCH", "5"))


@pytest.fixture(scope="module")
def victim(stack: Any, kube: Kube, operator: Any) -> Iterator[Victim]:
    """A working Kafka pipeline in a namespace of its own, set up once for every example."""
    victim = create_victim(kube, stack.exports)
    yield victim
    remove_victim(kube, stack.exports, victim)


# Each example is a batch of specs applied at once (a few seconds of the operator's work), so no
# shrinking (each replay costs as much), no time deadline, and a fixed seed for a stable CI.
@settings(
    max_examples=max(1, math.ceil(EXAMPLES / BATCH)),
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_hostile_specs_are_refused_or_settle_and_change_nothing_outside_their_pipeline(
    stack: Any, kube: Kube, operator: Any, victim: Victim, data: st.DataObject
) -> None:
    alive = lambda: operator.poll() is None  # noqa: E731
    namespace, cases, report = apply_generated_batch(
        kube, stack.exports, victim, data, size=BATCH, operator_alive=alive
    )
    assert not report.problems, "\n".join(report.problems)
    assert report.refused + report.settled == len(cases)
    assert namespaces_left(kube, [namespace]) == [], f"namespace {namespace} is stuck in Terminating"


def _canary_handler(hits: list[str]) -> type[BaseHTTPRequestHandler]:
    """A handler that records every request: a tenant's URL that the controller must not call."""

    class Canary(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            hits.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"access_token": "x"}')

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def log_message(self, *_: Any) -> None:
            pass

    return Canary


@pytest.fixture
def canary() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server and the requests it received."""
    hits: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _canary_handler(hits))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def test_a_tenants_own_broker_and_airflow_urls_are_never_called_while_namespaced_references_are_off(
    kube: Kube, operator: Any, canary: tuple[str, list[str]]
) -> None:
    """The cluster admin's switch is off in the test operator: the controller must not log in to a
    namespaced Broker's or AirflowInstance's URL (a tenant's choice, e.g. a cloud metadata address)."""
    url, hits = canary
    with attacker_namespace(kube) as namespace:
        kube.core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="mine"),
                string_data={"username": "u", "password": "p", "token": "t", "signingKey": "c2lnbg=="},
            ),
        )
        airflow = {"apiUrl": url, "credentialsSecretRef": {"name": "mine"}}
        broker = {
            "type": "Pulsar",
            "pulsar": {"serviceUrl": "pulsar://127.0.0.1:1", "adminUrl": url, "adminSecretRef": {"name": "mine"}},
        }
        for plural, kind, spec in (("airflowinstances", "AirflowInstance", airflow), ("brokers", "Broker", broker)):
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "own"}, "spec": spec}
            kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
        for plural in ("airflowinstances", "brokers"):
            ready = eventually(
                lambda plural=plural: next(
                    (
                        c
                        for c in kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, "own")
                        .get("status", {})
                        .get("conditions", [])
                        if c["type"] == "Ready"
                    ),
                    None,
                ),
                timeout=60,
                what=f"the {plural} Ready condition",
            )
            assert ready["status"] == "False" and ready["reason"] == "NamespacedReferencesDisabled", ready
    assert hits == []


def test_a_pulsar_pipeline_whose_topic_was_refused_is_deleted_without_a_stuck_finalizer(
    kube: Kube, operator: Any
) -> None:
    """Found by the hostile run: the topic (and its Pulsar namespace) never existed, so reading its
    grants answered 404 and the finalizer retried forever."""
    spec = {
        "brokerRef": {"kind": "ClusterBroker", "name": "local-pulsar"},
        "topic": {"config": {"flush.messages": "1"}, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "externalPrincipals": [{"principal": "analytics", "access": "Consume"}],
    }
    with attacker_namespace(kube) as namespace:
        kube.create_pipeline(namespace, "refused", spec)
        kube.wait_condition(namespace, "refused", "TopicReady", "False", reason="TopicConfigNotAllowed", timeout=120)
        kube.delete_pipeline(namespace, "refused")
        eventually(lambda: kube.get_pipeline(namespace, "refused") is None, timeout=60, what="the deletion to finish")
