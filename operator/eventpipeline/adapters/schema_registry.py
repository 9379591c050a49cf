"""A Confluent-compatible schema registry (Confluent, Apicurio's `ccompat` API, Karapace) over REST.

Subjects follow the topic name strategy (`<topic>-value`). Like every HTTP answer the operator
reads, bodies are bounded; of a refusal only the registry's explanation of an incompatibility
is kept (`explain_incompatibility`), never anything else a server said.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from eventpipeline.adapters import bounded
from eventpipeline.adapters.errors import (
    AdapterError,
    InvalidRequestError,
    NotAuthorizedError,
    SchemaIncompatibleError,
    UnavailableError,
)
from eventpipeline.adapters.metrics import counted
from eventpipeline.adapters.tls import verifying_context
from eventpipeline.planning.schema import (
    DesiredSchema,
    ObservedSchemas,
    RegisteredVersion,
    bounded_explanation,
    kafka_subject,
    registry_client_settings,
)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# What a registry says about an incompatible schema, as Apicurio and Confluent word it.
_EXPLANATION = re.compile(r"(Incompatible[^\"]*|Schema being registered is incompatible[^\"]*)")


def explain_incompatibility(content: bytes) -> str:
    """The registry's explanation of an incompatibility, bounded; nothing else of its answer."""
    found = _EXPLANATION.search(content[:8192].decode("utf-8", errors="replace"))
    return bounded_explanation(found.group(1)) if found else "the registry gave no explanation"


