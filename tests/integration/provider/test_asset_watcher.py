"""The provider's Pulsar trigger in an AssetWatcher: N messages become N asset events, across a
triggerer restart, and no message is lost when the triggerer is killed (SIGKILL) mid-stream.

The watcher reads with the connection the operator keeps for the pipeline (`airflow` without a
`trigger`: the listener's read-only credential, no listener competing). The trigger acknowledges
a message only after Airflow confirmed the asset event stored. The restart comes once every
event before it was stored and acknowledged: then no message may be lost or doubled. (A stop in
the second or two between an event's store and its message's acknowledgement delivers that
message again — at least once, Airflow's shared-stream contract, see docs/airflow-provider.md;
a CI run that restarted right after the events appeared saw each of them twice.)

Then a crash: the triggerer is SIGKILLed while a third wave is being sent and stored. Every message
must end up with at least one asset event; a repeat is allowed only for the messages in flight at
the kill (stored but not yet acknowledged), never for one acknowledged before it.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from eventpipeline.planning import naming
from eventpipeline_devenv.airflow_api import AirflowApi
from eventpipeline_devenv.runtime import Layout, restart_process
from tests.integration.conftest import OperatorProcess
from tests.integration.provider.conftest import (
    FINISHED,
    PULSAR_RESULTS,
    install_dag,
    ready_pipeline,
    retire_dag,
    xcom,
)
from tests.integration.support import Kube, eventually, pulsar_client, pulsar_send

WATCHER_DAG = """\
from airflow.sdk import DAG, Asset, AssetWatcher, task
from eventpipeline_provider.context import triggering_messages
from eventpipeline_provider.triggers.pulsar import PulsarMessageTrigger

trigger = PulsarMessageTrigger(topic="{topic}", subscription="{subscription}", pulsar_conn_id="{connection}")
asset = Asset("{asset}", watchers=[AssetWatcher(name="{asset}", trigger=trigger)])

with DAG(dag_id="{dag_id}", schedule=[asset], catchup=False, tags=["eventpipeline-test"]):

    @task
    def handle() -> list:
        return [message.json()["n"] for message in triggering_messages()]

    handle()
