from datetime import timedelta

import pytest
from pydantic import ValidationError

from eventpipeline.api.broker import BrokerSpec
from eventpipeline.api.common import parse_duration, wire
from eventpipeline.api.pipeline import EventPipelineSpec


def test_spec_parses_camel_case_and_fills_defaults() -> None:
    spec = EventPipelineSpec.model_validate(
        {"brokerRef": {"name": "kafka-main"}, "topic": {"partitions": 3}, "producers": [{"name": "checkout"}]}
    )
    assert spec.broker_ref.kind == "ClusterBroker"
    assert spec.topic.partitions == 3
    assert spec.topic.deletion_policy == "Retain"
    assert spec.credentials.rotate_every == "24h"


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="partitons"):
        EventPipelineSpec.model_validate({"brokerRef": {"name": "k"}, "topic": {"partitons": 3}})


def test_wire_form_is_camel_case_without_nulls() -> None:
    spec = EventPipelineSpec.model_validate({"brokerRef": {"name": "k"}})
    data = wire(spec)
    assert data["brokerRef"] == {"kind": "ClusterBroker", "name": "k"}
    assert "airflow" not in data


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("1h30m", timedelta(minutes=90)), ("250ms", timedelta(milliseconds=250))],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_malformed_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("1 day")


def test_broker_needs_the_section_of_its_type() -> None:
    with pytest.raises(ValidationError, match="kafka section"):
        BrokerSpec.model_validate({"type": "Kafka"})
