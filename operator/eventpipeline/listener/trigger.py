"""Airflow 3 REST calls that turn a message into a DAG run or an asset event.

One `AirflowTrigger` per Airflow instance, shared by the pipelines that use it (one connection
pool, one token); it is thread-safe. It never raises for an answer: it returns the HTTP status
(None when Airflow did not answer) and leaves the decision to `planning.delivery.classify`.
`trigger_message` is the one place where a message becomes a run (or an asset event).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote

import httpx

from eventpipeline.adapters import bounded
from eventpipeline.adapters.airflow import AirflowDags, AirflowSettings, AirflowTokens
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.tls import verifying_context
from eventpipeline.api.pipeline import TriggerSpec
from eventpipeline.planning import delivery as planning
from eventpipeline.planning.dag_access import Refusal, check_asset_consumers, check_dag
from eventpipeline.planning.delivery import Message
from eventpipeline.planning.schema_versions import behind_message, dag_behind, dag_schema_version

_T = TypeVar("_T")


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no answer (connection refused, timeout)
    detail: str
    seconds: float
    # The listener's own refusal (DAG authorization), not Airflow's: retried like a transient
    # failure whatever the status says, since the DAG owner fixes it by adding a tag.
    held: bool = False
    # Set when the message waits for the DAG: the newest schema version the DAG handles, older
    # than the message's (`holding`).
    dag_schema_version: int | None = None


class Trigger(Protocol):
    """What a worker needs from an Airflow client (AirflowTrigger; fakes in tests)."""

    def dag_run(self, dag_id: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer: ...

    def asset_event(self, asset_uri: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer: ...


def trigger_message(
    trigger: Trigger, spec: TriggerSpec, message: Message, broker_type: Literal["Kafka", "Pulsar"]
) -> Answer:
    """Ask Airflow for the message's run (DagRun mode) or asset event (AssetEvent mode)."""
    if spec.mode == "AssetEvent":
        assert spec.asset_uri is not None
        return trigger.asset_event(spec.asset_uri, message, broker_type)
    return trigger.dag_run(spec.dag_id, message, broker_type)


