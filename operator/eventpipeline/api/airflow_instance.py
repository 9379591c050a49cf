"""`ClusterAirflowInstance` / `AirflowInstance`: an Airflow 3 deployment reached through its REST API."""

from __future__ import annotations

from pydantic import Field

from eventpipeline.api.common import ApiModel, SecretKeyRef


class AirflowInstanceSpec(ApiModel):
    """Where Airflow's API is and how the operator and the listener get a token for it."""

    api_url: str = Field(
        min_length=1,
        pattern=r"^https?://",
        description="Base URL of the Airflow 3 api-server, e.g. http://airflow-api.airflow:8080.",
    )
    credentials_secret_ref: SecretKeyRef = Field(
        description="Secret with keys `username` and `password`; exchanged for a JWT at /auth/token."
    )
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        description='Namespaces whose pipelines may use this Airflow (shell-style patterns; "*" for '
        "all). A namespaced AirflowInstance is always usable from its own namespace.",
    )
