"""The local Prometheus (`dev up --with prometheus`) against the real controller and listener.

It scrapes both with the labels the chart's ServiceMonitors give their targets, evaluates the
chart's alert rules, answers every query of the chart's dashboard after demo-like traffic on a
Kafka and a Pulsar pipeline, and fires a real alert when Airflow's API stops answering.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventpipeline import top
from eventpipeline_devenv import monitoring
from eventpipeline_devenv import prometheus as devprometheus
from eventpipeline_devenv import stack as devstack
from eventpipeline_devenv.runtime import Layout, Reporter
from tests.integration.listener.brokers import kafka_produce, pulsar_produce
from tests.integration.listener.conftest import Listener
from tests.integration.support import Kube, eventually, fresh_namespace

pytestmark = pytest.mark.integration
MESSAGES = 10
PIPELINES = {"orders": "local-kafka", "payments": "local-pulsar"}
# What Grafana substitutes in the dashboard's queries: all pipelines, a rate window that holds a
# few 5 s scrapes, and the dashboard's default 15-minute range.
GRAFANA_VARIABLES = {"$pipeline": ".*", "$__rate_interval": "5m", "$__range": "15m"}


@dataclass
class Observed:
    url: str
    namespace: str
    exports: dict[str, str]
    listener: Listener
    secrets: dict[str, dict[str, str]]
    topics: dict[str, str]


def query(url: str, promql: str) -> list[dict[str, Any]]:
    return top.Prometheus(url).query(promql)


def spec(broker: str, dag_id: str) -> dict[str, Any]:
    return {
        "brokerRef": {"kind": "ClusterBroker", "name": broker},
        "topic": {"partitions": 2, "deletionPolicy": "Delete"},
        "producers": [{"name": "app"}],
        "airflow": {
            "instanceRef": {"name": "local"},
            "trigger": {"dagId": dag_id, "maxInFlight": 4, "retry": {"limit": 2, "backoff": "1s", "maxBackoff": "2s"}},
        },
    }


def produce(observed: Observed, pipeline: str, values: list[str]) -> None:
    send = kafka_produce if PIPELINES[pipeline] == "local-kafka" else pulsar_produce
    send(observed.secrets[pipeline], observed.topics[pipeline], values)


@pytest.fixture(scope="module")
def observed(stack: devstack.StackInfo, kube: Kube, operator: Any, open_dag: str) -> Iterator[Observed]:
    """Prometheus added to the session's stack, scraping the session's controller and a listener of
    this module's two pipelines, after each pipeline turned MESSAGES messages into DAG runs."""
    info = devstack.up(Layout.from_environment(), Reporter(), with_=["prometheus"])
    exports = dict(info.exports)
    url, targets = exports[devprometheus.URL_EXPORT], Path(exports[devprometheus.TARGETS_EXPORT])
    announced = [monitoring.announce(targets, "controller", "operator-under-test", operator.metrics_port)]
    with fresh_namespace(kube, "mon") as namespace:
        listener = Listener(exports, [f"{namespace}/{name}" for name in PIPELINES], "listener-under-test-monitoring")
        listener.start()
        announced.append(
            monitoring.announce(targets, "listener", "listener-under-test-monitoring", listener.metrics_port)
        )
        try:
            secrets, topics = {}, {}
            for name, broker in PIPELINES.items():
                kube.create_pipeline(namespace, name, spec(broker, open_dag))
            # One pipeline that cannot be reconciled, so that reconcile errors have a reason to show.
            kube.create_pipeline(namespace, "unbrokered", spec("no-such-broker", open_dag))
            kube.wait_condition(namespace, "unbrokered", "TopicReady", "False", reason="ClusterBrokerNotFound")
            for name in PIPELINES:
                kube.wait_condition(namespace, name, "Ready", "True", timeout=180)
                body = kube.get_pipeline(namespace, name)
                assert body is not None
                topics[name] = body["status"]["topic"]
                secret = kube.secret(namespace, f"{name}.app.credentials")
                assert secret is not None
                secrets[name] = secret
            result = Observed(url, namespace, exports, listener, secrets, topics)

            def runs_counted(at_least: int) -> bool:
                samples = query(url, f'eventpipeline_listener_runs_created_total{{pipeline=~"{namespace}/.*"}}')
                return len(samples) == len(PIPELINES) and all(float(s["value"][1]) >= at_least for s in samples)

            # Two waves, the second after Prometheus scraped the first: a series whose whole history
            # fell before its first scrape has no increase, and the dashboard's rate() and
            # histogram_quantile() panels would show nothing for it.
            for start, stop in ((0, MESSAGES // 2), (MESSAGES // 2, MESSAGES)):
                for name in PIPELINES:
                    produce(result, name, [f"{name}-{index}" for index in range(start, stop)])
                eventually(functools.partial(runs_counted, stop), timeout=180, interval=2,
                           what=f"Prometheus to see the runs of messages {start}-{stop - 1}")  # fmt: skip

            def lag_caught_up() -> bool:
                # The lag is read every 10 s and scraped every 5 s: the last runs' commits show a
                # few scrapes after Prometheus counted the runs.
                samples = query(url, f'eventpipeline_listener_consumer_lag{{pipeline=~"{namespace}/.*"}}')
                return len(samples) == len(PIPELINES) and all(float(s["value"][1]) == 0 for s in samples)

            eventually(lag_caught_up, timeout=120, interval=2,
                       what="the listener to report both pipelines' lag, caught up to 0")  # fmt: skip
            yield result
        finally:
            listener.stop()
            for path in announced:
                monitoring.withdraw(path)


def test_prometheus_scrapes_controller_and_listener_with_the_service_monitor_labels(observed: Observed) -> None:
    targets = httpx.get(f"{observed.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    by_pod = {target["labels"].get("pod"): target for target in targets}
    for pod, component in (("operator-under-test", "controller"), ("listener-under-test-monitoring", "listener")):
        target = by_pod[pod]
        assert target["health"] == "up", target
        service = f"{monitoring.RELEASE}-{component}"
        assert target["labels"] | {"instance": ""} == {
            "job": service,
            "service": service,
            "namespace": monitoring.NAMESPACE,
            "endpoint": "metrics",
            "container": component,
            "pod": pod,
            "instance": "",
        }
        assert target["scrapePool"] == f"serviceMonitor/{monitoring.NAMESPACE}/{service}/0"


def test_prometheus_evaluates_every_alert_of_the_chart(observed: Observed) -> None:
    rule_groups = httpx.get(f"{observed.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in rule_groups for rule in group["rules"]}
    helm = devprometheus.helm_path(Layout.from_environment())
    shipped = {rule["alert"] for group in monitoring.render(helm).rule_groups()["groups"] for rule in group["rules"]}
    assert shipped == set(loaded)
    assert all(rule["health"] == "ok" for rule in loaded.values()), [r for r in loaded.values() if r["health"] != "ok"]
    # Nothing is wrong on the stack: no alert of the chart fires.
    firing = [name for name, rule in loaded.items() if rule["state"] == "firing"]
    assert firing == [], firing


def test_every_dashboard_query_returns_data_for_kafka_and_pulsar(observed: Observed) -> None:
    helm = devprometheus.helm_path(Layout.from_environment())
    dashboard = monitoring.render(helm).dashboard()
    variable = dashboard["templating"]["list"][1]["query"]["query"]
    matched = re.fullmatch(r"label_values\((\w+), pipeline\)", variable)
    assert matched, variable
    listed = httpx.get(
        f"{observed.url}/api/v1/label/pipeline/values", params={"match[]": matched.group(1)}, timeout=10
    ).json()["data"]
    ours = {f"{observed.namespace}/{name}" for name in PIPELINES}
    assert ours <= set(listed), "the dashboard's pipeline variable does not list both pipelines"
    empty: list[str] = []
    checked = 0

    def every_panel_has_data() -> bool:
        # rate() panels need two scrapes after a series first appears: ask again for a while.
        nonlocal checked
        empty.clear()
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(name, value)
                assert "$" not in expr, f"panel {panel['title']!r}: unknown variable in {expr}"
                result = [sample for sample in query(observed.url, expr) if sample["value"][1] != "NaN"]
                checked += 1
                pipelines = {sample["metric"].get("pipeline") for sample in result}
                per_pipeline = "by (pipeline" in target["expr"]
                if not result or (per_pipeline and not ours <= pipelines):
                    empty.append(f"{panel['title']}: {expr} -> {sorted(map(str, pipelines))}")
        return not empty

    with contextlib.suppress(AssertionError):
        eventually(every_panel_has_data, timeout=90, interval=5, what="every dashboard query to return data")
    assert checked >= len(dashboard["panels"])
    assert not empty, "dashboard queries without data for both pipelines:\n" + "\n".join(empty)


def test_lag_is_reported_for_kafka_and_pulsar_pipelines(observed: Observed) -> None:
    samples = query(observed.url, f'eventpipeline_listener_consumer_lag{{pipeline=~"{observed.namespace}/.*"}}')
    assert {sample["metric"]["pipeline"] for sample in samples} == {f"{observed.namespace}/{n}" for n in PIPELINES}
    assert all(float(sample["value"][1]) == 0 for sample in samples), samples


def test_reconcile_errors_are_counted_by_condition_and_reason(observed: Observed) -> None:
    samples = query(observed.url, "eventpipeline_reconcile_errors_total")
    reasons = {(sample["metric"]["condition"], sample["metric"]["reason"]) for sample in samples}
    assert ("TopicReady", "ClusterBrokerNotFound") in reasons, reasons


def test_credential_age_and_next_rotation_are_reported_per_principal(observed: Observed) -> None:
    samples = query(
        observed.url,
        f'eventpipeline_credential_next_rotation_timestamp_seconds{{pipeline="{observed.namespace}/orders"}} - time()',
    )
    principals = {sample["metric"]["principal"]: float(sample["value"][1]) for sample in samples}
    assert set(principals) == {"app", "listener"}
    # rotateEvery defaults to 24 h: the next rotation is about a day away.
    assert all(23 * 3600 < seconds <= 24 * 3600 for seconds in principals.values()), principals


def test_top_renders_the_key_figures_of_both_pipelines(observed: Observed) -> None:
    table = top.figures(top.Prometheus(observed.url), window="1m")
    text = top.render(table, [])
    for name in PIPELINES:
        row = next(line for line in text.splitlines() if line.startswith(f"{observed.namespace}/{name} "))
        cells = re.split(r"\s{2,}", row.strip())
        assert len(cells) == 1 + len(top.COLUMNS), row
        assert cells[1] == "0" and cells[6] == "up", row  # lag, consumer
    assert text.splitlines()[0].split()[:3] == ["PIPELINE", "LAG", "RUNS/S"]


def test_lag_growing_fires_for_real_while_airflow_does_not_answer(observed: Observed, airflow_api_server: int) -> None:
    """The shipped rule, with a short `for:` through the chart's values (the shipped default is 15m)."""
    layout = Layout.from_environment()
    devprometheus.reload_rules(
        layout, observed.exports, [{"metrics": {"prometheusRule": {"for": {"consumerLagGrowing": "15s"}}}}]
    )
    pipeline = f"{observed.namespace}/orders"

    def firing() -> bool:
        alerts = top.Prometheus(observed.url).firing_alerts()
        return any(
            a["labels"].get("alertname") == "EventPipelineConsumerLagGrowing"
            and a["labels"].get("pipeline") == pipeline
            for a in alerts
        )

    os.killpg(airflow_api_server, signal.SIGSTOP)  # the API server stops answering; requests hang
    try:
        deadline, index = time.monotonic() + 240, 0
        while not firing():
            assert time.monotonic() < deadline, "EventPipelineConsumerLagGrowing did not fire within 240 s"
            produce(observed, "orders", [f"held-{index}", f"held-{index + 1}"])
            index += 2
            time.sleep(2)
        lag = query(observed.url, f'eventpipeline_listener_consumer_lag{{pipeline="{pipeline}"}}')
        assert float(lag[0]["value"][1]) > 0
    finally:
        os.killpg(airflow_api_server, signal.SIGCONT)
        devprometheus.reload_rules(layout, observed.exports)
    # Once Airflow answers again the held messages become runs and the lag drains to 0.
    eventually(
        lambda: (
            float(query(observed.url, f'eventpipeline_listener_consumer_lag{{pipeline="{pipeline}"}}')[0]["value"][1])
            == 0
        ),
        timeout=180,
        interval=3,
        what=f"the lag of {pipeline} to drain",
    )
