from pathlib import Path

import yaml

from eventpipeline import crdgen
from eventpipeline.api.resources import ALL_KINDS, EVENT_PIPELINE

REPO = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    for name, text in crdgen.crd_files().items():
        committed = REPO / "crds" / name
        assert committed.exists(), f"{committed} missing: run `make crds`"
        assert committed.read_text() == text, f"{committed} is stale: run `make crds`"


def _walk(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for value in node:
            found += _walk(value)
    return found


def test_schemas_are_structural() -> None:
    for kind in ALL_KINDS:
        schema = crdgen.crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for node in _walk(schema):
            assert "$ref" not in node and "anyOf" not in node and "title" not in node
            assert node.get("additionalProperties") is not False


def test_pipeline_crd_carries_the_cel_rules_and_columns() -> None:
    crd = crdgen.crd_for(EVENT_PIPELINE)
    text = yaml.safe_dump(crd)
    assert "self >= oldSelf" in text
    assert "brokerRef cannot change after creation" in text
    assert "duration(self.gracePeriod) < duration(self.rotateEvery)" in text
    columns = [column["name"] for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:4] == ["Broker", "Topic", "DAG", "Ready"]
    assert crd["spec"]["names"]["shortNames"] == ["eps", "epl"]
