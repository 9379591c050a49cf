"""Least privilege: the chart's ClusterRoles grant exactly what the code calls.

The calls are derived from the code, not listed by hand:

- Kubernetes client calls (`CoreV1Api` / `CustomObjectsApi` methods) found in the modules a
  process imports, read from their syntax tree. The method name gives the verb and the resource
  (`read_namespaced_secret` → get secrets); a custom object's plural is read from the call's
  arguments (a string, a module constant, or every value of a module-level dict it indexes).
  A `list_*` call in a module that streams a watch also needs `watch`.
- Calls of the `Kube` adapter's methods, each standing for the client calls in its body.
- kopf: the resources its handlers are registered for (from kopf's own registry) are listed,
  watched and patched (finalizer, progress annotations) with their status subresource; kopf
  watches CRDs to notice new ones, posts Events, and with peering uses ClusterKopfPeerings.

The rules the chart renders live in charts/eventpipeline-operator/files/rbac/ (the ClusterRole
templates include them verbatim; tests/integration/charts checks the rendered result).
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from eventpipeline import crdgen
from eventpipeline.api.resources import ALL_KINDS
from tests.unit.charts.support import CHART, REPO, load_yaml

PACKAGE_ROOT = REPO / "operator"
KUBE_ADAPTER = "eventpipeline.adapters.kube"
Permission = tuple[str, str, str]  # (apiGroup, resource, verb)

VERBS = {"read": "get", "get": "get", "list": "list", "create": "create", "replace": "update", "patch": "patch"}
VERBS["delete"] = "delete"
CORE_METHOD = re.compile(
    r"(?P<verb>read|list|create|replace|patch|delete)_(?:namespaced_)?(?P<kind>[a-z_]+?)"
    r"(?P<status>_status)?(?:_for_all_namespaces)?"
)
CUSTOM_METHOD = re.compile(
    r"(?P<verb>get|list|create|replace|patch|delete)_(?P<scope>cluster|namespaced)_custom_object"
)
KOPF_EVENT_FUNCTIONS = {"event", "info", "warn", "exception"}


# -- reading modules ----------------------------------------------------------------------------


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def streams_watches(self) -> bool:
        """Makes a kubernetes `watch.Watch()` and streams from it, or hands its list calls to
        `adapters.informer.informer`, which does."""
        nodes = list(ast.walk(self.tree))
        if any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "informer"
               for node in nodes):  # fmt: skip
            return True
        makes_watch = any(isinstance(node, ast.Call) and _names_watch(node.func) for node in nodes)
        streams = any(isinstance(node, ast.Attribute) and node.attr == "stream" for node in nodes)
        return makes_watch and streams

    def constant(self, name: str) -> Any:
        """A module-level constant (literal) or a name imported from one of our modules."""
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                try:
                    return ast.literal_eval(node.value)
                except ValueError:  # computed from another definition (e.g. a Kind's plural)
                    return getattr(importlib.import_module(self.name), name)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        return getattr(importlib.import_module(node.module), alias.name)
        raise LookupError(f"{self.name}: cannot resolve {name} statically")


def _names_watch(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name == "Watch"


def _module_path(name: str) -> Path | None:
    base = PACKAGE_ROOT.joinpath(*name.split("."))
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _load(name: str) -> Module:
    path = _module_path(name)
    assert path is not None, name
    return Module(name, path, ast.parse(path.read_text()))


def _imports(module: Module) -> Iterator[str]:
    package = module.name if module.path.name == "__init__.py" else module.name.rsplit(".", 1)[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def closure(entry: str) -> dict[str, Module]:
    """Every module of ours that importing `entry` may load (including imports inside functions)."""
    seen: dict[str, Module] = {}
    pending = [entry]
    while pending:
        name = pending.pop()
        if name in seen or not name.startswith("eventpipeline") or _module_path(name) is None:
            continue
        seen[name] = _load(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        pending += [*parents, *_imports(seen[name])]
    return seen


# -- client calls → permissions ------------------------------------------------------------------


def _is_client_method(name: str) -> bool:
    if name.startswith("_") or not (CUSTOM_METHOD.match(name) or CORE_METHOD.fullmatch(name)):
        return False
    return hasattr(client.CoreV1Api, name) or hasattr(client.CustomObjectsApi, name)


def _values(module: Module, node: ast.expr) -> list[str]:
    """The string values an argument can take, or a clear failure."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name):
        value = module.constant(node.id)
        assert isinstance(value, str), f"{module.name}: {node.id} is not a string constant"
        return [value]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        value = getattr(module.constant(node.value.id), node.attr)
        assert isinstance(value, str), f"{module.name}: {ast.unparse(node)} is not a string"
        return [value]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        table = module.constant(node.value.id)
        assert isinstance(table, dict), f"{module.name}: {node.value.id} is not a dict"
        return sorted(str(value) for value in table.values())
    raise AssertionError(
        f"{module.name}:{node.lineno}: cannot tell statically which value `{ast.unparse(node)}` has; "
        "pass a constant, or extend tests/unit/charts/test_rbac.py"
    )


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    for item in call.keywords:
        if item.arg == keyword:
            return item.value
    return call.args[position] if len(call.args) > position else None


