"""`eventpipeline top`: Prometheus' answers as one row per pipeline, then the firing alerts."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from eventpipeline import top

ANSWERS = {
    "LAG": {"shop/orders": 12.0, "shop/payments": 0.0},
    "RUNS/S": {"shop/orders": 1.5},
    "P99 TRIGGER": {"shop/orders": 0.048, "shop/payments": math.nan},
    "CONSUMER": {"shop/orders": 1.0, "shop/payments": 0.0},
    "NEXT ROTATION": {"shop/orders": -120.0},
    "CREDENTIAL AGE": {"shop/orders": 90000.0},
}


def fake_prometheus(alerts: list[dict[str, Any]] | None = None) -> top.Prometheus:
    queries = {column.query.format(window="5m"): column.title for column in top.COLUMNS}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/alerts":
            return httpx.Response(200, json={"status": "success", "data": {"alerts": alerts or []}})
        title = queries[request.url.params["query"]]
        result = [
            {"metric": {"pipeline": pipeline}, "value": [0, str(value)]}
            for pipeline, value in ANSWERS.get(title, {}).items()
        ]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})

    return top.Prometheus("http://prometheus:9090/", httpx.Client(transport=httpx.MockTransport(answer)))


def test_figures_are_one_row_per_pipeline_without_nan() -> None:
    table = top.figures(fake_prometheus())
    assert table["shop/orders"]["LAG"] == 12 and table["shop/orders"]["RUNS/S"] == 1.5
    assert "P99 TRIGGER" not in table["shop/payments"]


def test_the_table_shows_units_missing_figures_and_firing_alerts() -> None:
    prometheus = fake_prometheus(
        [{"state": "firing", "labels": {"alertname": "EventPipelineConsumerLagHigh", "pipeline": "shop/orders"}}]
    )
    text = top.render(top.figures(prometheus), prometheus.firing_alerts())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["PIPELINE", "LAG", "RUNS/S"]
    orders = lines[1].split()
    assert orders[:3] == ["shop/orders", "12", "1.50"]
    assert "48ms" in orders and "up" in orders and "1.0d" in orders and "-2m" in orders
    payments = lines[2].split()
    assert payments[0] == "shop/payments" and "DOWN" in payments and "-" in payments
    assert lines[-2:] == ["FIRING:", "  EventPipelineConsumerLagHigh (pipeline=shop/orders)"]


def test_no_pipeline_and_no_alert_say_so() -> None:
    assert top.render({}, []).splitlines()[1:] == [
        "(no pipeline reports yet: is the listener scraped?)",
        "",
        "no alert firing",
    ]


def test_a_query_prometheus_refuses_is_an_error_with_its_message() -> None:
    def refuse(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"status": "error", "error": "parse error"})

    prometheus = top.Prometheus("http://p", httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(top.PrometheusError, match="parse error"):
        prometheus.query("up{")
