"""Airflow 3 REST calls that turn a message into a DAG run or an asset event.

One `AirflowTrigger` per Airflow instance, shared by the pipelines that use it (one connection
pool, one token); it is thread-safe. It never raises for an answer: it returns the HTTP status
(None when Airflow did not answer) and leaves the decision to `planning.delivery.classify`.
`trigger_message` is the one place where a message becomes a run (or an asset event).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from eventpipeline.adapters.airflow import AirflowSettings, AirflowTokens
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.api.pipeline import TriggerSpec
from eventpipeline.planning import delivery as planning
from eventpipeline.planning.delivery import Message


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no answer (connection refused, timeout)
    detail: str
    seconds: float


class Trigger(Protocol):
    """What a worker needs from an Airflow client (AirflowTrigger; fakes in tests)."""

    def dag_run(self, dag_id: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer: ...

    def asset_event(self, asset_uri: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer: ...


def trigger_message(
    trigger: Trigger, spec: TriggerSpec, message: Message, broker_type: Literal["Kafka", "Pulsar"]
) -> Answer:
    """Ask Airflow for the message's run (DagRun mode) or asset event (AssetEvent mode)."""
    if spec.mode == "AssetEvent":
        assert spec.asset_uri is not None
        return trigger.asset_event(spec.asset_uri, message, broker_type)
    return trigger.dag_run(spec.dag_id, message, broker_type)


class AirflowTrigger:
    def __init__(self, settings: AirflowSettings, tokens: AirflowTokens, max_connections: int = 64) -> None:
        self._settings = settings
        self._tokens = tokens
        self._client = httpx.Client(
            base_url=settings.api_url.rstrip("/"),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._assets: dict[str, int] = {}
        self._assets_lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def _post(self, path: str, body: dict[str, Any]) -> Answer:
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                token = self._tokens.token(renew=attempt == 2)
            except AdapterError as error:
                return Answer(None, f"no Airflow token: {error}", time.monotonic() - started)
            try:
                response = self._client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as error:
                return Answer(
                    None, f"Airflow did not answer: {type(error).__name__}: {error}", time.monotonic() - started
                )
            if response.status_code == 401 and attempt == 1:
                continue  # the token expired or Airflow restarted with a new secret: renew once
            return Answer(response.status_code, _detail(response), time.monotonic() - started)
        raise AssertionError("unreachable")

    def dag_run(self, dag_id: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer:
        """Create the message's DAG run; 409 means it exists already."""
        return self._post(f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", planning.dag_run_body(message, broker_type))

    def asset_event(self, asset_uri: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer:
        """Post an asset event for the message (Airflow may merge several into one run)."""
        asset_id = self._asset_id(asset_uri)
        if isinstance(asset_id, Answer):
            return asset_id
        return self._post("/api/v2/assets/events", planning.asset_event_body(message, broker_type, asset_id))

    def _asset_id(self, uri: str) -> int | Answer:
        with self._assets_lock:
            if uri in self._assets:
                return self._assets[uri]
        started = time.monotonic()
        try:
            token = self._tokens.token()
            response = self._client.get(
                "/api/v2/assets",
                params={"uri_pattern": uri, "limit": 100},
                headers={"Authorization": f"Bearer {token}"},
            )
        except (httpx.HTTPError, AdapterError) as error:
            return Answer(None, f"Airflow did not answer: {error}", time.monotonic() - started)
        if response.status_code != 200:
            return Answer(response.status_code, _detail(response), time.monotonic() - started)
        for asset in response.json().get("assets", []):
            if asset.get("uri") == uri:
                with self._assets_lock:
                    self._assets[uri] = int(asset["id"])
                return int(asset["id"])
        return Answer(
            404, f"no asset with uri {uri!r} in Airflow; is a DAG scheduled on it?", time.monotonic() - started
        )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:300]
    return str(body)[:300]
