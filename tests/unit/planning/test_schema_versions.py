"""The schemas hand-off, the wire format and the DAG's schema tag: pure, no servers."""

from __future__ import annotations

import pytest

from eventpipeline.planning.schema_versions import (
    HandoffError,
    SchemaVersion,
    UndecodableError,
    behind_message,
    dag_behind,
    dag_schema_version,
    parse_schemas,
    schemas_json,
    split_wire_format,
    version_by_id,
    version_by_number,
)

V1 = SchemaVersion(version=1, id=7, type="AVRO", definition='"string"', fingerprint="aa")
V2 = SchemaVersion(version=2, id=9, type="AVRO", definition='"string"', fingerprint="bb")


def test_the_handoff_round_trips_oldest_first() -> None:
    assert parse_schemas(schemas_json([V2, V1])) == (V1, V2)


@pytest.mark.parametrize("text", [None, "", "  ", "[]"])
def test_no_key_or_an_empty_list_means_no_schema(text: str | None) -> None:
    assert parse_schemas(text) == ()


def test_fields_the_listener_does_not_know_are_ignored() -> None:
    text = '[{"version": 0, "id": null, "type": "JSON", "definition": "{}", "fingerprint": "x", "later": 1}]'
    [only] = parse_schemas(text)
    assert (only.version, only.id, only.type) == (0, None, "JSON")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "not JSON"),
        ('{"version": 1}', "JSON list"),
        ('[{"version": 1, "type": "XML", "definition": ""}]', "0.type"),
        ('[{"version": -1, "type": "AVRO", "definition": ""}]', "0.version"),
        ('[{"version": 1, "type": "AVRO", "definition": ""}, {"version": 1, "type": "AVRO", "definition": ""}]',
         "version twice"),
        ('[{"version": 1, "id": 3, "type": "AVRO", "definition": ""}, '
         '{"version": 2, "id": 3, "type": "AVRO", "definition": ""}]', "id twice"),
    ],
)  # fmt: skip
def test_a_handoff_the_controller_would_not_write_is_refused_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(HandoffError, match=says):
        parse_schemas(text)


def test_the_wire_format_gives_the_schema_id_and_the_payload() -> None:
    assert split_wire_format(b"\x00\x00\x00\x01\x02abc") == (258, b"abc")


@pytest.mark.parametrize(
    ("data", "says"),
    [(None, "no value"), (b"\x00\x00", "shorter"), (b'{"json": 1}', "magic byte 0 \\(found 123\\)")],
)
def test_a_value_not_in_the_wire_format_is_undecodable_for_good(data: bytes | None, says: str) -> None:
    with pytest.raises(UndecodableError, match=says) as raised:
        split_wire_format(data)
    assert not raised.value.retriable


def test_an_unknown_schema_id_or_version_may_be_handed_over_later_so_it_is_retriable() -> None:
    assert version_by_id([V1, V2], 9) == V2
    assert version_by_number([V1, V2], 1) == V1
    with pytest.raises(UndecodableError, match=r"schema id 4 .*known ids: 7, 9") as by_id:
        version_by_id([V1, V2], 4)
    with pytest.raises(UndecodableError, match=r"version 5 .*known: 1, 2") as by_number:
        version_by_number([V1, V2], 5)
    assert by_id.value.retriable and by_number.value.retriable
    with pytest.raises(UndecodableError, match="no schema version") as none:
        version_by_number([V1], None)
    assert not none.value.retriable


@pytest.mark.parametrize(
    ("tags", "version"),
    [
        (["eventpipeline:shop"], None),
        ([], None),
        (["eventpipeline-schema:3"], 3),
        (["eventpipeline-schema:2", "eventpipeline-schema:5"], 5),
        (["eventpipeline-schema:two"], 0),
        (["eventpipeline-schema:two", "eventpipeline-schema:4"], 4),
    ],
)
def test_a_dag_states_the_newest_version_it_handles_by_tag(tags: list[str], version: int | None) -> None:
    assert dag_schema_version(tags) == version


def test_only_a_newer_version_than_the_dag_states_waits() -> None:
    assert dag_behind(3, 2)
    assert not dag_behind(2, 2) and not dag_behind(1, 2)
    assert not dag_behind(9, None), "a DAG without the tag takes every version"


def test_the_hold_message_names_both_versions_and_the_tag_that_releases() -> None:
    text = behind_message("DAG 'orders'", 1, [3, 2, 2], [1, 0])
    assert text.startswith("DagBehindSchema: DAG 'orders' handles schema versions up to 1")
    assert "version 2, 3 wait on partition(s) 0, 1" in text
    assert "'eventpipeline-schema:3' or newer" in text
