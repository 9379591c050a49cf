"""Which version of a referenced resource its cached clients belong to."""

from __future__ import annotations

from typing import Any

from eventpipeline.adapters.references import spec_version


def _broker(**metadata: Any) -> dict[str, Any]:
    return {"metadata": {"uid": "u-1", "generation": 3, "resourceVersion": "100", **metadata}, "spec": {}}


def test_status_and_annotation_writes_keep_the_clients_a_spec_change_or_a_new_object_does_not() -> None:
    before = spec_version(_broker())
    # kopf's progress annotations and the broker's Ready condition move only the resourceVersion
    assert spec_version(_broker(resourceVersion="117")) == before
    assert spec_version(_broker(generation=4)) != before
    assert spec_version(_broker(uid="u-2")) != before  # deleted and created again under its name


def test_a_resource_without_a_generation_changes_with_every_write() -> None:
    body = {"metadata": {"uid": "u-1", "resourceVersion": "100"}}
    assert spec_version(body) != spec_version({"metadata": {"uid": "u-1", "resourceVersion": "101"}})