def client_call(module: Module, call: ast.Call, method: str) -> tuple[list[Permission], str | None]:
    """Permissions of one client call; the second item names a `plural` parameter left open."""
    if custom := CUSTOM_METHOD.match(method):
        verb = VERBS[custom["verb"]]
        suffix = "/status" if method.endswith("_status") else ""
        position = 2 if custom["scope"] == "cluster" else 3
        group_node, plural_node = _argument(call, 0, "group"), _argument(call, position, "plural")
        assert group_node is not None and plural_node is not None, ast.unparse(call)
        if isinstance(plural_node, ast.Name) and _is_parameter(module, call, plural_node.id):
            groups = _values(module, group_node)
            return [(group, "{" + plural_node.id + "}" + suffix, verb) for group in groups], plural_node.id
        return [
            (group, plural + suffix, verb)
            for group in _values(module, group_node)
            for plural in _values(module, plural_node)
        ], None
    core = CORE_METHOD.fullmatch(method)
    assert core is not None, f"{module.name}: no rule for the client method {method}; extend this test"
    resource = core["kind"].replace("_", "") + "s" + ("/status" if core["status"] else "")
    return [("", resource, VERBS[core["verb"]])], None


def _is_parameter(module: Module, call: ast.Call, name: str) -> bool:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef) and any(call is inner for inner in ast.walk(node)):
            return name in {argument.arg for argument in node.args.args}
    return False


def _calls(module: Module) -> Iterator[tuple[ast.Call, str]]:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node, node.func.attr


def _with_watch(module: Module, permissions: Iterable[Permission]) -> set[Permission]:
    found = set(permissions)
    if module.streams_watches:
        found |= {(group, resource, "watch") for group, resource, verb in found if verb == "list"}
    return found


@dataclass
class AdapterMethod:
    permissions: set[Permission]
    plural_parameter: str | None
    plural_position: int


def kube_adapter() -> dict[str, AdapterMethod]:
    """Each public method of the Kube adapter → the client calls in its body."""
    module = _load(KUBE_ADAPTER)
    methods: dict[str, AdapterMethod] = {}
    for node in ast.walk(module.tree):
        if not (isinstance(node, ast.ClassDef) and node.name == "Kube"):
            continue
        for function in node.body:
            if not isinstance(function, ast.FunctionDef) or function.name.startswith("_"):
                continue
            permissions: set[Permission] = set()
            open_parameter = None
            for call, name in _calls(Module(module.name, module.path, ast.Module([function], []))):
                if _is_client_method(name):
                    found, parameter = client_call(module, call, name)
                    permissions |= set(found)
                    open_parameter = parameter or open_parameter
            parameters = [argument.arg for argument in function.args.args[1:]]
            position = parameters.index(open_parameter) if open_parameter else -1
            methods[function.name] = AdapterMethod(_with_watch(module, permissions), open_parameter, position)
    return methods


def called_permissions(modules: dict[str, Module]) -> set[Permission]:
    """What the modules call: client methods directly, and the Kube adapter's methods."""
    adapter = kube_adapter()
    found: set[Permission] = set()
    for module in modules.values():
        if module.name == KUBE_ADAPTER:
            continue
        direct: set[Permission] = set()
        for call, name in _calls(module):
            if _is_client_method(name):
                direct |= set(client_call(module, call, name)[0])
            elif name in adapter:
                method = adapter[name]
                plurals: list[str] = []
                if method.plural_parameter:
                    node = _argument(call, method.plural_position, method.plural_parameter)
                    assert node is not None, ast.unparse(call)
                    plurals = _values(module, node)
                for group, resource, verb in method.permissions:
                    if method.plural_parameter and resource.startswith("{"):
                        suffix = resource.split("}", 1)[1]
                        found |= {(group, plural + suffix, verb) for plural in plurals}
                    else:
                        found.add((group, resource, verb))
        found |= _with_watch(module, direct)
    return found


