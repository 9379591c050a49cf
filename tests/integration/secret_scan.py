"""The secret scan: no credential value may appear in a log line, an Event, a status or an annotation.

During the session `SecretScan` follows (list, then watch) the Secrets the operator manages, every
Event, and our own objects, so values and texts of namespaces that tests delete are seen too. At
the end, every credential the operator issued and every admin secret of the stack is looked for
in all of them and in the controller's and the listeners' log files. A finding names where the
value leaked and which Secret key it was, never the value itself.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.integration.support import GROUP, VERSION, Kube

MANAGED_BY = "app.kubernetes.io/managed-by=eventpipeline-operator"
CREDENTIAL_KEYS = ("password", "token", "sasl.jaas.config")
ADMIN_EXPORTS = ("KAFKA_ADMIN_PASSWORD", "PULSAR_ADMIN_TOKEN", "AIRFLOW_PASSWORD")
ADMIN_SECRET_KEYS = ("password", "token", "signingKey")
SYSTEM_NAMESPACE = "eventpipeline-system"
# Shorter values could match by chance; everything the operator issues is far longer.
MIN_VALUE_LENGTH = 12
OUR_PLURALS = (
    "eventpipelines",
    "brokers",
    "clusterbrokers",
    "airflowinstances",
    "clusterairflowinstances",
    "ownershipclaims",
)
WATCH_SECONDS = 10


class SecretScan:
    """Collects credential values and the texts they must never appear in, from watches."""

    def __init__(self, kube: Kube, admin_exports: Mapping[str, str]) -> None:
        self.kube = kube
        self.values: dict[str, str] = {}  # value -> "Secret ns/name key" (where it belongs)
        self.texts: dict[str, str] = {}  # text -> where it was seen
        for name in ADMIN_EXPORTS:
            if admin_exports.get(name):
                self._value(admin_exports[name], f"the stack's {name}")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    # collection ------------------------------------------------------------------------------

    def _value(self, value: str, where: str) -> None:
        if len(value) >= MIN_VALUE_LENGTH:
            self.values.setdefault(value, where)

    def _text(self, text: str, where: str) -> None:
        if text:
            self.texts.setdefault(text, where)

    def take_secret(self, secret: Mapping[str, Any]) -> None:
        metadata = secret["metadata"]
        where = f"Secret {metadata['namespace']}/{metadata['name']}"
        with self._lock:
            for key, encoded in (secret.get("data") or {}).items():
                if key in CREDENTIAL_KEYS:
                    self._value(base64.b64decode(encoded).decode(errors="replace"), f"{where} key {key}")
            self._text(json.dumps(metadata.get("annotations") or {}), f"the annotations of {where}")

    def take_event(self, event: Mapping[str, Any]) -> None:
        metadata, involved = event["metadata"], event.get("involvedObject") or {}
        where = (
            f"Event {metadata.get('namespace')}/{metadata['name']} "
            f"({event.get('reason')} on {involved.get('kind')} {involved.get('namespace')}/{involved.get('name')})"
        )
        text = json.dumps([event.get("message"), event.get("note"), metadata.get("annotations")])
        with self._lock:
            self._text(text, where)

    def take_object(self, item: Mapping[str, Any]) -> None:
        metadata = item["metadata"]
        where = f"{item.get('kind')} {metadata.get('namespace') or ''}/{metadata['name']}".replace(" /", " ")
        with self._lock:
            self._text(json.dumps(item.get("status") or {}), f"the status of {where}")
            self._text(json.dumps(metadata.get("annotations") or {}), f"the annotations of {where}")

    def _sources(self) -> list[tuple[Callable[..., Any], dict[str, Any], Callable[[Mapping[str, Any]], None]]]:
        core, custom = self.kube.core, self.kube.custom
        sources: list[tuple[Callable[..., Any], dict[str, Any], Callable[[Mapping[str, Any]], None]]] = [
            (core.list_secret_for_all_namespaces, {"label_selector": MANAGED_BY}, self.take_secret),
            (core.list_event_for_all_namespaces, {}, self.take_event),
        ]
        for plural in OUR_PLURALS:
            sources.append(
                (
                    custom.list_cluster_custom_object,
                    {"group": GROUP, "version": VERSION, "plural": plural},
                    self.take_object,
                )
            )
        return sources

    def _plain(self, item: Any) -> Mapping[str, Any]:
        if isinstance(item, Mapping):
            return item
        plain: Mapping[str, Any] = self.kube.api_client.sanitize_for_serialization(item)
        return plain

    def _list(
        self, lister: Callable[..., Any], kwargs: dict[str, Any], take: Callable[[Mapping[str, Any]], None]
    ) -> str:
        listing = self._plain(lister(**kwargs))
        for item in listing.get("items") or []:
            take(self._plain(item))
        return str(listing["metadata"]["resourceVersion"])

    def _follow(
        self, lister: Callable[..., Any], kwargs: dict[str, Any], take: Callable[[Mapping[str, Any]], None]
    ) -> None:
        """List, then watch from that version; list again when the watch cannot resume."""
        while not self._stop.is_set():
            try:
                version = self._list(lister, kwargs, take)
                follower = watch.Watch()
                while not self._stop.is_set():
                    for event in follower.stream(
                        lister, resource_version=version, timeout_seconds=WATCH_SECONDS, **kwargs
                    ):
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            take(self._plain(event["object"]))
                        if self._stop.is_set():
                            follower.stop()
                    version = follower.resource_version or version
            except (ApiException, ValueError, KeyError, OSError) as error:
                if not self._stop.is_set():
                    self.errors.append(f"{getattr(lister, '__name__', lister)}: {type(error).__name__}")
                    time.sleep(1)

    def start(self) -> None:
        for lister, kwargs, take in self._sources():
            thread = threading.Thread(target=self._follow, args=(lister, kwargs, take), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop watching, then take one last listing of everything still there."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=WATCH_SECONDS + 5)
        for lister, kwargs, take in self._sources():
            self._list(lister, kwargs, take)
        for secret in self.kube.core.list_namespaced_secret(SYSTEM_NAMESPACE).items:
            for key, encoded in (secret.data or {}).items():
                if key in ADMIN_SECRET_KEYS:
                    self._value(
                        base64.b64decode(encoded).decode(errors="replace"),
                        f"admin Secret {secret.metadata.name} key {key}",
                    )

    # the verdict -----------------------------------------------------------------------------

    def leaks(self, log_files: Iterable[Path]) -> list[str]:
        """Where a collected value appears; each finding names the place and the value's Secret key."""
        found: list[str] = []
        places = [(text, where) for text, where in self.texts.items()]
        blob = "\0".join(text for text, _ in places)
        for value, belongs in self.values.items():
            if value in blob:
                found += [f"{belongs} appears in {where}" for text, where in places if value in text]
        for path in log_files:
            lines = path.read_text(errors="replace")
            for value, belongs in self.values.items():
                if value in lines:
                    line = lines[: lines.index(value)].count("\n") + 1
                    found.append(f"{belongs} appears in the log {path} at line {line}")
        return found


def process_logs(log_dir: Path) -> list[Path]:
    """The controller's and the listeners' log files of a stack (by the names the tests give them)."""
    return sorted(path for path in log_dir.glob("*.log") if "operator" in path.name or "listener" in path.name)
