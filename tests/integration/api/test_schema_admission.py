"""The API server refuses schema specs it can judge by itself, with a message that says what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.integration.api.test_admission import VALID, refused
from tests.integration.support import Kube, unique

pytestmark = pytest.mark.integration

AVRO = '{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "int"}]}'


def test_a_schema_needs_exactly_one_source(kube: Kube, namespace: str) -> None:
    both = {**VALID, "schema": {"type": "AVRO", "definition": AVRO, "configMapRef": {"name": "s", "key": "k"}}}
    assert "exactly one of schema.definition and schema.configMapRef" in refused(kube, namespace, both)
    neither = {**VALID, "schema": {"type": "AVRO"}}
    assert "exactly one of schema.definition and schema.configMapRef" in refused(kube, namespace, neither)


def test_an_unknown_type_or_compatibility_is_refused(kube: Kube, namespace: str) -> None:
    assert "PROTOBUF" in refused(kube, namespace, {**VALID, "schema": {"type": "PROTOBUF", "definition": "x"}})
    bad = {**VALID, "schema": {"type": "AVRO", "definition": AVRO, "compatibility": "SOMETIMES"}}
    assert "SOMETIMES" in refused(kube, namespace, bad)


def test_the_schema_type_cannot_change_but_the_definition_can(kube: Kube, namespace: str) -> None:
    name = unique("typed")
    spec: dict[str, Any] = {**VALID, "schema": {"type": "AVRO", "definition": AVRO}}
    created = kube.create_pipeline(namespace, name, spec)
    assert created["spec"]["schema"]["compatibility"] == "BACKWARD"  # the default, filled in by the API server
    changed = kube.patch_pipeline(namespace, name, {"spec": {"schema": {"definition": AVRO.replace("id", "key")}}})
    assert "key" in changed["spec"]["schema"]["definition"]
    with pytest.raises(ApiException) as caught:
        kube.patch_pipeline(namespace, name, {"spec": {"schema": {"type": "JSON"}}})
    assert caught.value.status == 422
    assert "schema.type cannot change" in str(caught.value.body)
