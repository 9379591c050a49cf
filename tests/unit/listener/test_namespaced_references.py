"""The listener calls a namespaced AirflowInstance's URL only when the cluster admin allows it,
and only an Airflow instance the controller handed over."""

from __future__ import annotations

import pytest
from kubernetes import client
from pydantic import SecretStr

from eventpipeline.listener.service import ListenerService
from eventpipeline.planning import handoff
from eventpipeline.planning.reference_policy import ALLOW_NAMESPACED_REFERENCES_ENV
from eventpipeline.planning.serving import PipelineConfig, Shard, Wanted, wanted_pipeline


def service() -> ListenerService:
    return ListenerService(Shard(replicas=1, index=0), replica="test", api_client_factory=client.ApiClient)


HANDED_OVER = {
    "username": "u",
    "password": "p",
    **handoff.describe("shop.orders", None, "Kafka", handoff.AirflowAccess("http://airflow:8080", "a", SecretStr("s"))),
}


def config(kind: str) -> PipelineConfig:
    body = {
        "metadata": {"namespace": "shop", "name": "orders", "uid": "u1"},
        "spec": {
            "brokerRef": {"name": "local-kafka"},
            "airflow": {"instanceRef": {"kind": kind, "name": "mine"}, "trigger": {"dagId": "process"}},
        },
    }
    wanted = wanted_pipeline(body, HANDED_OVER)
    assert isinstance(wanted, Wanted)
    return wanted.config


def test_a_namespaced_airflow_instance_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_NAMESPACED_REFERENCES_ENV, raising=False)
    listener = service()
    with pytest.raises(ValueError, match="ClusterAirflowInstance"):
        listener._resolve_trigger(config("AirflowInstance"), HANDED_OVER)


def test_without_airflow_access_handed_over_nothing_is_called() -> None:
    listener = service()
    with pytest.raises(ValueError, match="has not handed over"):
        listener._resolve_trigger(config("ClusterAirflowInstance"), handoff.with_description(HANDED_OVER, {}))
    assert listener._resolve_trigger(config("ClusterAirflowInstance"), HANDED_OVER) is not None
