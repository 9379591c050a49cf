"""The docs keep up with the code: every condition reason is explained, every link resolves."""

from __future__ import annotations

import ast
import re

from eventpipeline.api.resources import REFERENCED_PLURALS
from tests.unit.charts.support import REPO

SOURCE = REPO / "operator" / "eventpipeline"
# Where a condition reason is the argument: Outcome(type, status, REASON), run.fail/ok(type, REASON),
# UnresolvedReferenceError(REASON); and the `reason` class attribute of adapter errors.
REASON_ARGUMENT = {"Outcome": 2, "fail": 1, "ok": 1, "UnresolvedReferenceError": 0}


def _strings(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr) and len(node.values) == 2:
        tail = node.values[1]
        if isinstance(tail, ast.Constant) and isinstance(tail.value, str):
            return [kind + tail.value for kind in REFERENCED_PLURALS]  # f"{kind}NotFound"
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def condition_reasons() -> set[str]:
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                function = node.func
                name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
                position = REASON_ARGUMENT.get(name)
                if position is not None and len(node.args) > position:
                    found.update(_strings(node.args[position]))
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if isinstance(statement, ast.Assign) and any(
                        isinstance(target, ast.Name) and target.id == "reason" for target in statement.targets
                    ):
                        found.update(_strings(statement.value))
    return found


def test_troubleshooting_guide_covers_every_condition_reason() -> None:
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    reasons = condition_reasons()
    assert {"Reconciled", "TopicConflict", "ClusterBrokerNotFound", "SecretNotFound", "Suspended"} <= reasons
    missing = sorted(reason for reason in reasons if not re.search(rf"\b{reason}\b", text))
    assert not missing, f"docs/troubleshooting.md does not explain: {missing}"


def test_docs_link_only_to_files_that_exist() -> None:
    for page in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([\w./-]+)(?:#[\w-]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
