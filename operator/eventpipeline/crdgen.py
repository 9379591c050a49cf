"""Models → CustomResourceDefinitions: the CRD YAML in `crds/` is generated, never written by hand.

Pydantic emits JSON Schema; the API server wants a *structural* OpenAPI v3 schema: no `$ref`,
no `anyOf` with null for optional fields, no `title`, no `additionalProperties: false`.
CEL rules travel from the models as `x-kubernetes-validations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from eventpipeline.api.common import GROUP, VERSION
from eventpipeline.api.resources import ALL_KINDS, Kind

_DROPPED_KEYS = {"title", "$defs"}


def structural(schema: dict[str, Any], definitions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn a pydantic JSON schema into a structural OpenAPI v3 schema."""
    definitions = definitions if definitions is not None else schema.get("$defs", {})
    node = dict(schema)
    if "$ref" in node:
        target = definitions[node.pop("$ref").rsplit("/", 1)[1]]
        merged = {**target, **node}  # the property's own description / default win
        return structural(merged, definitions)
    if "anyOf" in node:
        variants = [variant for variant in node.pop("anyOf") if variant.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express anyOf {variants} structurally")
        if node.get("default") is None:
            node.pop("default", None)
        return structural({**variants[0], **node}, definitions)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            result[key] = {name: structural(sub, definitions) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = structural(value, definitions)
        else:
            result[key] = value
    return result


def crd_for(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = structural(kind.spec.model_json_schema(by_alias=True))
    status_schema = structural(kind.status.model_json_schema(by_alias=True))
    root: dict[str, Any] = {
        "type": "object",
        "description": f"{kind.kind}: {spec_schema.get('description', '')}",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    if kind.object_rules:
        root["x-kubernetes-validations"] = kind.object_rules
    columns = [
        {**column, "priority": int(column["priority"])} if "priority" in column else column
        for column in kind.printer_columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": kind.short_names,
                "categories": ["eventpipeline"],
            },
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared sub-schemas out in full: anchors and aliases confuse readers and tools."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(kind: Kind) -> str:
    header = "# Generated from the pydantic models by `eventpipeline crds`; do not edit.\n"
    return header + yaml.dump(crd_for(kind), Dumper=_NoAliasDumper, sort_keys=False, width=100)


def crd_files() -> dict[str, str]:
    """File name → YAML text, for every kind."""
    return {f"{GROUP}_{kind.plural}.yaml": render(kind) for kind in ALL_KINDS}


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in crd_files().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
