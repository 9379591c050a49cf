from pathlib import Path

from eventpipeline.api.resources import ALL_KINDS
from eventpipeline.apidocs import render_api_reference

REPO = Path(__file__).resolve().parents[2]


def test_committed_api_reference_matches_the_models() -> None:
    committed = REPO / "docs" / "api-reference.md"
    assert committed.exists(), f"{committed} missing: run `make apidocs`"
    assert committed.read_text() == render_api_reference(), f"{committed} is stale: run `make apidocs`"


def test_reference_documents_every_kind_and_its_admission_rules() -> None:
    text = render_api_reference()
    for kind in ALL_KINDS:
        assert f"## {kind.kind}\n" in text
    assert "partitions can only grow" in text
    assert "| `topic.partitions` | integer | `1` |" in text
    assert "| `brokerRef.name` | string | required |" in text
