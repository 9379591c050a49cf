"""Pulsar's built-in schema registry over the admin REST API: one schema history per topic.

The compatibility strategy and schema validation are set on the topic (topic policies), so one
pipeline never changes another's. Automatic schema updates by producers exist only as a
namespace policy: it is switched off on the pipeline's Pulsar namespace, which the broker's
namespace template gives to one Kubernetes namespace alone (see docs/schemas.md).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from eventpipeline.adapters import bounded
from eventpipeline.adapters.errors import (
    InvalidRequestError,
    NotAuthorizedError,
    SchemaIncompatibleError,
    UnavailableError,
)
from eventpipeline.adapters.metrics import counted
from eventpipeline.adapters.pulsar import PulsarAdmin, PulsarTopic
from eventpipeline.planning.schema import DesiredSchema, ObservedSchemas, RegisteredVersion, bounded_explanation

# Pulsar's names of the compatibility levels the API offers.
STRATEGIES = {
    "BACKWARD": "BACKWARD",
    "BACKWARD_TRANSITIVE": "BACKWARD_TRANSITIVE",
    "FORWARD": "FORWARD",
    "FORWARD_TRANSITIVE": "FORWARD_TRANSITIVE",
    "FULL": "FULL",
    "FULL_TRANSITIVE": "FULL_TRANSITIVE",
    "NONE": "ALWAYS_COMPATIBLE",
}
_LEVELS = {strategy: level for level, strategy in STRATEGIES.items()}
# Topic policies are written through the namespace's system topic, which the broker creates on
# first use: seconds on a quiet broker, more than the admin client's usual timeout on a busy one.
POLICY_TIMEOUT_SECONDS = 60.0
# How the broker words an incompatible schema (in a 500 of the check, a 409 of the upload).
_EXPLANATION = re.compile(r"(Error during schema compatibility check[^<\"]*|Incompatible schema[^<\"]*)", re.DOTALL)


def explain_incompatibility(content: bytes) -> str | None:
    """The broker's explanation of an incompatibility, bounded; None when the answer holds none."""
    text = content[:16384].decode("utf-8", errors="replace").replace("\\n", "\n").replace("&quot;", '"')
    found = _EXPLANATION.search(text)
    return bounded_explanation(found.group(1)) if found else None


