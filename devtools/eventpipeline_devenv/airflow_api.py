"""A small Airflow REST (v2) client for the local stack's users: the tests, the benchmarks, the demo.

It knows the quirks of the pinned Airflow (3.3.2), so each is handled once, here:

- listing asset events answers 500 while an event's DAG run is queued without a start date
  (the response model fails to validate); it passes once the run starts, so the listing is
  retried for a while instead of failing the caller.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

LISTING_500_RETRIES = 15
LISTING_500_PAUSE_SECONDS = 2.0

NOOP_DAG = """\
from airflow.sdk import DAG, task

with DAG(dag_id="{dag_id}", schedule=None, catchup=False, max_active_runs={max_active_runs}, tags={tags!r}):

    @task
    def noop() -> None:
        pass

    noop()
"""


def noop_dag(dag_id: str, tags: Sequence[str], *, max_active_runs: int = 4) -> str:
    """Source of a DAG that runs one empty task, triggered only from outside (schedule=None).

    `max_active_runs` bounds how many of its runs the scheduler runs at once (the rest stay queued)."""
    return NOOP_DAG.format(dag_id=dag_id, tags=list(tags), max_active_runs=max_active_runs)


def write_dag(folder: str | Path, dag_id: str, source: str) -> Path:
    """Write a DAG file atomically, so the dag-processor never parses half a file."""
    path = Path(folder) / f"{dag_id}.py"
    tmp = path.with_name(f".{dag_id}.py.tmp")
    tmp.write_text(source)
    tmp.replace(path)
    return path


def remove_dag(folder: str | Path, dag_id: str) -> None:
    """Remove a DAG file written by `write_dag`; none there is fine."""
    (Path(folder) / f"{dag_id}.py").unlink(missing_ok=True)


def retry_500(get: Callable[[], httpx.Response], *, retries: int = LISTING_500_RETRIES,
              pause: float = LISTING_500_PAUSE_SECONDS) -> httpx.Response:  # fmt: skip
    """Repeat a read while Airflow answers 500 (see the module docstring); the last answer."""
    response = get()
    for _ in range(retries):
        if response.status_code != 500:
            break
        time.sleep(pause)
        response = get()
    return response


class AirflowApi:
    """Airflow's REST API with the stack's admin user (`dev env` exports); the token renewed on 401."""

    def __init__(self, exports: Mapping[str, str], timeout: float = 60) -> None:
        self.exports = exports
        self.client = httpx.Client(base_url=exports["AIRFLOW_API_URL"], timeout=timeout)
        self.token = ""

    def _renew(self) -> None:
        body = {"username": self.exports["AIRFLOW_USERNAME"], "password": self.exports["AIRFLOW_PASSWORD"]}
        response = self.client.post("/auth/token", json=body)
        response.raise_for_status()
        self.token = str(response.json()["access_token"])

    def headers(self) -> dict[str, str]:
        """The Authorization header, for callers that make many requests with clients of their own."""
        if not self.token:
            self._renew()
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, path, headers=self.headers(), **kwargs)
        if response.status_code == 401:
            self._renew()
            response = self.client.request(method, path, headers=self.headers(), **kwargs)
        return response

    def _pages(self, path: str, key: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = {"limit": 100, "offset": offset, **params}
            response = retry_500(functools.partial(self.request, "GET", path, params=page))
            response.raise_for_status()
            body = response.json()
            found += body[key]
            offset += len(body[key])
            if not body[key] or offset >= body["total_entries"]:
                return found

    def runs(self, dag_id: str, prefix: str = "", **params: Any) -> dict[str, dict[str, Any]]:
        """The DAG's runs whose id starts with `prefix`, by run id (every page)."""
        runs = self._pages(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs", {"order_by": "id", **params})
        return {run["dag_run_id"]: run for run in runs if run["dag_run_id"].startswith(prefix)}

    def asset_events(self, asset_id: int) -> list[dict[str, Any]]:
        """Every event of an asset (every page), through Airflow 3.3.2's 500s on this listing."""
        return self._pages("/api/v2/assets/events", "asset_events", {"asset_id": asset_id})

    def dag_listed(self, dag_id: str) -> bool:
        """Whether the dag-processor has parsed the DAG and the API serves it."""
        return self.request("GET", f"/api/v2/dags/{dag_id}").status_code == 200
