"""Pulsar administration over the admin REST API v2 (pulsar-client has no admin API), and tokens.

Topics are always created partitioned (one partition is fine): a non-partitioned topic could
never grow. Grants are per role; a token cannot be revoked, so each credential generation is
its own role and revocation removes that role's grants.
"""

from __future__ import annotations

import base64
import binascii
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from eventpipeline.adapters import bounded
from eventpipeline.adapters.errors import (
    AdapterError,
    ConflictError,
    InvalidRequestError,
    NotAuthorizedError,
    UnavailableError,
)
from eventpipeline.adapters.metrics import counted
from eventpipeline.adapters.ratelimit import RateLimiter
from eventpipeline.adapters.tls import verifying_context
from eventpipeline.planning.topic import DesiredTopic, ObservedTopic


@dataclass(frozen=True)
class PulsarAdminSettings:
    admin_url: str
    admin_token: SecretStr
    signing_key: SecretStr
    tenant: str
    cluster: str
    ca_pem: str | None = None  # the brokers' CA (PEM), verified on an https:// admin URL
    timeout_seconds: float = 15.0
    max_calls_per_second: float = 50.0

    def verify(self) -> ssl.SSLContext:
        """httpx's `verify`: the given CA only, else httpx's default trust (one context per CA)."""
        if self.ca_pem is None or not self.admin_url.startswith("https://"):
            return verifying_context()
        return verifying_context(self.ca_pem)


@dataclass(frozen=True)
class PulsarTopic:
    """A topic's place in Pulsar: tenant / namespace / local name."""

    tenant: str
    namespace: str
    name: str

    @property
    def full_name(self) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, full_name: str) -> PulsarTopic:
        """The topic a `persistent://tenant/namespace/name` full name stands for."""
        tenant, namespace, name = full_name.removeprefix("persistent://").split("/", 2)
        return cls(tenant, namespace, name)

    @property
    def path(self) -> str:
        return f"/admin/v2/persistent/{quote(self.tenant)}/{quote(self.namespace)}/{quote(self.name)}"


def mint_token(signing_key: SecretStr, role: str, expires_at: datetime | None) -> SecretStr:
    """An HS256 JWT with `sub` = role, the form Pulsar's token authentication provider verifies.

    `signing_key` is the base64 text of the raw key bytes (what `pulsar tokens
    create-secret-key --base64` prints, and what `tokenSecretKey=data:;base64,...` holds).
    """
    claims: dict[str, Any] = {"sub": role}
    if expires_at is not None:
        claims["exp"] = int(expires_at.timestamp())
    try:
        key = base64.b64decode(signing_key.get_secret_value(), validate=True)
    except binascii.Error as error:
        raise InvalidRequestError("the broker's signingKey is not base64 text of the HS256 key") from error
    # PyJWT loads `cryptography` (~11 MB of the controller's resident memory): only with a Pulsar broker.
    import jwt  # noqa: PLC0415

    return SecretStr(jwt.encode(claims, key, algorithm="HS256"))


def token_expiry(now: datetime, rotate_every: timedelta, grace_period: timedelta) -> datetime:
    """Tokens outlive their rotation and grace by a margin, so a late rotation never strands a client."""
    return now.astimezone(UTC) + rotate_every + grace_period + max(rotate_every, timedelta(hours=1))


