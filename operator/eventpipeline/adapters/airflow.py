"""Airflow 3 REST API v2 over httpx: tokens, connections and DAG tags, kept per instance.

The API URL may come from a namespaced AirflowInstance, so every answer is read bounded and no
answer body reaches an error message (`adapters.bounded`).

Airflow hides passwords on read, so whether a connection is current is decided by the caller
from a fingerprint of what it last wrote, plus the connection's existence here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from eventpipeline.adapters import bounded
from eventpipeline.adapters.drift import Listing, RecentReads, Snapshot
from eventpipeline.adapters.errors import InvalidRequestError, NotAuthorizedError, UnavailableError
from eventpipeline.adapters.metrics import counted
from eventpipeline.adapters.tls import verifying_context

# Airflow's JWTs last 24 h by default; renew well before, and at once on a 401.
TOKEN_REFRESH_SECONDS = 30 * 60
# Connections per page of the drift check's listing (Airflow's default maximum_page_limit).
CONNECTION_PAGE = 100


@dataclass(frozen=True)
class AirflowSettings:
    api_url: str
    username: str
    password: SecretStr
    timeout_seconds: float = 15.0


class AirflowTokens:
    """JWTs from `POST /auth/token`, cached and renewed; shared by the operator and the listener."""

    def __init__(self, settings: AirflowSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._token: str | None = None
        self._fetched_at = 0.0

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            stale = time.monotonic() - self._fetched_at > TOKEN_REFRESH_SECONDS
            if self._token is None or renew or stale:
                self._token = self._fetch()
                self._fetched_at = time.monotonic()
            return self._token

    def _fetch(self) -> str:
        url = self._settings.api_url.rstrip("/") + "/auth/token"
        body = {"username": self._settings.username, "password": self._settings.password.get_secret_value()}
        try:
            with httpx.Client(timeout=self._settings.timeout_seconds, verify=verifying_context()) as client:
                response = bounded.request(client, "POST", url, json=body)
        except httpx.HTTPError as error:
            raise UnavailableError(f"Airflow: getting a token from {url} failed: {type(error).__name__}") from error
        if response.status_code in (401, 403):
            raise NotAuthorizedError(
                f"Airflow refused the credentials of user {self._settings.username!r}; "
                "fix the Secret named by the AirflowInstance"
            )
        if response.status_code >= 400:
            bounded.log_refusal("Airflow", "getting a token", response)
            raise UnavailableError(f"Airflow: {url} answered {response.status_code}")
        try:
            return str(response.json()["access_token"])
        except (ValueError, KeyError, TypeError) as error:
            raise UnavailableError(f"Airflow: {url} answered without an access_token") from error


class _AirflowApi:
    """Calls of the REST API v2 with the instance's token: one connection pool, answers read
    bounded (`adapters.bounded`), no answer body in any error message."""

    def __init__(self, settings: AirflowSettings, tokens: AirflowTokens | None, needs: str) -> None:
        self._settings = settings
        self._tokens = tokens or AirflowTokens(settings)
        self._needs = needs  # what the Airflow user must be allowed, for a 403's message
        self._client = httpx.Client(
            base_url=settings.api_url.rstrip("/"),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=5.0),
            verify=verifying_context(),
        )

    def close(self) -> None:
        self._client.close()

    def _call(
        self, method: str, path: str, action: str, *, missing_ok: bool = True, **kwargs: Any
    ) -> bounded.BoundedResponse | None:
        """The answer (2xx), or None on a 404 when `missing_ok`. Renews the token once on a 401."""
        for attempt in (1, 2):
            token = self._tokens.token(renew=attempt == 2)
            try:
                response = bounded.request(
                    self._client, method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
                )
            except httpx.HTTPError as error:
                raise UnavailableError(f"Airflow: {action} failed: {type(error).__name__}") from error
            status = response.status_code
            if status == 401 and attempt == 1:
                continue
            if status < 300:
                return response
            if status == 404 and missing_ok:
                return None
            bounded.log_refusal("Airflow", action, response)
            if status in (401, 403):
                raise NotAuthorizedError(f"Airflow: {action} refused ({status}): the Airflow user {self._needs}")
            if status in (400, 404, 422):
                raise InvalidRequestError(
                    f"Airflow: {action} failed ({status}): Airflow refused the request as invalid"
                )
            raise UnavailableError(f"Airflow: {action} failed ({status})")
        raise AssertionError("unreachable")

    def _get_json(self, path: str, action: str, params: dict[str, Any] | None = None) -> Any:
        """A JSON answer, or None on a 404."""
        response = self._call("GET", path, action, params=params)
        if response is None:
            return None
        try:
            return response.json()
        except ValueError as error:
            raise UnavailableError(f"Airflow: {action}: the answer is not JSON") from error


class AirflowConnectionCalls(_AirflowApi):
    """Create, update and delete Airflow connections (`/api/v2/connections`); every method is one
    counted call (a listing one per page); `AirflowConnections` adds the drift-check snapshot."""

    def __init__(self, settings: AirflowSettings, tokens: AirflowTokens | None = None) -> None:
        super().__init__(settings, tokens, needs="may not manage connections")

    @staticmethod
    def _path(connection_id: str) -> str:
        return f"/api/v2/connections/{quote(connection_id, safe='')}"

    @counted("airflow")
    def exists(self, connection_id: str) -> bool:
        return self._call("GET", self._path(connection_id), f"reading connection {connection_id}") is not None

    @counted("airflow")
    def list_connection_page(self, offset: int) -> tuple[list[str], int]:
        """The ids of one page of connections from `offset`, and how many there are in all."""
        listing = self._get_json(
            "/api/v2/connections", "listing connections", params={"limit": CONNECTION_PAGE, "offset": offset}
        )
        if not isinstance(listing, dict):
            raise UnavailableError("Airflow: listing connections: unexpected answer")
        ids = [str(item["connection_id"]) for item in listing.get("connections") or [] if "connection_id" in item]
        return ids, int(listing.get("total_entries") or 0)

    def list_connection_ids(self) -> Listing[set[str]]:
        """Every connection id, a page (`CONNECTION_PAGE`) per call: the drift check's listing."""
        found: set[str] = set()
        offset, total = 0, 1
        while offset < total:
            ids, total = self.list_connection_page(offset)
            if not ids:
                break
            found.update(ids)
            offset += len(ids)
        return Listing(found)

    @counted("airflow")
    def put(self, payload: dict[str, Any]) -> None:
        """Create the connection, or replace every field of an existing one."""
        connection_id = str(payload["connection_id"])
        action = f"writing connection {connection_id}"
        if self._call("PATCH", self._path(connection_id), action, json=payload) is None:
            self._call("POST", "/api/v2/connections", action, missing_ok=False, json=payload)

    @counted("airflow")
    def update(self, payload: dict[str, Any], fields: list[str]) -> bool:
        """Change only `fields` of an existing connection (`PATCH` with `update_mask`); a sensitive
        value sent as Airflow's mask (`***`) keeps the stored one. False when there is no such connection."""
        connection_id = str(payload["connection_id"])
        response = self._call(
            "PATCH",
            self._path(connection_id),
            f"updating connection {connection_id}",
            json=payload,
            params={"update_mask": fields},
        )
        return response is not None

    @counted("airflow")
    def delete(self, connection_id: str) -> None:
        self._call("DELETE", self._path(connection_id), f"deleting connection {connection_id}")