# -- kopf ----------------------------------------------------------------------------------------


def kopf_permissions(modules: dict[str, Module]) -> set[Permission]:
    import kopf  # noqa: PLC0415
    from kopf._cogs.structs import references  # noqa: PLC0415

    for name in modules:
        importlib.import_module(name)  # registers the handlers with kopf's default registry
    registry = kopf.get_default_registry()
    handlers = [
        handler
        for part in (registry._indexing, registry._watching, registry._spawning, registry._changing)
        for handler in part.get_all_handlers()
    ]
    with_status = {
        (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        for crd in map(crdgen.crd_for, ALL_KINDS)
        if "status" in crd["spec"]["versions"][0].get("subresources", {})
    }
    found: set[Permission] = set()
    for handler in handlers:
        selector = handler.selector
        plural = selector.plural or selector.any_name
        found |= {(selector.group, plural, verb) for verb in ("list", "watch", "patch")}
        if (selector.group, plural) in with_status:
            found.add((selector.group, f"{plural}/status", "patch"))
    if any(
        isinstance(call.func, ast.Attribute)
        and call.func.attr in KOPF_EVENT_FUNCTIONS
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "kopf"
        for module in modules.values()
        for call, _ in _calls(module)
    ):
        found.add((references.EVENTS.group, references.EVENTS.any_name, "create"))
    crds = references.CRDS
    found |= {(crds.group, crds.any_name, verb) for verb in ("list", "watch")}
    return found


def peering_permissions() -> set[Permission]:
    from kopf._cogs.structs import references  # noqa: PLC0415

    peering = references.CLUSTER_PEERINGS_K
    return {(peering.group, peering.any_name, verb) for verb in ("list", "watch", "patch")}


# -- the chart's rules ---------------------------------------------------------------------------


def granted(file_name: str) -> set[Permission]:
    rules = load_yaml(CHART / "files" / "rbac" / file_name)
    found: set[Permission] = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"{file_name}: unexpected keys in {rule}"
        for value in (*rule["apiGroups"], *rule["resources"], *rule["verbs"]):
            assert value != "*", f"{file_name}: wildcards are not least privilege: {rule}"
        found |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return found


def _difference(needed: set[Permission], given: set[Permission]) -> str:
    missing = "\n".join(f"  missing: {p}" for p in sorted(needed - given))
    extra = "\n".join(f"  granted but never called: {p}" for p in sorted(given - needed))
    return f"\n{missing}\n{extra}"


# -- tests ---------------------------------------------------------------------------------------


def test_controller_cluster_role_grants_exactly_what_the_controller_calls() -> None:
    modules = closure("eventpipeline.controller")
    needed = called_permissions(modules) | kopf_permissions(modules)
    given = granted("controller.yaml")
    assert needed == given, _difference(needed, given)


def test_peering_rules_are_what_kopf_peering_uses() -> None:
    needed, given = peering_permissions(), granted("peering.yaml")
    assert needed == given, _difference(needed, given)


def test_listener_cluster_role_grants_exactly_what_the_listener_calls() -> None:
    modules = closure("eventpipeline.listener")
    assert any(name != "eventpipeline.listener" for name in modules), "the listener imports nothing of ours?"
    needed = called_permissions(modules)
    given = granted("listener.yaml") | granted("listener-namespace.yaml")
    assert needed == given, _difference(needed, given)


def test_the_listener_reads_secrets_of_its_own_namespace_only() -> None:
    """Cluster-wide it may read no Secret at all, not even one by name: the controller hands it
    the Airflow instance's credential in its own namespace."""
    assert not {permission for permission in granted("listener.yaml") if permission[1] == "secrets"}
    assert {("", "secrets", verb) for verb in ("get", "list", "watch")} == granted("listener-namespace.yaml")
    calls = {
        node.func.attr
        for module in closure("eventpipeline.listener").values()
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "list_secret_for_all_namespaces" not in calls


def test_derivation_sees_the_calls_it_must() -> None:
    """Guards the derivation itself: the adapter's known calls are recognised."""
    adapter = kube_adapter()
    assert ("", "secrets", "get") in adapter["read_secret"].permissions
    assert {("", "secrets", "create"), ("", "secrets", "update")} <= adapter["write_secret"].permissions
    assert adapter["get_custom"].plural_parameter == "plural"
    controller = called_permissions(closure("eventpipeline.controller"))
    assert ("eventpipeline.dev", "clusterbrokers", "get") in controller
