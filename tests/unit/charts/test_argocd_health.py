"""The Argo CD health check, run by a real Lua 5.1 interpreter (Argo CD's gopher-lua speaks 5.1)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.unit.charts.support import REPO, load_yaml

ARGOCD = REPO / "deploy" / "argocd"
KINDS = ["EventPipeline", "Broker", "ClusterBroker", "AirflowInstance", "ClusterAirflowInstance"]


def _lua() -> Any:
    try:
        from lupa import lua51  # noqa: PLC0415
    except ImportError as error:  # pragma: no cover - a broken dev environment
        raise AssertionError("the lupa package (Lua for Python) is missing: run `make venv`") from error
    return lua51.LuaRuntime(unpack_returned_tuples=True)


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = _lua()
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((ARGOCD / "health.lua").read_text())
    return str(result["status"]), str(result["message"])


def pipeline(generation: int = 2, status: dict[str, Any] | None = None, suspend: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "eventpipeline.dev/v1alpha1",
        "kind": "EventPipeline",
        "metadata": {"name": "orders", "namespace": "shop", "generation": generation},
        "spec": {"brokerRef": {"kind": "ClusterBroker", "name": "kafka-main"}, "suspend": suspend},
    }
    if status is not None:
        body["status"] = status
    return body


def ready(status: str, reason: str, message: str = "", generation: int = 2) -> dict[str, Any]:
    condition = {"type": "Ready", "status": status, "reason": reason, "message": message}
    condition["observedGeneration"] = generation
    return {
        "observedGeneration": generation,
        "conditions": [condition, {"type": "TopicReady", "status": "True", "reason": "TopicReady"}],
    }


def test_ready_pipeline_of_the_current_generation_is_healthy() -> None:
    status, message = health(pipeline(status=ready("True", "Reconciled", "topic, access ... in place")))
    assert status == "Healthy"
    assert message.startswith("Reconciled")


def test_ready_false_is_degraded_with_the_reason_and_what_to_do() -> None:
    text = "topic shop.orders is owned by pipeline payments/ledger; pick another topic.name"
    status, message = health(pipeline(status=ready("False", "TopicConflict", text)))
    assert status == "Degraded"
    assert message == f"TopicConflict: {text}"


def test_ready_unknown_is_progressing() -> None:
    status, message = health(pipeline(status=ready("Unknown", "Waiting", "waiting for TopicReady")))
    assert (status, message) == ("Progressing", "Waiting: waiting for TopicReady")


def test_a_generation_the_operator_has_not_observed_is_progressing() -> None:
    stale = ready("True", "Reconciled", generation=1)
    assert health(pipeline(generation=2, status=stale))[0] == "Progressing"
    assert health(pipeline(generation=2, status={"conditions": []}))[0] == "Progressing"


def test_stale_ready_condition_is_progressing_even_if_status_moved_on() -> None:
    status = ready("False", "BackendUnavailable", generation=1)
    status["observedGeneration"] = 2
    assert health(pipeline(generation=2, status=status))[0] == "Progressing"


def test_no_status_yet_or_no_ready_condition_is_progressing() -> None:
    assert health(pipeline(status=None)) == ("Progressing", "Waiting for the operator to reconcile")
    assert health(pipeline(status={"observedGeneration": 2}))[0] == "Progressing"


def test_suspended_pipeline_is_suspended_whatever_its_conditions() -> None:
    status = ready("False", "Suspended", "spec.suspend is true; nothing is changed")
    assert health(pipeline(status=status, suspend=True))[0] == "Suspended"
    assert health(pipeline(status=None, suspend=True))[0] == "Suspended"


def test_brokers_without_suspend_field_use_the_same_rules() -> None:
    broker = {
        "kind": "ClusterBroker",
        "metadata": {"name": "kafka-main", "generation": 1},
        "spec": {"type": "Kafka"},
        "status": ready("False", "AdminCredentialRefused", "fix the admin Secret", generation=1),
    }
    assert health(broker) == ("Degraded", "AdminCredentialRefused: fix the admin Secret")


def test_argocd_cm_embeds_the_script_for_every_kind() -> None:
    config = load_yaml(ARGOCD / "argocd-cm.yaml")
    script = (ARGOCD / "health.lua").read_text()
    for kind in KINDS:
        assert config["data"][f"resource.customizations.health.eventpipeline.dev_{kind}"] == script


def test_example_application_syncs_the_examples_directory() -> None:
    application = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert application["kind"] == "Application"
    source = application["spec"]["source"]
    assert source["path"] == "examples"
    assert (REPO / source["path"]).is_dir()
    assert "ServerSideApply=true" in application["spec"]["syncPolicy"]["syncOptions"]
