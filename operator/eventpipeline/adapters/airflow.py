"""Airflow 3 REST API v2: tokens and connections (apache-airflow-client), kept per instance.

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
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api.connection_api import ConnectionApi
from airflow_client.client.exceptions import ApiException, NotFoundException, UnauthorizedException
from airflow_client.client.models.connection_body import ConnectionBody
from pydantic import SecretStr

from eventpipeline.adapters import bounded
from eventpipeline.adapters.errors import AdapterError, InvalidRequestError, NotAuthorizedError, UnavailableError
from eventpipeline.adapters.metrics import counted

# Airflow's JWTs last 24 h by default; renew well before, and at once on a 401.
TOKEN_REFRESH_SECONDS = 30 * 60


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
            with httpx.Client(timeout=self._settings.timeout_seconds) as client:
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


class AirflowConnections:
    """Create, update and delete Airflow connections."""

    def __init__(self, settings: AirflowSettings, tokens: AirflowTokens | None = None) -> None:
        self._settings = settings
        self._tokens = tokens or AirflowTokens(settings)
        self._configuration = Configuration(host=settings.api_url.rstrip("/"))
        self._connections = ConnectionApi(ApiClient(self._configuration))

    def _api(self) -> ConnectionApi:
        # One client (and connection pool) per instance; the token is read at each request.
        self._configuration.access_token = self._tokens.token()
        return self._connections

    def _with_token(self, action: str, call: Any) -> Any:
        """Run `call(api)`; on a 401 renew the token once and try again."""
        for attempt in (1, 2):
            try:
                return call(self._api())
            except UnauthorizedException:
                if attempt == 2:
                    raise NotAuthorizedError(f"Airflow: {action} refused after a token renewal") from None
                self._tokens.token(renew=True)
            except ApiException as error:
                raise _translate(error, action) from error
            except (httpx.HTTPError, OSError) as error:
                raise UnavailableError(f"Airflow: {action} failed: {error}") from error
        raise AssertionError("unreachable")

    @counted("airflow")
    def exists(self, connection_id: str) -> bool:
        def call(api: ConnectionApi) -> bool:
            try:
                api.get_connection(connection_id, _request_timeout=self._settings.timeout_seconds)
            except NotFoundException:
                return False
            return True

        return bool(self._with_token(f"reading connection {connection_id}", call))

    @counted("airflow")
    def put(self, payload: dict[str, Any]) -> None:
        """Create the connection, or replace every field of an existing one."""
        body = ConnectionBody(**payload)
        connection_id = str(payload["connection_id"])

        def call(api: ConnectionApi) -> None:
            try:
                api.patch_connection(connection_id, body, _request_timeout=self._settings.timeout_seconds)
            except NotFoundException:
                api.post_connection(body, _request_timeout=self._settings.timeout_seconds)

        self._with_token(f"writing connection {connection_id}", call)

    @counted("airflow")
    def delete(self, connection_id: str) -> None:
        def call(api: ConnectionApi) -> None:
            try:
                api.delete_connection(connection_id, _request_timeout=self._settings.timeout_seconds)
            except NotFoundException:
                return

        self._with_token(f"deleting connection {connection_id}", call)


def _translate(error: ApiException, action: str) -> AdapterError:
    # The answer's body is never part of the message: it may come from a server a tenant chose.
    status = error.status or 0
    text = f"Airflow: {action} failed ({status})"
    if error.body:
        bounded.log_refusal("Airflow", action, bounded.BoundedResponse(status, str(error.body).encode()))
    if status == 403:
        return NotAuthorizedError(text + ": the Airflow user may not manage connections")
    if status in (400, 422):
        return InvalidRequestError(f"{text}: Airflow refused the connection's fields as invalid")
    return UnavailableError(text)


# A DAG list this long on one asset is not what a pipeline triggers; refuse rather than page on.
MAX_ASSET_CONSUMERS = 100


class AirflowDags:
    """Reads what DAG authorization needs: a DAG's tags, and the DAGs scheduled on an asset.

    Every answer is read bounded (`adapters.bounded`) and no body reaches an error message.
    """

    def __init__(self, settings: AirflowSettings, tokens: AirflowTokens | None = None) -> None:
        self._settings = settings
        self._tokens = tokens or AirflowTokens(settings)
        self._client = httpx.Client(
            base_url=settings.api_url.rstrip("/"), timeout=httpx.Timeout(settings.timeout_seconds, connect=5.0)
        )

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, action: str, params: dict[str, Any] | None = None) -> Any:
        """GET a JSON answer; None on 404. Renews the token once on a 401."""
        for attempt in (1, 2):
            token = self._tokens.token(renew=attempt == 2)
            try:
                response = bounded.request(
                    self._client, "GET", path, params=params, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as error:
                raise UnavailableError(f"Airflow: {action} failed: {type(error).__name__}") from error
            if response.status_code == 401 and attempt == 1:
                continue
            if response.status_code == 404:
                return None
            if response.status_code in (401, 403):
                raise NotAuthorizedError(
                    f"Airflow: {action} refused ({response.status_code}): the Airflow user "
                    "needs read access to DAGs and assets"
                )
            if response.status_code != 200:
                bounded.log_refusal("Airflow", action, response)
                raise UnavailableError(f"Airflow: {action} failed ({response.status_code})")
            try:
                return response.json()
            except ValueError as error:
                raise UnavailableError(f"Airflow: {action}: the answer is not JSON") from error
        raise AssertionError("unreachable")

    @counted("airflow")
    def tags(self, dag_id: str) -> list[str] | None:
        """The DAG's tags (`GET /api/v2/dags/{dag_id}`); None when Airflow has no such DAG."""
        dag = self._get(f"/api/v2/dags/{quote(dag_id, safe='')}", f"reading DAG {dag_id}")
        if dag is None:
            return None
        return [str(tag["name"]) for tag in dag.get("tags") or [] if isinstance(tag, dict) and "name" in tag]

    @counted("airflow")
    def asset_consumers(self, asset_uri: str) -> list[tuple[str, list[str]]] | None:
        """(dag_id, tags) of every DAG scheduled on the asset with this URI; None when there is no
        such asset. `uri_pattern` is a substring match, so the URI is compared exactly here."""
        listing = self._get(
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
