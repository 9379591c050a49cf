"""The listener calls a namespaced AirflowInstance's URL only when the cluster admin allows it."""

from __future__ import annotations

import pytest
from kubernetes import client

from eventpipeline.api.common import AirflowInstanceRef
from eventpipeline.listener.service import ListenerService
from eventpipeline.planning.reference_policy import ALLOW_NAMESPACED_REFERENCES_ENV
from eventpipeline.planning.serving import Shard


def service() -> ListenerService:
    return ListenerService(Shard(replicas=1, index=0), replica="test", api_client_factory=client.ApiClient)


def test_a_namespaced_airflow_instance_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_NAMESPACED_REFERENCES_ENV, raising=False)
    listener = service()
    with pytest.raises(ValueError, match="ClusterAirflowInstance"):
        listener._resolve_trigger(AirflowInstanceRef(kind="AirflowInstance", name="mine"), "shop")
