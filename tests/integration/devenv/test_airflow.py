"""The local Airflow behaves as the operator expects from a real deployment: a DAG file dropped
into the DAGs folder is parsed within seconds, unpaused; a DAG run created through the REST API
with a chosen run id runs to success; the same run id is refused with 409; a login with a
wrong password, or a request without a token, is refused."""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

REQUIRED_EXPORTS = ("AIRFLOW_API_URL", "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD", "AIRFLOW_DAGS_FOLDER")
PARSE_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def exports(stack: Any) -> Mapping[str, str]:
    missing = [name for name in REQUIRED_EXPORTS if name not in stack.exports]
    assert not missing, f"the stack exports no {', '.join(missing)} (is airflow among its components?)"
    return dict(stack.exports)


def get_token(exports: Mapping[str, str], password: str) -> httpx.Response:
    return httpx.post(
        f"{exports['AIRFLOW_API_URL']}/auth/token",
        json={"username": exports["AIRFLOW_USERNAME"], "password": password},
        timeout=10,
    )


@pytest.fixture(scope="module")
def api(exports: Mapping[str, str]) -> Iterator[httpx.Client]:
    response = get_token(exports, exports["AIRFLOW_PASSWORD"])
    assert response.status_code in (200, 201), f"admin login failed: {response.status_code} {response.text}"
    token = response.json()["access_token"]
    with httpx.Client(
        base_url=f"{exports['AIRFLOW_API_URL']}/api/v2",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as client:
        yield client


def write_dag(dags_folder: Path, dag_id: str) -> Path:
    """Write a one-task DAG atomically, so the dag-processor never parses half a file."""
    source = textwrap.dedent(
        f"""
        from airflow.sdk import DAG
        from airflow.providers.standard.operators.python import PythonOperator

        with DAG(dag_id={dag_id!r}, schedule=None, catchup=False):
            PythonOperator(task_id="hello", python_callable=lambda: print("hello"))
        """
    )
    path = dags_folder / f"{dag_id}.py"
    tmp = dags_folder / f".{dag_id}.py.tmp"
    tmp.write_text(source)
    os.replace(tmp, path)
    return path


def wait_for(what: str, timeout: float, check: Any) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {last!r})")


@pytest.fixture
def dag_id(exports: Mapping[str, str], api: httpx.Client) -> Iterator[str]:
    dag_id = f"devenv_test_{uuid.uuid4().hex[:10]}"
    path = write_dag(Path(exports["AIRFLOW_DAGS_FOLDER"]), dag_id)
    yield dag_id
    path.unlink(missing_ok=True)


def test_dag_file_is_parsed_and_a_run_with_a_chosen_id_succeeds_once(api: httpx.Client, dag_id: str) -> None:
    def parsed() -> dict[str, Any] | None:
        response = api.get(f"/dags/{dag_id}")
        return response.json() if response.status_code == 200 else None

    dag = wait_for(f"DAG {dag_id} to be parsed", PARSE_TIMEOUT, parsed)
    assert dag["is_paused"] is False

    run_id = f"devenv-{uuid.uuid4().hex[:10]}"
    body = {"dag_run_id": run_id, "logical_date": None, "conf": {"source": "test"}}
    created = api.post(f"/dags/{dag_id}/dagRuns", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["dag_run_id"] == run_id

    duplicate = api.post(f"/dags/{dag_id}/dagRuns", json=body)
    assert duplicate.status_code == 409, duplicate.text

    def finished() -> str | None:
        state = str(api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"])
        return state if state in ("success", "failed") else None

    assert wait_for(f"run {run_id} to finish", RUN_TIMEOUT, finished) == "success"


def test_wrong_password_gets_no_token(exports: Mapping[str, str]) -> None:
    response = get_token(exports, exports["AIRFLOW_PASSWORD"] + "-wrong")
    assert response.status_code == 401, f"{response.status_code} {response.text}"
    assert "access_token" not in response.text


def test_api_refuses_requests_without_a_token(exports: Mapping[str, str]) -> None:
    response = httpx.get(f"{exports['AIRFLOW_API_URL']}/api/v2/dags", timeout=10)
    assert response.status_code == 401, f"{response.status_code} {response.text}"