class PulsarSchemas:
    """The schema calls on one Pulsar cluster, through its admin client."""

    removes_single_versions = False  # Pulsar deletes a topic's whole schema history at once

    def __init__(self, admin: PulsarAdmin) -> None:
        self._admin = admin
        self.rate_limiter = admin.rate_limiter

    def subject_for(self, topic: str) -> str:
        return topic

    def client_settings(self) -> dict[str, str]:
        return {}  # Pulsar clients fetch schemas from the broker itself

    def _call(self, method: str, path: str, action: str, **kwargs: Any) -> bounded.BoundedResponse:
        try:
            response = bounded.request(self._admin.http, method, path, **kwargs)
        except httpx.HTTPError as error:
            raise UnavailableError(f"Pulsar: {action} failed: {type(error).__name__}") from error
        if response.status_code in (401, 403):
            raise NotAuthorizedError(f"Pulsar: {action} refused; check the broker's admin token Secret")
        return response

    @staticmethod
    def _schema_path(topic: PulsarTopic) -> str:
        return f"/admin/v2/schemas/{quote(topic.tenant)}/{quote(topic.namespace)}/{quote(topic.name)}"

    @staticmethod
    def _payload(desired: DesiredSchema) -> dict[str, Any]:
        return {"type": desired.type, "schema": desired.definition, "properties": {}}

    def _json(self, response: bounded.BoundedResponse, action: str) -> Any:
        if response.status_code >= 400:
            bounded.log_refusal("Pulsar", action, response)
            raise UnavailableError(f"Pulsar: {action} failed ({response.status_code})")
        try:
            return response.json()
        except ValueError as error:
            raise UnavailableError(f"Pulsar: {action}: the answer is not JSON") from error

    @counted("pulsar")
    def observe(self, subject: str, desired: DesiredSchema) -> ObservedSchemas:
        topic = PulsarTopic.parse(subject)
        path = self._schema_path(topic)
        listed = self._call("GET", f"{path}/schemas", f"listing schemas of {subject}")
        entries = [] if listed.status_code == 404 else self._json(listed, "listing schemas")["getSchemaResponses"]
        versions = tuple(
            RegisteredVersion(int(entry["version"]), None, entry["type"], str(entry["data"]))
            for entry in entries
            if entry.get("type") in ("AVRO", "JSON")
        )
        desired_version = None
        if versions:
            found = self._call(
                "POST", f"{path}/version", f"looking up the schema of {subject}", json=self._payload(desired)
            )
            if found.status_code < 400:
                number = int(self._json(found, "looking up")["version"])
                desired_version = number if number >= 0 else None
        answer = self._call("GET", f"{topic.path}/schemaCompatibilityStrategy", f"reading the strategy of {subject}")
        strategy = self._json(answer, "reading the strategy") if answer.status_code == 200 and answer.content else None
        return ObservedSchemas(versions, desired_version, _LEVELS.get(strategy) if isinstance(strategy, str) else None)

    @counted("pulsar")
    def set_compatibility(self, subject: str, level: str) -> None:
        topic = PulsarTopic.parse(subject)
        action = f"setting schema compatibility {level} on {subject}"
        answer = self._call(
            "PUT",
            f"{topic.path}/schemaCompatibilityStrategy",
            action,
            json=STRATEGIES[level],
            timeout=POLICY_TIMEOUT_SECONDS,
        )
        if answer.status_code >= 400:
            bounded.log_refusal("Pulsar", action, answer)
            raise InvalidRequestError(f"Pulsar: {action} failed ({answer.status_code})")

    @counted("pulsar")
    def enforce(self, subject: str) -> None:
        """Producers may use the registered schema only: validation on the topic, no automatic updates."""
        topic = PulsarTopic.parse(subject)
        namespace = f"/admin/v2/namespaces/{quote(topic.tenant)}/{quote(topic.namespace)}"
        for path, action in (
            (f"{topic.path}/schemaValidationEnforced", f"enforcing schema validation on {subject}"),
            (f"{namespace}/isAllowAutoUpdateSchema", f"reading automatic schema updates of {topic.namespace}"),
        ):
            current = self._call("GET", path, action)
            wanted = path.endswith("schemaValidationEnforced")
            if current.status_code == 200 and current.content and self._json(current, action) is wanted:
                continue
            answer = self._call("POST", path, action, json=wanted, timeout=POLICY_TIMEOUT_SECONDS)
            if answer.status_code >= 400:
                bounded.log_refusal("Pulsar", action, answer)
                raise UnavailableError(f"Pulsar: {action} failed ({answer.status_code})")

    @counted("pulsar")
    def check(self, subject: str, desired: DesiredSchema) -> str | None:
        topic = PulsarTopic.parse(subject)
        action = f"checking schema compatibility on {subject}"
        answer = self._call("POST", f"{self._schema_path(topic)}/compatibility", action, json=self._payload(desired))
        if answer.status_code < 300:
            return None if self._json(answer, action).get("compatibility") is not False else "incompatible"
        explanation = explain_incompatibility(answer.content)
        if explanation is None:
            bounded.log_refusal("Pulsar", action, answer)
            raise UnavailableError(f"Pulsar: {action} failed ({answer.status_code})")
        return explanation

    @counted("pulsar")
    def register(self, subject: str, desired: DesiredSchema) -> RegisteredVersion:
        topic = PulsarTopic.parse(subject)
        action = f"uploading the schema of {subject}"
        answer = self._call("POST", f"{self._schema_path(topic)}/schema", action, json=self._payload(desired))
        if answer.status_code == 409:
            raise SchemaIncompatibleError(explain_incompatibility(answer.content) or "incompatible")
        body = self._json(answer, action)
        version = body["version"]
        number = version["version"] if isinstance(version, dict) else version
        return RegisteredVersion(int(number), None, desired.type, desired.definition)

    def remove_versions(self, subject: str, versions: tuple[int, ...]) -> None:
        raise InvalidRequestError("Pulsar cannot delete single schema versions; clear the topic's schema instead")

    @counted("pulsar")
    def clear(self, subject: str) -> None:
        topic = PulsarTopic.parse(subject)
        answer = self._call("DELETE", f"{self._schema_path(topic)}/schema", f"deleting the schema of {subject}")
        if answer.status_code >= 400 and answer.status_code != 404:
            bounded.log_refusal("Pulsar", "deleting a schema", answer)
            raise UnavailableError(f"Pulsar: deleting the schema of {subject} failed ({answer.status_code})")
