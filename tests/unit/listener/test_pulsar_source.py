"""The Pulsar source's lag: one read of the subscription's backlog gives both counts the worker
needs, the uncommitted messages (status, metric) and those not taken yet (the idle-consumer check)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from eventpipeline.listener.pulsar_source import PulsarSource
from eventpipeline.listener.source import Lag
from eventpipeline.planning import handoff

TOPIC = "persistent://shop/orders/events"
SECRET = {"serviceUrl": "pulsar://127.0.0.1:9", "token": "t", handoff.PULSAR_ADMIN_URL_KEY: "http://127.0.0.1:9"}


def source(monkeypatch: pytest.MonkeyPatch, stats: dict[str, Any] | Exception) -> PulsarSource:
    def get(url: str, **_: Any) -> httpx.Response:
        if isinstance(stats, Exception):
            raise stats
        return httpx.Response(200, json=stats, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", get)
    pulsar_source = PulsarSource(TOPIC, "ep-listener", SECRET, None, 100)
    pulsar_source._consumer = object()  # stands in for an open consumer
    return pulsar_source


def test_the_lag_carries_the_backlog_and_what_is_past_the_taken_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    pulsar_source = source(monkeypatch, {"subscriptions": {"ep-listener": {"msgBacklog": 12}}})
    pulsar_source._unacked = {"1:0:-1", "1:1:-1", "1:2:-1"}  # taken, no run yet

    assert pulsar_source.lag() == Lag(uncommitted=12, untaken=9)


def test_an_unanswered_stats_read_is_no_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    pulsar_source = source(monkeypatch, httpx.ConnectError("refused"))

    assert pulsar_source.lag() is None


def test_a_subscription_missing_from_the_stats_is_no_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    pulsar_source = source(monkeypatch, {"subscriptions": {}})

    assert pulsar_source.lag() is None
