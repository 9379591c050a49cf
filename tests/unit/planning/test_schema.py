"""Schema planning: registration, compatibility first, drift, the listener's hand-off."""

from __future__ import annotations

import json

import pytest

from eventpipeline.api.claim import SchemaVersionRecord
from eventpipeline.planning.schema import (
    EXPLANATION_MAX_LENGTH,
    DesiredSchema,
    ObservedSchemas,
    RegisteredVersion,
    bounded_explanation,
    fingerprint,
    handed_schemas,
    kafka_subject,
    plan_schema,
    registry_client_settings,
)

V1 = '{"type":"record","name":"Order","fields":[{"name":"id","type":"int"}]}'
V2 = '{"type":"record","name":"Order","fields":[{"name":"id","type":"int"},{"name":"n","type":"string","default":""}]}'
DESIRED = DesiredSchema("AVRO", V2, "BACKWARD")


def _held(
    *versions: tuple[int, str], desired: int | None = None, compatibility: str | None = "BACKWARD"
) -> ObservedSchemas:
    return ObservedSchemas(
        tuple(RegisteredVersion(number, 100 + number, "AVRO", text) for number, text in versions),
        desired,
        compatibility,
    )


def _records(*numbers: int) -> list[SchemaVersionRecord]:
    return [SchemaVersionRecord(version=number, id=100 + number, fingerprint=f"f{number}") for number in numbers]


def test_an_empty_subject_gets_the_schema_and_its_compatibility() -> None:
    plan = plan_schema(DESIRED, _held(compatibility=None), [], removes_single_versions=True)
    assert plan.register and plan.set_compatibility
    assert not plan.remove and not plan.reset and not plan.adopt


def test_a_registered_schema_needs_nothing() -> None:
    plan = plan_schema(DESIRED, _held((1, V1), (2, V2), desired=2), _records(1, 2), removes_single_versions=True)
    assert not plan.register and not plan.set_compatibility and not plan.remove and not plan.notes


def test_a_changed_definition_is_registered_after_the_recorded_versions() -> None:
    plan = plan_schema(DESIRED, _held((1, V1)), _records(1), removes_single_versions=True)
    assert plan.register
    assert plan.remove == ()


def test_a_changed_compatibility_is_set() -> None:
    plan = plan_schema(
        DesiredSchema("AVRO", V2, "FULL"), _held((1, V2), desired=1), _records(1), removes_single_versions=True
    )
    assert plan.set_compatibility and not plan.register


def test_a_version_registered_by_hand_is_removed_on_kafka() -> None:
    plan = plan_schema(DESIRED, _held((1, V2), (2, V1), desired=1), _records(1), removes_single_versions=True)
    assert plan.remove == (2,)
    assert not plan.register and not plan.reset
    assert "not registered by the operator" in plan.notes[0]


def test_a_version_registered_by_hand_resets_the_topic_schema_on_pulsar() -> None:
    plan = plan_schema(DESIRED, _held((0, V2), (1, V1), desired=0), _records(0), removes_single_versions=False)
    assert plan.reset and plan.register
    assert plan.remove == ()
    assert plan.forget == (0,)


def test_a_subject_deleted_by_hand_is_registered_again_and_the_lost_versions_forgotten() -> None:
    plan = plan_schema(DESIRED, _held(), _records(1, 2), removes_single_versions=True)
    assert plan.register
    assert plan.forget == (1, 2)


def test_an_unrecorded_version_with_the_desired_text_is_adopted_not_removed() -> None:
    plan = plan_schema(DESIRED, _held((1, V2), desired=1), [], removes_single_versions=True)
    assert plan.adopt == (1,)
    assert not plan.remove and not plan.register


def test_a_spec_set_back_to_an_older_recorded_version_registers_nothing() -> None:
    desired = DesiredSchema("AVRO", V1, "BACKWARD")
    plan = plan_schema(desired, _held((1, V1), (2, V2), desired=1), _records(1, 2), removes_single_versions=True)
    assert not plan.register and not plan.remove


def test_the_hand_off_lists_every_version_oldest_first_with_ids_and_fingerprints() -> None:
    handed = json.loads(handed_schemas([RegisteredVersion(2, 12, "AVRO", V2), RegisteredVersion(1, 11, "AVRO", V1)]))
    assert [entry["version"] for entry in handed] == [1, 2]
    assert handed[0] == {"version": 1, "id": 11, "type": "AVRO", "definition": V1, "fingerprint": fingerprint(V1)}
    assert json.loads(handed_schemas([RegisteredVersion(0, None, "JSON", V1)]))[0]["id"] is None


def test_a_registry_explanation_is_one_bounded_line() -> None:
    assert (
        bounded_explanation("\n --- An unexpected error ---\n\nMessage: Error during check\nStack")
        == "Error during check"
    )
    long = bounded_explanation("x" * 5000)
    assert len(long) == EXPLANATION_MAX_LENGTH


# Producers only look schemas up: they register nothing and use what the operator registered.
LOOKUP_ONLY = {"auto.register.schemas": "false", "use.latest.version": "true"}


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        (None, None, {"schema.registry.url": "http://r", **LOOKUP_ONLY}),
        (
            "u",
            "p",
            {
                "schema.registry.url": "http://r",
                **LOOKUP_ONLY,
                "basic.auth.credentials.source": "USER_INFO",
                "basic.auth.user.info": "u:p",
            },
        ),
    ],
)
def test_producers_get_the_keys_confluent_serializers_read(
    username: str | None, password: str | None, expected: dict[str, str]
) -> None:
    assert registry_client_settings("http://r", username, password) == expected


def test_kafka_subjects_follow_the_topic_name_strategy() -> None:
    assert kafka_subject("shop.orders") == "shop.orders-value"
