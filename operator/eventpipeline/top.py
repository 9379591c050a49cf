"""`eventpipeline top --prometheus URL`: the key figures per pipeline as a terminal table.

For users without Grafana: the same series the chart's dashboard and alerts read, asked of any
Prometheus that scrapes the controller and the listener (the local stack's, with
`dev up --with prometheus`, or a cluster's).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import httpx

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Column:
    title: str
    query: str  # PromQL giving one value per `pipeline`
    show: Callable[[float], str]


def _count(value: float) -> str:
    return f"{value:.0f}"


def _rate(value: float) -> str:
    return f"{value:.2f}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def _duration(value: float) -> str:
    sign, value = ("-" if value < 0 else ""), abs(value)
    if value >= 86400:
        return f"{sign}{value / 86400:.1f}d"
    if value >= 3600:
        return f"{sign}{value / 3600:.1f}h"
    if value >= 60:
        return f"{sign}{value / 60:.0f}m"
    return f"{sign}{value:.0f}s"


def _up(value: float) -> str:
    return "up" if value >= 1 else "DOWN"


COLUMNS = (
    Column("LAG", "max by (pipeline) (eventpipeline_listener_consumer_lag)", _count),
    Column("RUNS/S", "sum by (pipeline) (rate(eventpipeline_listener_runs_created_total[{window}]))", _rate),
    Column("RETRIES/S", "sum by (pipeline) (rate(eventpipeline_listener_retries_total[{window}]))", _rate),
    Column("DLQ 1H", "sum by (pipeline) (increase(eventpipeline_listener_dead_lettered_total[1h]))", _count),
    Column(
        "P99 TRIGGER",
        "histogram_quantile(0.99, sum by (pipeline, le) "
        "(rate(eventpipeline_listener_trigger_latency_seconds_bucket[{window}])))",
        _seconds,
    ),
    Column("CONSUMER", "min by (pipeline) (eventpipeline_listener_consumer_up)", _up),
    Column(
        "CREDENTIAL AGE",
        "time() - min by (pipeline) (eventpipeline_credential_rotated_timestamp_seconds)",
        _duration,
    ),
    Column(
        "NEXT ROTATION",
        "min by (pipeline) (eventpipeline_credential_next_rotation_timestamp_seconds) - time()",
        _duration,
    ),
)


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    """Instant queries of the Prometheus HTTP API."""

    def __init__(self, url: str, client: httpx.Client | None = None) -> None:
        self._url = url.rstrip("/")
        self._client = client or httpx.Client(timeout=TIMEOUT_SECONDS)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query; PrometheusError with Prometheus' message otherwise."""
        try:
            response = self._client.get(f"{self._url}/api/v1/query", params={"query": promql})
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise PrometheusError(f"cannot query {self._url}: {error}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"{promql}: {body.get('error', response.text)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def firing_alerts(self) -> list[dict[str, Any]]:
        try:
            body = self._client.get(f"{self._url}/api/v1/alerts").json()
        except (httpx.HTTPError, ValueError) as error:
            raise PrometheusError(f"cannot read the alerts of {self._url}: {error}") from error
        return [alert for alert in body["data"]["alerts"] if alert.get("state") == "firing"]


def figures(prometheus: Prometheus, window: str = "5m") -> dict[str, dict[str, float]]:
    """pipeline → column title → value, for every pipeline any column knows."""
    table: dict[str, dict[str, float]] = {}
    for column in COLUMNS:
        for sample in prometheus.query(column.query.format(window=window)):
            pipeline = sample["metric"].get("pipeline")
            value = float(sample["value"][1])
            if pipeline is not None and not math.isnan(value):
                table.setdefault(pipeline, {})[column.title] = value
    return table


def render(table: Mapping[str, Mapping[str, float]], alerts: Sequence[Mapping[str, Any]]) -> str:
    """The figures as aligned text columns, then the firing alerts."""
    header = ["PIPELINE", *(column.title for column in COLUMNS)]
    rows = [
        [pipeline, *(column.show(values[column.title]) if column.title in values else "-" for column in COLUMNS)]
        for pipeline, values in sorted(table.items())
    ]
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    if not rows:
        lines.append("(no pipeline reports yet: is the listener scraped?)")
    lines.append("")
    if alerts:
        lines.append("FIRING:")
        for alert in alerts:
            labels = alert.get("labels", {})
            where = ", ".join(f"{key}={value}" for key, value in sorted(labels.items()) if key != "alertname")
            lines.append(f"  {labels.get('alertname', '?')} ({where})")
    else:
        lines.append("no alert firing")
    return "\n".join(lines)


def run(url: str, *, window: str, watch: float | None, out: TextIO = sys.stdout) -> int:
    prometheus = Prometheus(url)
    while True:
        try:
            text = render(figures(prometheus, window), prometheus.firing_alerts())
        except PrometheusError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if watch is None:
            print(text, file=out)
            return 0
        print("\033[2J\033[H" + time.strftime("%H:%M:%S ") + url + "\n\n" + text, file=out, flush=True)
        time.sleep(watch)
