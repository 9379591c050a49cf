"""Models → docs/api-reference.md: the API reference is generated, like the CRDs, never written by hand.

It reads the same structural schemas `crdgen` puts in the CRDs, so the reference shows exactly
what the API server enforces: types, defaults, enums, bounds, patterns and CEL rules.
Regenerate with `python -m eventpipeline.apidocs docs/api-reference.md` (or `make apidocs`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from eventpipeline import crdgen
from eventpipeline.api.common import API_VERSION
from eventpipeline.api.resources import ALL_KINDS, Kind

HEADER = """\
# API reference: `{api_version}`

<!-- Generated from the pydantic models in operator/eventpipeline/api/ by
     eventpipeline.apidocs.render_api_reference(); do not edit. Regenerate: `make apidocs`. -->

The operator's API group has five kinds. Platform teams describe brokers and Airflow once,
cluster-wide (`ClusterBroker`, `ClusterAirflowInstance`) or per namespace (`Broker`,
`AirflowInstance`); application teams declare `EventPipeline`s that refer to them, the way
cert-manager's Certificates refer to an Issuer or ClusterIssuer.

Field paths are relative to `spec` or `status`; `[]` marks the items of a list and `{{*}}` the
values of a map. Durations use the units `h`, `m`, `s` and `ms` (`90s`, `1h30m`).

"""


def _escape(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _type(node: dict[str, Any]) -> str:
    kind = str(node.get("type", "any"))
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    return kind


def _constraints(node: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if "enum" in node:
        found.append("one of " + ", ".join(f"`{value}`" for value in node["enum"]))
    bounds = (
        ("minimum", "≥ {}"),
        ("maximum", "≤ {}"),
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
        ("maxProperties", "at most {} entries"),
    )
    if node.get("minLength") == 1:
        found.append("not empty")
    shown = {key: value for key, value in node.items() if (key, value) != ("minLength", 1)}
    found += [template.format(shown[key]) for key, template in bounds if key in shown]
    if "pattern" in node:
        found.append(f"matches `{node['pattern']}`")
    if node.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(node.get("x-kubernetes-list-map-keys", []))
        found.append(f"items unique by `{keys}`")
    return found


def _rules(node: dict[str, Any]) -> list[str]:
    return [str(rule.get("message") or rule["rule"]) for rule in node.get("x-kubernetes-validations", [])]


def _fields(node: dict[str, Any], prefix: str, required: bool) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every field below `node`, depth first, as (path, schema, required)."""
    if prefix:
        yield prefix, node, required
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        yield from _children(node["items"], f"{prefix}[]")
    elif isinstance(node.get("additionalProperties"), dict):
        yield from _children(node["additionalProperties"], f"{prefix}{{*}}")
    else:
        yield from _children(node, prefix)


def _children(node: dict[str, Any], prefix: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    wanted = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield from _fields(child, path, name in wanted)


def _table(schema: dict[str, Any]) -> list[str]:
    rows = ["| Field | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for path, node, required in _fields(schema, "", False):
        default = "required" if required else ""
        if "default" in node:
            default = f"`{_default(node['default'])}`"
        parts = [node.get("description", "")]
        parts += [f"{constraint[0].upper()}{constraint[1:]}." for constraint in _constraints(node)]
        parts += [f"Rule: {rule}." for rule in _rules(node)]
        description = _escape(" ".join(part for part in parts if part))
        rows.append(f"| `{path}` | {_type(node)} | {default} | {description} |")
    return rows


def _default(value: Any) -> str:
    if value is True or value is False:
        return str(value).lower()
    if value == "":
        return '""'
    if value in ({}, []):
        return "{}" if isinstance(value, dict) else "[]"
    return str(value)


def _section(kind: Kind) -> list[str]:
    crd = crdgen.crd_for(kind)
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    spec, status = root["properties"]["spec"], root["properties"]["status"]
    scope = "namespaced" if kind.namespaced else "cluster-scoped"
    short_names = ", ".join(f"`{name}`" for name in kind.short_names)
    lines = [
        f"## {kind.kind}",
        "",
        f"`{API_VERSION}`, {scope}; plural `{kind.plural}`, short names {short_names}.",
        "",
        _escape(spec.get("description", "")),
        "",
    ]
    object_rules = _rules(root)
    if object_rules:
        lines += [*(f"- Rule: {rule}." for rule in object_rules), ""]
    columns = version.get("additionalPrinterColumns", [])
    if columns:
        lines += ["`kubectl get` columns (`-o wide` adds those of priority 1):", ""]
        lines += ["| Column | From | Priority |", "| --- | --- | --- |"]
        lines += [f"| {c['name']} | `{_escape(c['jsonPath'])}` | {c.get('priority', 0)} |" for c in columns]
        lines.append("")
    spec_rules = _rules(spec)
    lines += [f"### {kind.kind} spec", ""]
    if spec_rules:
        lines += [*(f"- Rule: {rule}." for rule in spec_rules), ""]
    lines += [*_table(spec), ""]
    lines += [f"### {kind.kind} status", "", _escape(status.get("description", "")), ""]
    lines += [*_table(status), ""]
    return lines


def render_api_reference() -> str:
    """The Markdown API reference of every kind, from the models (what docs/api-reference.md holds)."""
    lines = [HEADER.format(api_version=API_VERSION).rstrip("\n"), ""]
    lines += ["| Kind | Scope | Short names |", "| --- | --- | --- |"]
    for kind in ALL_KINDS:
        scope = "Namespaced" if kind.namespaced else "Cluster"
        anchor = kind.kind.lower()
        lines.append(f"| [{kind.kind}](#{anchor}) | {scope} | {', '.join(kind.short_names)} |")
    lines.append("")
    for kind in ALL_KINDS:
        lines += _section(kind)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0] if args else "docs/api-reference.md")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_api_reference())
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
