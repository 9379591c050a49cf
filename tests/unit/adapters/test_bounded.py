"""Answers from URLs a tenant may choose are read bounded and never reflected into messages."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from eventpipeline.adapters import bounded
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.adapters.pulsar import PulsarAdmin, PulsarAdminSettings


def client(handler: httpx.MockTransport) -> httpx.Client:
    return httpx.Client(transport=handler, base_url="http://tenant.example")


def test_a_small_answer_is_read() -> None:
    http = client(httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True})))
    response = bounded.request(http, "GET", "/x")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_an_answer_above_the_limit_is_refused_by_its_declared_length() -> None:
    http = client(httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * 2000)))
    with pytest.raises(bounded.ResponseTooLarge):
        bounded.request(http, "GET", "/x", limit=1000)


def test_an_answer_above_the_limit_is_refused_while_streaming() -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 600] * 1000))  # no Content-Length

    with pytest.raises(bounded.ResponseTooLarge):
        bounded.request(client(httpx.MockTransport(endless)), "GET", "/x", limit=1000)


def test_excerpts_for_debug_logs_hide_credentials_and_are_short() -> None:
    body = b'{"access_token": "eyJhbGciOi.eyJzdWIi.sig", "password": "hunter2", "x": "' + b"y" * 1000 + b'"}'
    excerpt = bounded.redacted_excerpt(body)
    assert "hunter2" not in excerpt
    assert "eyJ" not in excerpt
    assert len(excerpt) <= 200


def test_pulsar_errors_carry_the_status_never_the_body() -> None:
    admin = PulsarAdmin(
        PulsarAdminSettings(
            admin_url="http://tenant.example",
            admin_token=SecretStr("t"),
            signing_key=SecretStr("k"),
            tenant="t",
            cluster="c",
        )
    )
    admin._http = client(httpx.MockTransport(lambda request: httpx.Response(400, text="SECRET internal page")))
    with pytest.raises(AdapterError) as caught:
        admin.ping()
    assert "(400)" in str(caught.value)
    assert "SECRET" not in str(caught.value)