class AirflowConnections(AirflowConnectionCalls):
    """`AirflowConnectionCalls` whose `exists`, inside `drift_reads()`, is answered from one listing of
    the instance's connections per period (a page per `CONNECTION_PAGE` connections instead of one
    read per pipeline); writes mark what they changed, which is then read fresh."""

    def __init__(self, settings: AirflowSettings, tokens: AirflowTokens | None = None) -> None:
        super().__init__(settings, tokens)
        self.snapshot = Snapshot(self.list_connection_ids)

    def exists(self, connection_id: str) -> bool:
        cached = self.snapshot.lookup([connection_id], lambda ids: connection_id in ids)
        return cached.value if cached is not None else super().exists(connection_id)

    def put(self, payload: dict[str, Any]) -> None:
        try:
            super().put(payload)
        finally:
            self.snapshot.touched([str(payload["connection_id"])])

    def update(self, payload: dict[str, Any], fields: list[str]) -> bool:
        try:
            return super().update(payload, fields)
        finally:
            self.snapshot.touched([str(payload["connection_id"])])

    def delete(self, connection_id: str) -> None:
        try:
            super().delete(connection_id)
        finally:
            self.snapshot.touched([connection_id])


# A DAG list this long on one asset is not what a pipeline triggers; refuse rather than page on.
MAX_ASSET_CONSUMERS = 100


