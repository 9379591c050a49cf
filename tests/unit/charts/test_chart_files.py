"""The chart's static files: CRD copies, values and their schema, dashboard and alerts."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.unit.charts.support import CHART, REPO, load_yaml

KOPF_PEERING_CRD = "kopf.dev_clusterkopfpeerings.yaml"


def test_chart_crds_are_identical_copies_of_the_generated_crds() -> None:
    generated = {path.name: path.read_text() for path in (REPO / "crds").glob("*.yaml")}
    shipped = {path.name: path.read_text() for path in (CHART / "crds").glob("*.yaml")}
    assert generated, "no generated CRDs under crds/"
    for name, text in generated.items():
        assert shipped.get(name) == text, f"charts/eventpipeline-operator/crds/{name} differs: cp crds/*.yaml there"
    assert set(shipped) - set(generated) == {KOPF_PEERING_CRD}, "the chart ships a CRD that is not generated"


def test_kopf_peering_crd_is_the_one_kopf_watches() -> None:
    from kopf._cogs.structs import references  # noqa: PLC0415 - kopf's own constant is the truth

    crd = load_yaml(CHART / "crds" / KOPF_PEERING_CRD)
    selector = references.CLUSTER_PEERINGS_K
    assert crd["spec"]["group"] == selector.group
    assert crd["spec"]["names"]["plural"] == selector.any_name
    assert crd["spec"]["scope"] == "Cluster"
    assert [version["name"] for version in crd["spec"]["versions"]] == [selector.version]


def _objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if schema.get("type") == "object" and "properties" in schema:
        found.append((path or "/", schema))
        for name, child in schema["properties"].items():
            found += _objects(child, f"{path}/{name}")
    if isinstance(schema.get("items"), dict):
        found += _objects(schema["items"], f"{path}[]")
    for branch in schema.get("allOf", []):
        found += [(p, s) for p, s in _objects(branch.get("then", {}), path) if p != path]
    return found


def test_every_values_object_of_ours_refuses_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = _objects(schema)
    assert len(objects) > 15
    open_objects = [path for path, node in objects if node.get("additionalProperties") is not False]
    # Kubernetes objects passed through (resources' requests/limits are maps) stay open.
    assert open_objects == [], f"objects without additionalProperties: false: {open_objects}"


def test_default_values_follow_the_schema_key_for_key() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = load_yaml(CHART / "values.yaml")

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if node.get("type") != "object" or "properties" not in node or not isinstance(value, dict):
            return
        for key, child in value.items():
            assert key in node["properties"], f"values.yaml has {path}.{key}, which the schema does not know"
            walk(node["properties"][key], child, f"{path}.{key}")
        if node.get("description", "").startswith("Kubernetes"):
            return  # a Kubernetes type passed through: its optional fields need no default here
        missing = set(node["properties"]) - set(value) - {"global"}
        assert not missing, f"the schema knows {path}.{sorted(missing)} but values.yaml does not document it"

    walk(schema, values, "")


def test_defaults_are_restricted_and_run_as_non_root() -> None:
    values = load_yaml(CHART / "values.yaml")
    pod, container = values["podSecurityContext"], values["containerSecurityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}


def _queried_metrics(text: str) -> set[str]:
    return set(re.findall(r"eventpipeline_[a-z_]+", text))


def _families() -> list[Any]:
    """Our metric families: the listener's registry, and the controller's (the default registry)."""
    import prometheus_client  # noqa: PLC0415

    from eventpipeline.adapters import metrics as controller_metrics  # noqa: PLC0415
    from eventpipeline.listener import metrics as listener_metrics  # noqa: PLC0415

    assert controller_metrics.BACKEND_CALLS is not None
    families = [*listener_metrics.REGISTRY.collect(), *prometheus_client.REGISTRY.collect()]
    return [family for family in families if family.name.startswith("eventpipeline_")]


def _exposed_metrics() -> set[str]:
    """Series names the controller and the listener expose."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {family.name + suffix for family in _families() for suffix in suffixes[family.type]}


def test_dashboard_and_alerts_query_only_metrics_the_code_exposes() -> None:
    dashboard = (CHART / "files" / "dashboards" / "eventpipeline.json").read_text()
    json.loads(dashboard)
    alerts = (CHART / "files" / "alerts.yaml").read_text()
    used = _queried_metrics(dashboard) | _queried_metrics(alerts)
    assert used, "the dashboard queries no metric"
    unknown = used - _exposed_metrics()
    assert not unknown, f"queried but exposed by neither the controller nor the listener: {sorted(unknown)}"


def test_operations_guide_documents_every_metric() -> None:
    documented = set(re.findall(r"`(eventpipeline_[a-z_]+)`", (REPO / "docs" / "operations.md").read_text()))
    exposed = {family.name for family in _families()}
    assert exposed <= documented, f"docs/operations.md does not document {sorted(exposed - documented)}"


def test_dashboard_shows_lag_runs_retries_dead_letters_and_rotation() -> None:
    text = (CHART / "files" / "dashboards" / "eventpipeline.json").read_text().lower()
    for topic in ("lag", "runs triggered", "retries", "dead-lettered", "rotation"):
        assert topic in text, f"the dashboard has no panel about {topic}"