class PulsarAdmin:
    """Typed calls of the admin REST API that the operator needs."""

    def __init__(self, settings: PulsarAdminSettings) -> None:
        self._settings = settings
        self._http = httpx.Client(
            base_url=settings.admin_url.rstrip("/"),
            headers={"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"},
            timeout=settings.timeout_seconds,
            verify=settings.verify(),
        )
        self.rate_limiter = RateLimiter(settings.max_calls_per_second)

    @property
    def http(self) -> httpx.Client:
        """The authenticated admin HTTP client, for the schema calls (`adapters/pulsar_schema.py`)."""
        return self._http

    @counted("pulsar")
    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, action: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> Any:
        try:
            response = bounded.request(self._http, method, path, **kwargs)
        except httpx.HTTPError as error:
            raise UnavailableError(f"Pulsar: {action} failed: {type(error).__name__}") from error
        if response.status_code in ok:
            return None
        if response.status_code >= 400:
            bounded.log_refusal("Pulsar", action, response)
            raise _translate(response, action)
        try:
            return response.json() if response.content else None
        except ValueError as error:
            raise UnavailableError(f"Pulsar: {action}: the answer is not JSON") from error

    @counted("pulsar")
    def ping(self) -> None:
        self._call("GET", "/admin/v2/clusters", "connecting")

    @counted("pulsar")
    def ensure_namespace(self, tenant: str, namespace: str) -> None:
        """Create the tenant and namespace if missing (409 means they exist)."""
        self._call(
            "PUT",
            f"/admin/v2/tenants/{quote(tenant)}",
            f"creating tenant {tenant}",
            ok=(409,),
            json={"allowedClusters": [self._settings.cluster], "adminRoles": []},
        )
        self._call("PUT", f"/admin/v2/namespaces/{quote(tenant)}/{quote(namespace)}", "creating namespace", ok=(409,))

    @counted("pulsar")
    def describe_topic(self, topic: PulsarTopic) -> ObservedTopic | None:
        listing = self._call(
            "GET",
            f"/admin/v2/persistent/{quote(topic.tenant)}/{quote(topic.namespace)}/partitioned",
            f"listing topics of {topic.tenant}/{topic.namespace}",
            ok=(404,),
        )
        if not listing or topic.full_name not in listing:
            return None
        metadata = self._call("GET", f"{topic.path}/partitions", f"describing {topic.full_name}")
        return ObservedTopic(name=topic.full_name, partitions=int(metadata["partitions"]))

    @counted("pulsar")
    def create_topic(self, topic: PulsarTopic, desired: DesiredTopic) -> None:
        self._call(
            "PUT",
            f"{topic.path}/partitions",
            f"creating {topic.full_name}",
            ok=(409,),
            json=desired.partitions,
        )

    @counted("pulsar")
    def grow_partitions(self, topic: PulsarTopic, total: int) -> None:
        self._call("POST", f"{topic.path}/partitions", f"growing {topic.full_name}", json=total)

    @counted("pulsar")
    def delete_topic(self, topic: PulsarTopic) -> None:
        self._call(
            "DELETE", f"{topic.path}/partitions", f"deleting {topic.full_name}", ok=(404,), params={"force": "true"}
        )

    @counted("pulsar")
    def permissions(self, topic: PulsarTopic) -> dict[str, frozenset[str]]:
        """Role → actions granted on the topic itself (none when the topic or its namespace does not exist)."""
        granted = self._call("GET", f"{topic.path}/permissions", f"reading permissions of {topic.full_name}", ok=(404,))
        return {role: frozenset(actions) for role, actions in (granted or {}).items()}

    @counted("pulsar")
    def grant(self, topic: PulsarTopic, role: str, actions: frozenset[str]) -> None:
        self._call(
            "POST",
            f"{topic.path}/permissions/{quote(role)}",
            f"granting {sorted(actions)} to {role}",
            json=sorted(actions),
        )

    @counted("pulsar")
    def revoke(self, topic: PulsarTopic, role: str) -> None:
        self._call("DELETE", f"{topic.path}/permissions/{quote(role)}", f"revoking {role}", ok=(404, 412))


def _translate(response: bounded.BoundedResponse, action: str) -> AdapterError:
    # The answer's body is never part of the message: admin URLs may come from a namespaced Broker.
    text = f"Pulsar: {action} failed ({response.status_code})"
    if response.status_code in (401, 403):
        return NotAuthorizedError(text + "; check the broker's admin token Secret")
    if response.status_code == 409:
        return ConflictError(text)
    if response.status_code in (400, 412, 422):
        return InvalidRequestError(text)
    return UnavailableError(text)