@dataclass(frozen=True)
class RegistrySettings:
    """The operator's way to the registry (`username`/`password`: its own credential, which manages
    subjects) and what clients are given (`client_username`/`client_password`: a read-only one, or none)."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    ca_pem: str | None = None
    timeout_seconds: float = 15.0
    client_username: str | None = None
    client_password: SecretStr | None = None

    def verify(self) -> ssl.SSLContext:
        if self.ca_pem is None or not self.url.startswith("https://"):
            return verifying_context()
        return verifying_context(self.ca_pem)


class ConfluentRegistry:
    """The calls the operator makes to a Confluent-compatible registry: one subject per topic."""

    removes_single_versions = True

    def __init__(self, settings: RegistrySettings) -> None:
        self._settings = settings
        auth = None
        if settings.username is not None and settings.password is not None:
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        self._http = httpx.Client(
            base_url=settings.url.rstrip("/"),
            auth=auth,
            headers={"Accept": CONTENT_TYPE},
            timeout=settings.timeout_seconds,
            verify=settings.verify(),
        )

    def subject_for(self, topic: str) -> str:
        return kafka_subject(topic)

    def client_settings(self) -> dict[str, str]:
        """Keys of the producer Secrets: where confluent-kafka's serializers find the registry, with
        the client credential (clientCredentialsSecretRef) only, never the operator's own."""
        password = self._settings.client_password
        return registry_client_settings(
            self._settings.url, self._settings.client_username, password.get_secret_value() if password else None
        )

    def _call(self, method: str, path: str, action: str, **kwargs: Any) -> bounded.BoundedResponse:
        try:
            response = bounded.request(self._http, method, path, **kwargs)
        except httpx.HTTPError as error:
            raise UnavailableError(f"schema registry: {action} failed: {type(error).__name__}") from error
        if response.status_code in (401, 403):
            raise NotAuthorizedError(
                f"schema registry: {action} refused ({response.status_code}); check the broker's "
                "schemaRegistry.credentialsSecretRef"
            )
        if response.status_code >= 500:
            bounded.log_refusal("schema registry", action, response)
            raise UnavailableError(f"schema registry: {action} failed ({response.status_code})")
        return response

    def _json(self, response: bounded.BoundedResponse, action: str) -> Any:
        try:
            return response.json()
        except ValueError as error:
            raise UnavailableError(f"schema registry: {action}: the answer is not JSON") from error

    def _refused(self, response: bounded.BoundedResponse, action: str) -> AdapterError:
        bounded.log_refusal("schema registry", action, response)
        if response.status_code == 409:
            return SchemaIncompatibleError(explain_incompatibility(response.content))
        if response.status_code == 422:
            return InvalidRequestError(f"schema registry: {action}: the schema is not valid for its type")
        return InvalidRequestError(f"schema registry: {action} failed ({response.status_code})")

    @staticmethod
    def _payload(desired: DesiredSchema) -> dict[str, str]:
        return {"schema": desired.definition, "schemaType": desired.type}

    @counted("schema-registry")
    def observe(self, subject: str, desired: DesiredSchema) -> ObservedSchemas:
        """Every version of the subject, which one holds the desired text, and the subject's compatibility."""
        path = f"/subjects/{quote(subject, safe='')}"
        listed = self._call("GET", f"{path}/versions", f"listing versions of {subject}")
        numbers: list[int] = [] if listed.status_code == 404 else list(self._json(listed, "listing versions"))
        versions = []
        for number in numbers:
            answer = self._call("GET", f"{path}/versions/{number}", f"reading {subject} version {number}")
            if answer.status_code == 404:
                continue  # deleted between the two calls
            body = self._json(answer, "reading a version")
            versions.append(
                RegisteredVersion(
                    int(body["version"]), int(body["id"]), body.get("schemaType", "AVRO"), str(body["schema"])
                )
            )
        desired_version = None
        if versions:
            found = self._call("POST", path, f"looking up the schema in {subject}", json=self._payload(desired))
            if found.status_code == 200:
                desired_version = int(self._json(found, "looking up")["version"])
        config = self._call("GET", f"/config/{quote(subject, safe='')}", f"reading the compatibility of {subject}")
        compatibility = None
        if config.status_code == 200:
            compatibility = self._json(config, "reading compatibility").get("compatibilityLevel")
        return ObservedSchemas(tuple(versions), desired_version, compatibility)

    @counted("schema-registry")
    def set_compatibility(self, subject: str, level: str) -> None:
        action = f"setting compatibility {level} on {subject}"
        answer = self._call("PUT", f"/config/{quote(subject, safe='')}", action, json={"compatibility": level})
        if answer.status_code >= 400:
            raise self._refused(answer, action)

    @counted("schema-registry")
    def check(self, subject: str, desired: DesiredSchema) -> str | None:
        """None when the registry would accept the schema; otherwise its explanation."""
        action = f"checking compatibility with {subject}"
        answer = self._call(
            "POST",
            f"/compatibility/subjects/{quote(subject, safe='')}/versions/latest",
            action,
            json=self._payload(desired),
        )
        if answer.status_code == 404:
            return None  # nothing registered yet: anything is compatible
        if answer.status_code >= 400:
            raise self._refused(answer, action)
        if self._json(answer, action).get("is_compatible") is True:
            return None
        # The check says no without a reason; a registration attempt says why (and is refused).
        try:
            self.register(subject, desired)
        except SchemaIncompatibleError as refused:
            return refused.explanation
        raise SchemaIncompatibleError("the registry's compatibility check and registration disagree")

    @counted("schema-registry")
    def register(self, subject: str, desired: DesiredSchema) -> RegisteredVersion:
        action = f"registering a schema in {subject}"
        path = f"/subjects/{quote(subject, safe='')}"
        answer = self._call("POST", f"{path}/versions", action, json=self._payload(desired))
        if answer.status_code >= 400:
            raise self._refused(answer, action)
        found = self._call("POST", path, f"looking up the schema in {subject}", json=self._payload(desired))
        if found.status_code >= 400:
            raise self._refused(found, action)
        body = self._json(found, action)
        return RegisteredVersion(int(body["version"]), int(body["id"]), desired.type, str(body["schema"]))

    @counted("schema-registry")
    def remove_versions(self, subject: str, versions: tuple[int, ...]) -> None:
        """Delete versions for good (a soft delete first: the Confluent API requires it)."""
        for version in versions:
            path = f"/subjects/{quote(subject, safe='')}/versions/{version}"
            for params in ({}, {"permanent": "true"}):
                answer = self._call("DELETE", path, f"deleting {subject} version {version}", params=params)
                if answer.status_code >= 400 and answer.status_code != 404:
                    raise self._refused(answer, f"deleting {subject} version {version}")

    @counted("schema-registry")
    def clear(self, subject: str) -> None:
        """Delete the subject and every version of it, for good."""
        path = f"/subjects/{quote(subject, safe='')}"
        for params in ({}, {"permanent": "true"}):
            answer = self._call("DELETE", path, f"deleting subject {subject}", params=params)
            if answer.status_code >= 400 and answer.status_code != 404:
                raise self._refused(answer, f"deleting subject {subject}")

    def enforce(self, subject: str) -> None:
        """Nothing to switch on: producers use the registry's ids; the registry alone decides."""