"""
HALF = 10
SUBSCRIPTION = "airflow-watcher"
PACE_SECONDS = 0.5


def _asset_id(airflow: AirflowApi, name: str) -> int | None:
    response = airflow.request("GET", "/api/v2/assets", params={"name_pattern": name})
    assets = [asset for asset in response.json().get("assets", []) if asset["name"] == name]
    return int(assets[0]["id"]) if assets else None


def _numbers(airflow: AirflowApi, asset_id: int) -> list[int]:
    numbers = []
    for event in airflow.asset_events(asset_id):
        payload: dict[str, Any] = (event.get("extra") or {}).get("payload") or {}
        numbers.append(json.loads(payload["value"])["n"])
    return sorted(numbers)


def _backlog(airflow: AirflowApi, topic: str) -> int | None:
    """Messages of the watcher's subscription not yet acknowledged, as the Pulsar broker counts them
    (over all partitions: a pipeline's topic is a partitioned topic, which has no plain `/stats`)."""
    exports = airflow.exports
    response = httpx.get(
        f"{exports['PULSAR_ADMIN_URL']}/admin/v2/{topic.replace('://', '/')}/partitioned-stats",
        headers={"Authorization": f"Bearer {exports['PULSAR_ADMIN_TOKEN']}"},
        timeout=10,
    )
    response.raise_for_status()
    subscription = response.json().get("subscriptions", {}).get(SUBSCRIPTION)
    return None if subscription is None else int(subscription["msgBacklog"])


def _send(kube: Kube, namespace: str, topic: str, numbers: range) -> None:
    secret = kube.secret(namespace, "results.app.credentials")
    assert secret is not None
    for n in numbers:
        assert pulsar_send(secret, topic, json.dumps({"n": n}).encode()) is None


def _send_paced(kube: Kube, namespace: str, topic: str, numbers: range, failures: list[Exception]) -> None:
    """One message every PACE_SECONDS (a stream the kill lands in the middle of), with one producer."""
    secret = kube.secret(namespace, "results.app.credentials")
    assert secret is not None
    try:
        with pulsar_client(secret) as client:
            producer = client.create_producer(topic)
            for n in numbers:
                producer.send(json.dumps({"n": n}).encode())
                time.sleep(PACE_SECONDS)
    except Exception as error:  # reported by the test, not lost in the thread
        failures.append(error)


@pytest.fixture
def watcher_dag(airflow: AirflowApi, namespace: str) -> Iterator[str]:
    """The watcher DAG's id; the DAG is retired before the namespace goes, whatever happens, or its
    trigger would fail every few seconds for the rest of the suite once the connection is deleted."""
    dag_id = f"watch_{namespace.replace('-', '_')}"
    yield dag_id
    retire_dag(airflow, dag_id)


def test_the_pulsar_trigger_turns_each_message_into_one_asset_event_across_a_triggerer_restart(
    kube: Kube, operator: OperatorProcess, airflow: AirflowApi, namespace: str, watcher_dag: str
) -> None:
    topic = ready_pipeline(kube, namespace, PULSAR_RESULTS)
    dag_id = watcher_dag
    asset = f"pulsar-{namespace}"
    connection = naming.connection_id(namespace, "results", None)
    source = WATCHER_DAG.format(dag_id=dag_id, asset=asset, topic=topic, connection=connection,
                                subscription=SUBSCRIPTION)  # fmt: skip
    install_dag(airflow, dag_id, source)
    asset_id = eventually(lambda: _asset_id(airflow, asset), timeout=60, what=f"asset {asset}")

    _send(kube, namespace, topic, range(HALF))
    eventually(lambda: len(_numbers(airflow, asset_id)) >= HALF, timeout=180, interval=2,
               what=f"{HALF} asset events before the restart")  # fmt: skip
    eventually(lambda: _backlog(airflow, topic) == 0, timeout=60, interval=1,
               what="the stored events' messages to be acknowledged")  # fmt: skip
    restart_process(Layout.from_environment(), "airflow-triggerer", sig=signal.SIGTERM)
    _send(kube, namespace, topic, range(HALF, 2 * HALF))
    eventually(lambda: len(_numbers(airflow, asset_id)) >= 2 * HALF, timeout=240, interval=2,
               what=f"{2 * HALF} asset events after the restart")  # fmt: skip
    # A message whose event was stored but not yet acknowledged would come back after the
    # restart: give a redelivery (5 s delay) time to show before counting.
    time.sleep(15)
    assert _numbers(airflow, asset_id) == list(range(2 * HALF))

    # The crash: SIGKILL the triggerer once the third wave's events are being stored; the sender
    # goes on while it is down. Its successor takes the watcher over (after the dead triggerer's
    # heartbeat expires) and Pulsar redelivers what was never acknowledged.
    eventually(lambda: _backlog(airflow, topic) == 0, timeout=60, interval=1,
               what="the second wave's messages to be acknowledged")  # fmt: skip
    wave = range(2 * HALF, 3 * HALF)
    failures: list[Exception] = []
    sender = threading.Thread(target=_send_paced, args=(kube, namespace, topic, wave, failures), daemon=True)
    sender.start()
    eventually(lambda: len(_numbers(airflow, asset_id)) > 2 * HALF, timeout=120, interval=0.2,
               what="the third wave's first asset event")  # fmt: skip
    restart_process(Layout.from_environment(), "airflow-triggerer", sig=signal.SIGKILL)
    sender.join(timeout=120)
    assert not sender.is_alive() and failures == []
    everything = set(range(3 * HALF))
    eventually(lambda: set(_numbers(airflow, asset_id)) == everything, timeout=300, interval=2,
               what="an asset event for every message after the SIGKILL")  # fmt: skip
    # At least once: only a message in flight at the kill may have two events.
    numbers = _numbers(airflow, asset_id)
    assert numbers[: 2 * HALF] == list(range(2 * HALF)), numbers
    repeats = sorted({n for n in numbers if numbers.count(n) > 1})
    assert set(repeats) <= set(wave), repeats

    # The DAG reads its messages with triggering_messages(): each run sees exactly the messages of
    # the asset events Airflow attached to it (it may merge several events into one run).
    def runs_done() -> dict[str, Any] | None:
        runs = airflow.runs(dag_id)
        return runs if runs and all(run["state"] in FINISHED for run in runs.values()) else None

    runs = eventually(runs_done, timeout=300, interval=3, what=f"the runs of {dag_id} to finish")
    assert {run["state"] for run in runs.values()} == {"success"}
    for run_id in runs:
        upstream = airflow.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents").json()
        expected = sorted(json.loads(event["extra"]["payload"]["value"])["n"] for event in upstream["asset_events"])
        assert sorted(xcom(airflow, dag_id, run_id, "handle")) == expected