class AirflowDags(_AirflowApi):
    """Reads what DAG authorization needs: a DAG's tags, and the DAGs scheduled on an asset.

    Inside `drift_reads()` a DAG's tags come from a read less than a period old: the pipelines
    that trigger one DAG share its read.
    """

    def __init__(self, settings: AirflowSettings, tokens: AirflowTokens | None = None) -> None:
        super().__init__(settings, tokens, needs="needs read access to DAGs and assets")
        self._tags: RecentReads[str, list[str] | None] = RecentReads()

    def tags(self, dag_id: str) -> list[str] | None:
        """The DAG's tags (`GET /api/v2/dags/{dag_id}`); None when Airflow has no such DAG."""
        found = self._tags.get(dag_id, lambda: self.read_tags(dag_id))
        return None if found is None else list(found)

    @counted("airflow")
    def read_tags(self, dag_id: str) -> list[str] | None:
        """The DAG's tags, read now."""
        dag = self._get_json(f"/api/v2/dags/{quote(dag_id, safe='')}", f"reading DAG {dag_id}")
        if dag is None:
            return None
        return [str(tag["name"]) for tag in dag.get("tags") or [] if isinstance(tag, dict) and "name" in tag]

    @counted("airflow")
    def current_version(self, dag_id: str) -> int | None:
        """The number of the DAG's newest version (Airflow 3 `dagVersions`); None without such a DAG."""
        listing = self._get_json(
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagVersions",
            f"reading the versions of DAG {dag_id}",
            params={"order_by": "-version_number", "limit": 1},
        )
        versions = (listing or {}).get("dag_versions") or []
        number = versions[0].get("version_number") if versions and isinstance(versions[0], dict) else None
        return number if isinstance(number, int) else None

    @counted("airflow")
    def asset_consumers(self, asset_uri: str) -> list[tuple[str, list[str]]] | None:
        """(dag_id, tags) of every DAG scheduled on the asset with this URI; None when there is no
        such asset. `uri_pattern` is a substring match, so the URI is compared exactly here."""
        listing = self._get_json(
            "/api/v2/assets", f"finding asset {asset_uri}", params={"uri_pattern": asset_uri, "limit": 100}
        )
        matches = [asset for asset in (listing or {}).get("assets", []) if asset.get("uri") == asset_uri]
        if not matches:
            return None
        dag_ids = sorted({str(dag["dag_id"]) for dag in matches[0].get("scheduled_dags") or []})
        if len(dag_ids) > MAX_ASSET_CONSUMERS:
            raise InvalidRequestError(
                f"asset {asset_uri} has {len(dag_ids)} scheduled DAGs, more than {MAX_ASSET_CONSUMERS}"
            )
        # A DAG that disappeared between the two reads carries no tag: it cannot authorize.
        return [(dag_id, self.tags(dag_id) or []) for dag_id in dag_ids]
