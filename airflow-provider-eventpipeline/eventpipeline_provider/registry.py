"""The schema registry named in a Kafka connection (`schema.registry.url`, Confluent API)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from eventpipeline_provider.connections import registry_url
from eventpipeline_provider.errors import PublishError
from eventpipeline_provider.schemas import RegisteredSchema, kafka_subject


def latest_schema(extra: Mapping[str, Any], topic: str, timeout: float = 10.0) -> RegisteredSchema:
    """The newest registered version of the topic's value subject."""
    url = registry_url(extra)
    if url is None:
        raise PublishError("the connection names no schema registry (schema.registry.url)")
    auth: tuple[str, str] | None = None
    user_info = extra.get("basic.auth.user.info")
    if user_info:
        user, _, password = str(user_info).partition(":")
        auth = (user, password)
    subject = quote(kafka_subject(topic), safe="")
    response = httpx.get(f"{url}/subjects/{subject}/versions/latest", auth=auth, timeout=timeout)
    if response.status_code != 200:
        raise PublishError(f"the registry has no schema for {kafka_subject(topic)} (HTTP {response.status_code})")
    return RegisteredSchema.from_registry(response.json())
