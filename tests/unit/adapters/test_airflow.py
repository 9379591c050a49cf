"""The Airflow adapter over a fake API: bounded, bodies never reflected, token renewed once."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from eventpipeline.adapters.airflow import AirflowConnections, AirflowDags, AirflowSettings, AirflowTokens
from eventpipeline.adapters.drift import drift_reads
from eventpipeline.adapters.errors import InvalidRequestError, NotAuthorizedError

SETTINGS = AirflowSettings("http://airflow.example", "u", SecretStr("p"))


class FixedTokens(AirflowTokens):
    def __init__(self) -> None:
        super().__init__(SETTINGS)
        self.renewals = 0

    def token(self, *, renew: bool = False) -> str:
        self.renewals += renew
        return f"t{self.renewals}"


def with_api(adapter: AirflowConnections | AirflowDags, handler: httpx.MockTransport) -> None:
    adapter._client = httpx.Client(transport=handler, base_url=SETTINGS.api_url)


def test_dag_tags_and_a_missing_dag() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/dags/process":
            return httpx.Response(200, json={"dag_id": "process", "tags": [{"name": "eventpipeline:shop"}]})
        return httpx.Response(404, json={"detail": "not found"})

    dags = AirflowDags(SETTINGS, FixedTokens())
    with_api(dags, httpx.MockTransport(answer))
    assert dags.tags("process") == ["eventpipeline:shop"]
    assert dags.tags("other") is None


def test_the_dags_scheduled_on_an_asset_with_their_tags() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/assets":
            assets = [
                {"uri": "kafka://t-longer", "scheduled_dags": [{"dag_id": "x"}]},
                {"uri": "kafka://t", "scheduled_dags": [{"dag_id": "b"}, {"dag_id": "a"}]},
            ]
            return httpx.Response(200, json={"assets": assets})
        dag_id = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"tags": [{"name": f"tag-{dag_id}"}]})

    dags = AirflowDags(SETTINGS, FixedTokens())
    with_api(dags, httpx.MockTransport(answer))
    assert dags.asset_consumers("kafka://t") == [("a", ["tag-a"]), ("b", ["tag-b"])]
    assert dags.asset_consumers("kafka://none") is None


def test_a_connection_is_patched_or_else_created() -> None:
    seen: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if request.method == "PATCH":
            return httpx.Response(404)
        assert json.loads(request.content)["connection_id"] == "c"
        return httpx.Response(201, json={})

    connections = AirflowConnections(SETTINGS, FixedTokens())
    with_api(connections, httpx.MockTransport(answer))
    connections.put({"connection_id": "c", "conn_type": "kafka"})
    assert seen == [("PATCH", "/api/v2/connections/c"), ("POST", "/api/v2/connections")]


def test_an_update_names_its_fields_in_the_update_mask_and_never_creates() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}) if request.url.path.endswith("/c") else httpx.Response(404)

    connections = AirflowConnections(SETTINGS, FixedTokens())
    with_api(connections, httpx.MockTransport(answer))
    assert connections.update({"connection_id": "c", "conn_type": "kafka", "extra": "{}"}, ["conn_type", "extra"])
    assert seen[0].method == "PATCH"
    assert seen[0].url.params.get_list("update_mask") == ["conn_type", "extra"]
    assert not connections.update({"connection_id": "gone", "conn_type": "kafka"}, ["extra"])
    assert [request.method for request in seen] == ["PATCH", "PATCH"]


def test_a_refusal_carries_the_status_never_the_body() -> None:
    connections = AirflowConnections(SETTINGS, FixedTokens())
    with_api(connections, httpx.MockTransport(lambda request: httpx.Response(422, text="SECRET internal detail")))
    with pytest.raises(InvalidRequestError) as caught:
        connections.put({"connection_id": "c"})
    assert "(422)" in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_the_token_is_renewed_once_on_a_401() -> None:
    tokens = FixedTokens()
    connections = AirflowConnections(SETTINGS, tokens)
    with_api(connections, httpx.MockTransport(lambda request: httpx.Response(401)))
    with pytest.raises(NotAuthorizedError):
        connections.exists("c")
    assert tokens.renewals == 1


def test_drift_checks_read_connections_from_one_paged_listing_and_what_was_written_fresh() -> None:
    pages: list[str | None] = []
    single: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/connections":
            offset = int(request.url.params["offset"])
            pages.append(request.url.params.get("offset"))
            ids = [f"c{index}" for index in range(250)][offset : offset + 100]
            return httpx.Response(200, json={"connections": [{"connection_id": i} for i in ids], "total_entries": 250})
        single.append(request.url.path)
        return httpx.Response(200, json={})

    connections = AirflowConnections(SETTINGS, FixedTokens())
    with_api(connections, httpx.MockTransport(answer))
    with drift_reads(300.0):
        assert all(connections.exists(f"c{index}") for index in range(250))
        assert not connections.exists("gone")
    assert pages == ["0", "100", "200"] and single == []
    connections.put({"connection_id": "gone", "conn_type": "kafka"})  # written: read fresh from now on
    with drift_reads(300.0):
        assert connections.exists("gone")
    assert pages == ["0", "100", "200"] and single == ["/api/v2/connections/gone", "/api/v2/connections/gone"]
    assert connections.exists("c1") and len(single) == 3  # outside a drift check: always fresh


def test_the_pipelines_of_one_dag_share_its_tags_within_a_drift_period() -> None:
    reads: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        reads.append(request.url.path)
        return httpx.Response(200, json={"tags": [{"name": "eventpipeline:*"}]})

    dags = AirflowDags(SETTINGS, FixedTokens())
    with_api(dags, httpx.MockTransport(answer))
    with drift_reads(300.0):
        assert [dags.tags("process") for _ in range(50)] == [["eventpipeline:*"]] * 50
    assert reads == ["/api/v2/dags/process"]
    assert dags.tags("process") == ["eventpipeline:*"] and len(reads) == 2  # a change handler reads fresh
