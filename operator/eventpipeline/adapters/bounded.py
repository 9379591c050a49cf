"""Bounded HTTP answers: a URL may come from a namespaced Broker or AirflowInstance, so a tenant
may point the operator at a server of its own. Answers are read up to a byte limit, and their
bodies never reach status, Events or error messages; at most a short, redacted excerpt is logged
at debug level for whoever runs the operator.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import httpx

LOG = logging.getLogger("eventpipeline.adapters.http")

# Every answer the operator and the listener expect is far smaller (a token, a DAG, a page of assets).
MAX_RESPONSE_BYTES = 1024 * 1024
_EXCERPT_CHARACTERS = 200
# Anything that looks like a credential in a logged excerpt is replaced.
_SECRETS = re.compile(
    r'("?(?:access_token|token|password|secret|authorization|api[_-]?key)"?\s*[:=]\s*)("[^"]*"|[^\s,}]+)'
    r"|(?:eyJ[\w-]+\.[\w-]+\.[\w-]*)"
    r"|(?:Bearer\s+[\w.~+/=-]+)",
    re.IGNORECASE,
)


class ResponseTooLarge(httpx.HTTPError):
    """The answer was longer than the limit; nothing of it is used."""


@dataclass(frozen=True)
class BoundedResponse:
    """Status and (at most `MAX_RESPONSE_BYTES` of) body of an HTTP answer."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)


def request(
    client: httpx.Client, method: str, url: str, *, limit: int = MAX_RESPONSE_BYTES, **kwargs: Any
) -> BoundedResponse:
    """Send a request and read at most `limit` bytes of the answer; raises `ResponseTooLarge` beyond
    it, and httpx errors (subclasses of `httpx.HTTPError`) when there is no answer."""
    with client.stream(method, url, **kwargs) as response:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(f"{method} {response.url.path}: answer of {declared} bytes is above {limit}")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(f"{method} {response.url.path}: answer is above {limit} bytes")
            chunks.append(chunk)
        return BoundedResponse(response.status_code, b"".join(chunks))


def redacted_excerpt(content: bytes) -> str:
    """A short, credential-free excerpt of a body, for debug logs only (never status or Events)."""
    text = content[: _EXCERPT_CHARACTERS * 4].decode("utf-8", errors="replace")
    text = _SECRETS.sub(lambda found: (found.group(1) or "") + "<redacted>", text)
    return text[:_EXCERPT_CHARACTERS]


def log_refusal(system: str, action: str, response: BoundedResponse) -> None:
    """Log, at debug level, what a server said when it refused a request."""
    if LOG.isEnabledFor(logging.DEBUG):
        LOG.debug("%s: %s answered %d: %s", system, action, response.status_code, redacted_excerpt(response.content))
