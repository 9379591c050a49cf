"""The provider as Airflow sees it on the real stack: `dev up` installed it into the stack's Airflow,
and Airflow lists it among its providers (its `apache_airflow_provider` entry point and metadata)
with the version of this repository's distribution."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from eventpipeline_devenv.airflow_api import AirflowApi

pytestmark = pytest.mark.integration
PYPROJECT = Path(__file__).resolve().parents[3] / "airflow-provider-eventpipeline" / "pyproject.toml"


def test_airflow_lists_the_provider_with_the_repository_version(airflow: AirflowApi) -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    response = airflow.request("GET", "/api/v2/providers", params={"limit": 100})
    assert response.status_code == 200, response.text
    listed = {provider["package_name"]: provider for provider in response.json()["providers"]}
    assert project["name"] in listed, sorted(listed)
    assert listed[project["name"]]["version"] == project["version"]
    assert "Pulsar" in listed[project["name"]]["description"]