class AirflowTrigger:
    def __init__(self, settings: AirflowSettings, tokens: AirflowTokens, max_connections: int = 64) -> None:
        self._settings = settings
        self._tokens = tokens
        self._client = httpx.Client(
            base_url=settings.api_url.rstrip("/"),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            verify=verifying_context(),
        )
        self._assets: dict[str, int] = {}
        self._assets_lock = threading.Lock()
        self._authorization = DagAuthorization(AirflowDags(settings, tokens))

    def close(self) -> None:
        self._client.close()
        self._authorization.close()

    def for_namespace(self, namespace: str) -> Trigger:
        """This client as the pipelines of `namespace` use it: only DAGs that accept them are triggered."""
        return AuthorizingTrigger(self, self._authorization, namespace)

    def _post(self, path: str, body: dict[str, Any]) -> Answer:
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                token = self._tokens.token(renew=attempt == 2)
            except AdapterError as error:
                return Answer(None, f"no Airflow token: {error}", time.monotonic() - started)
            try:
                response = bounded.request(
                    self._client, "POST", path, json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as error:
                return Answer(
                    None, f"Airflow did not answer: {type(error).__name__}: {error}", time.monotonic() - started
                )
            if response.status_code == 401 and attempt == 1:
                continue  # the token expired or Airflow restarted with a new secret: renew once
            if response.status_code >= 400:
                bounded.log_refusal("Airflow", path, response)
            return Answer(response.status_code, _detail(response.status_code), time.monotonic() - started)
        raise AssertionError("unreachable")

    def dag_run(self, dag_id: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer:
        """Create the message's DAG run; 409 means it exists already."""
        return self._post(f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", planning.dag_run_body(message, broker_type))

    def asset_event(self, asset_uri: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer:
        """Post an asset event for the message (Airflow may merge several into one run)."""
        asset_id = self._asset_id(asset_uri)
        if isinstance(asset_id, Answer):
            return asset_id
        return self._post("/api/v2/assets/events", planning.asset_event_body(message, broker_type, asset_id))

    def _asset_id(self, uri: str) -> int | Answer:
        with self._assets_lock:
            if uri in self._assets:
                return self._assets[uri]
        started = time.monotonic()
        try:
            token = self._tokens.token()
            response = bounded.request(
                self._client,
                "GET",
                "/api/v2/assets",
                params={"uri_pattern": uri, "limit": 100},
                headers={"Authorization": f"Bearer {token}"},
            )
            assets = response.json().get("assets", []) if response.status_code == 200 else []
        except (httpx.HTTPError, AdapterError, ValueError, AttributeError) as error:
            return Answer(None, f"Airflow did not answer: {type(error).__name__}", time.monotonic() - started)
        if response.status_code != 200:
            return Answer(response.status_code, _detail(response.status_code), time.monotonic() - started)
        for asset in assets:
            if asset.get("uri") == uri:
                with self._assets_lock:
                    self._assets[uri] = int(asset["id"])
                return int(asset["id"])
        return Answer(
            404, f"no asset with uri {uri!r} in Airflow; is a DAG scheduled on it?", time.monotonic() - started
        )


# What an answer means, in words of our own: the body is never repeated into status, Events or
# dead-letter headers, since the AirflowInstance (and so the server) may be a tenant's choice.
_DETAILS = {
    400: "Airflow refused the request as invalid (its api-server log says why)",
    403: "the listener's Airflow user may not do this",
    404: "Airflow has no such DAG or asset, or the listener's user cannot see it",
    408: "Airflow timed out reading the request",
    409: "exists already",
    413: "Airflow refused the request as too large (the message's value, in the run's conf)",
    415: "Airflow refused the request's content type",
    422: "Airflow refused the request as invalid (its api-server log says why)",
    429: "Airflow asked for fewer requests (429 Too Many Requests)",
}


def _detail(status_code: int) -> str:
    if status_code in _DETAILS:
        return _DETAILS[status_code]
    if status_code >= 500:
        return "Airflow failed to handle the request"
    return "unexpected answer"


# -- DAG authorization -------------------------------------------------------------------------

# A DAG's tags change rarely; checking them at most this often keeps authorization from costing
# one extra call per message, and a tag added by the DAG owner takes effect within it.
AUTHORIZATION_TTL_SECONDS = 30.0
# While a DAG is behind the schema (messages wait for it), its tags are read at least this often,
# so a DAG update releases the messages soon (`holding`).
BEHIND_TTL_SECONDS = 10.0
# Answer of a refusal: `held`, so handled as a transient failure: the message is retried (with
# backoff), never committed, never dead-lettered, and the error shows in status.listener.
REFUSED_STATUS = 403


class DagReader(Protocol):
    """What authorization reads from Airflow (adapters.airflow.AirflowDags; fakes in tests)."""

    def tags(self, dag_id: str) -> list[str] | None: ...

    def asset_consumers(self, asset_uri: str) -> list[tuple[str, list[str]]] | None: ...

    def close(self) -> None: ...


class DagAuthorization:
    """Whether a namespace may trigger a DAG or post to an asset, from the DAGs' tags, cached per
    Airflow instance for `ttl` seconds. Thread-safe; a failed read is not cached."""

    def __init__(
        self,
        dags: DagReader,
        ttl: float = AUTHORIZATION_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        behind_ttl: float = BEHIND_TTL_SECONDS,
    ) -> None:
        self._dags = dags
        self._ttl = ttl
        self._behind_ttl = min(ttl, behind_ttl)
        self._clock = clock
        self._lock = threading.Lock()
        self._tags: dict[str, tuple[float, list[str] | None]] = {}
        self._consumers: dict[str, tuple[float, list[tuple[str, list[str]]] | None]] = {}
        # DAGs / assets messages wait for, with the version they state: their tags are read more often.
        self._behind: dict[str, int | None] = {}

    def close(self) -> None:
        self._dags.close()

    def dag_refusal(self, namespace: str, dag_id: str) -> Refusal | None:
        """Why `namespace` may not trigger `dag_id`, or None. A missing DAG is left to Airflow's 404."""
        tags = self._cached(self._tags, dag_id, self._dags.tags)
        refusal = check_dag(namespace, dag_id, tags)
        return refusal if tags is not None else None

    def asset_refusal(self, namespace: str, asset_uri: str) -> Refusal | None:
        """Why `namespace` may not post to `asset_uri` (some scheduled DAG lacks the tag), or None."""
        consumers = self._cached(self._consumers, asset_uri, self._dags.asset_consumers)
        refusal = check_asset_consumers(namespace, asset_uri, consumers)
        return refusal if consumers is not None else None

    def dag_behind(self, dag_id: str, message_version: int) -> int | None:
        """The newest schema version `dag_id` states it handles, when older than `message_version`
        (the message waits); else None. A missing DAG is left to Airflow's 404."""
        tags = self._cached(self._tags, dag_id, self._dags.tags)
        return self._behind_check(dag_id, message_version, None if tags is None else dag_schema_version(tags))

    def asset_behind(self, asset_uri: str, message_version: int) -> int | None:
        """As `dag_behind`, for the DAGs scheduled on an asset: the oldest of their stated versions counts."""
        consumers = self._cached(self._consumers, asset_uri, self._dags.asset_consumers)
        stated = [v for _dag, tags in consumers or [] if (v := dag_schema_version(tags)) is not None]
        return self._behind_check(asset_uri, message_version, min(stated) if stated else None)

    def _behind_check(self, key: str, message_version: int, handled: int | None) -> int | None:
        behind = dag_behind(message_version, handled)
        with self._lock:
            if behind:
                self._behind[key] = handled
            elif self._behind.get(key, handled) != handled:
                del self._behind[key]  # the DAG states another version now: back to the usual period
        return handled if behind else None

    def _cached(self, cache: dict[str, tuple[float, _T]], key: str, read: Callable[[str], _T]) -> _T:
        now = self._clock()
        with self._lock:
            entry = cache.get(key)
            ttl = self._behind_ttl if key in self._behind else self._ttl
            if entry is not None and now - entry[0] < ttl:
                return entry[1]
        value = read(key)  # outside the lock: one slow Airflow answer does not hold up other DAGs
        with self._lock:
            cache[key] = (now, value)
        return value


class AuthorizingTrigger:
    """A `Trigger` for the pipelines of one namespace: refuses, without calling Airflow to trigger,
    a DAG or asset whose DAGs do not carry the namespace's `eventpipeline:` tag."""

    def __init__(self, trigger: Trigger, authorization: DagAuthorization, namespace: str) -> None:
        self._trigger = trigger
        self._authorization = authorization
        self._namespace = namespace

    def dag_run(self, dag_id: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer:
        refused = self._check(lambda: self._authorization.dag_refusal(self._namespace, dag_id))
        refused = refused or self._schema_check(
            message, f"DAG {dag_id!r}", lambda version: self._authorization.dag_behind(dag_id, version)
        )
        return refused or self._trigger.dag_run(dag_id, message, broker_type)

    def asset_event(self, asset_uri: str, message: Message, broker_type: Literal["Kafka", "Pulsar"]) -> Answer:
        refused = self._check(lambda: self._authorization.asset_refusal(self._namespace, asset_uri))
        refused = refused or self._schema_check(
            message,
            f"the DAGs scheduled on asset {asset_uri!r}",
            lambda version: self._authorization.asset_behind(asset_uri, version),
        )
        return refused or self._trigger.asset_event(asset_uri, message, broker_type)

    @staticmethod
    def _schema_check(message: Message, target: str, behind: Callable[[int], int | None]) -> Answer | None:
        """An answer that holds the message when the DAG handles only older schema versions."""
        if message.decoded is None:
            return None
        started = time.monotonic()
        version = message.decoded.schema.version
        try:
            handled = behind(version)
        except AdapterError as error:
            return Answer(None, f"could not check the DAG's tags: {error}", time.monotonic() - started)
        if handled is None:
            return None
        detail = behind_message(target, handled, [version], [message.partition])
        return Answer(REFUSED_STATUS, detail, time.monotonic() - started, held=True, dag_schema_version=handled)

    @staticmethod
    def _check(check: Callable[[], Refusal | None]) -> Answer | None:
        started = time.monotonic()
        try:
            refusal = check()
        except AdapterError as error:
            return Answer(None, f"could not check the DAG's tags: {error}", time.monotonic() - started)
        if refusal is None:
            return None
        return Answer(REFUSED_STATUS, f"{refusal.reason}: {refusal.message}", time.monotonic() - started, held=True)
