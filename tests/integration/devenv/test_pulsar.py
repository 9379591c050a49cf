"""The local Pulsar standalone authenticates with tokens and enforces authorization as the
operator expects from a production cluster: the admin creates tenants, namespaces, topics and
grants; a role with a grant produces; a role without one is refused by the authorizer; a token
signed with another key is refused at authentication."""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pulsar
import pytest

from eventpipeline_devenv.pulsar import PulsarComponent

pytestmark = pytest.mark.integration

REQUIRED_EXPORTS = (
    "PULSAR_SERVICE_URL",
    "PULSAR_ADMIN_URL",
    "PULSAR_ADMIN_TOKEN",
    "PULSAR_TOKEN_SECRET_KEY_FILE",
    "PULSAR_CLUSTER",
)
# The client's operation timeout: refusals must arrive well within it.
CLIENT_TIMEOUT_SECONDS = 10
HTTP_TIMEOUT_SECONDS = 15.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def exports(stack: Any) -> Mapping[str, str]:
    missing = [name for name in REQUIRED_EXPORTS if name not in stack.exports]
    assert not missing, f"the stack exports no {', '.join(missing)} (is pulsar among its components?)"
    return dict(stack.exports)


@pytest.fixture(scope="module")
def secret_key(exports: Mapping[str, str]) -> bytes:
    return Path(exports["PULSAR_TOKEN_SECRET_KEY_FILE"]).read_bytes()


@pytest.fixture(scope="module")
def admin(exports: Mapping[str, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {exports['PULSAR_ADMIN_TOKEN']}"}
    with httpx.Client(base_url=exports["PULSAR_ADMIN_URL"], headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as client:
        yield client


@dataclass(frozen=True)
class Topic:
    namespace: str  # tenant/namespace
    local_name: str

    @property
    def name(self) -> str:
        return f"persistent://{self.namespace}/{self.local_name}"

    @property
    def admin_path(self) -> str:
        return f"/admin/v2/persistent/{self.namespace}/{self.local_name}"


@pytest.fixture
def topic(admin: httpx.Client, exports: Mapping[str, str]) -> Iterator[Topic]:
    """A topic in a tenant and namespace of its own, created as admin through REST v2."""
    tenant = unique("tenant")
    namespace = f"{tenant}/ns"
    created = Topic(namespace=namespace, local_name=unique("events"))
    response = admin.put(
        f"/admin/v2/tenants/{tenant}",
        json={"adminRoles": [], "allowedClusters": [exports["PULSAR_CLUSTER"]]},
    )
    assert response.status_code == 204, f"creating tenant {tenant}: {response.status_code} {response.text}"
    response = admin.put(f"/admin/v2/namespaces/{namespace}")
    assert response.status_code == 204, f"creating namespace {namespace}: {response.status_code} {response.text}"
    response = admin.put(created.admin_path)
    assert response.status_code == 204, f"creating topic {created.name}: {response.status_code} {response.text}"
    yield created
    # Best effort: names are unique, a leftover does not disturb other tests.
    admin.delete(created.admin_path, params={"force": "true"})
    admin.delete(f"/admin/v2/namespaces/{namespace}", params={"force": "true"})
    admin.delete(f"/admin/v2/tenants/{tenant}")


def grant(admin: httpx.Client, topic: Topic, role: str, actions: list[str]) -> None:
    response = admin.post(f"{topic.admin_path}/permissions/{role}", json=actions)
    assert response.status_code == 204, f"granting {actions} to {role}: {response.status_code} {response.text}"


def client_for(exports: Mapping[str, str], token: str) -> pulsar.Client:
    return pulsar.Client(
        exports["PULSAR_SERVICE_URL"],
        authentication=pulsar.AuthenticationToken(token),
        operation_timeout_seconds=CLIENT_TIMEOUT_SECONDS,
        connection_timeout_ms=5000,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )


def token_for(secret_key: bytes, role: str) -> str:
    return jwt.encode({"sub": role}, secret_key, algorithm="HS256")


# --- a minimal Pulsar binary-protocol handshake --------------------------------------------
# The C++ client under pulsar-client retries a connection the broker closed after a failed
# authentication and finally reports a timeout (apache/pulsar-client-cpp#227), so the broker's
# own answer to CONNECT is read here. Field numbers are those of PulsarApi.proto.
COMMAND_CONNECT, COMMAND_CONNECTED, COMMAND_ERROR = 2, 3, 14
SERVER_ERROR_AUTHENTICATION = 3


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> dict[int, int | bytes]:
    """Top-level fields of a protobuf message (varint and length-delimited ones)."""
    fields: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        if key & 7 == 0:
            fields[key >> 3], pos = _read_varint(data, pos)
        elif key & 7 == 2:
            length, pos = _read_varint(data, pos)
            fields[key >> 3] = data[pos : pos + length]
            pos += length
        else:
            raise AssertionError(f"unexpected protobuf wire type {key & 7}")
    return fields


def broker_answer_to_connect(service_url: str, token: str) -> dict[int, int | bytes]:
    """Send CONNECT with a token and return the fields of the broker's reply (BaseCommand)."""
    address = urlsplit(service_url)
    connect = (
        _field(1, b"eventpipeline-devenv-test")  # client_version
        + _field(3, token.encode())  # auth_data
        + _field(4, 21)  # protocol_version
        + _field(5, b"token")  # auth_method_name
    )
    command = _field(1, COMMAND_CONNECT) + _field(2, connect)
    frame = struct.pack(">II", len(command) + 4, len(command)) + command
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(frame)
        header = _receive(sock, 8)
        total_size, command_size = struct.unpack(">II", header)
        body = _receive(sock, total_size - 4)
    return _fields(body[:command_size])


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the broker closed the connection without answering CONNECT"
        data += chunk
    return data


# --- tests ---------------------------------------------------------------------------------


def test_stack_reports_pulsar_healthy_on_loopback(exports: Mapping[str, str]) -> None:
    assert PulsarComponent().healthy(exports)
    assert urlsplit(exports["PULSAR_SERVICE_URL"]).hostname == "127.0.0.1"
    assert urlsplit(exports["PULSAR_ADMIN_URL"]).hostname == "127.0.0.1"


def test_admin_api_refuses_requests_without_a_token(exports: Mapping[str, str]) -> None:
    response = httpx.get(f"{exports['PULSAR_ADMIN_URL']}/admin/v2/tenants", timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 401


def test_role_granted_produce_publishes(
    exports: Mapping[str, str], admin: httpx.Client, secret_key: bytes, topic: Topic
) -> None:
    role = unique("producer")
    grant(admin, topic, role, ["produce"])
    client = client_for(exports, token_for(secret_key, role))
    try:
        producer = client.create_producer(topic.name)
        message_id = producer.send(b"hello from the devenv test")
        producer.close()
    finally:
        client.close()
    assert message_id is not None
    stats = admin.get(f"{topic.admin_path}/stats")
    assert stats.status_code == 200
    assert stats.json()["msgInCounter"] >= 1


def test_role_granted_only_produce_cannot_consume(
    exports: Mapping[str, str], admin: httpx.Client, secret_key: bytes, topic: Topic
) -> None:
    role = unique("producer")
    grant(admin, topic, role, ["produce"])
    client = client_for(exports, token_for(secret_key, role))
    try:
        with pytest.raises(pulsar.AuthorizationError):
            client.subscribe(topic.name, subscription_name=unique("sub"))
    finally:
        client.close()


def test_role_without_grant_is_refused_by_the_authorizer(
    exports: Mapping[str, str], admin: httpx.Client, secret_key: bytes, topic: Topic
) -> None:
    grant(admin, topic, unique("someone-else"), ["produce"])
    client = client_for(exports, token_for(secret_key, unique("stranger")))
    started = time.monotonic()
    try:
        with pytest.raises(pulsar.AuthorizationError):
            client.create_producer(topic.name)
    finally:
        client.close()
    assert time.monotonic() - started < CLIENT_TIMEOUT_SECONDS / 2, "refused only after a timeout"


def test_token_signed_with_another_key_is_refused_at_authentication(
    exports: Mapping[str, str], secret_key: bytes
) -> None:
    forged = token_for(b"another-key-" + bytes(32), "admin")

    refused = broker_answer_to_connect(exports["PULSAR_SERVICE_URL"], forged)
    assert refused[1] == COMMAND_ERROR, f"broker answered CONNECT with command type {refused[1]!r}"
    error = refused[14]
    assert isinstance(error, bytes)
    assert _fields(error)[2] == SERVER_ERROR_AUTHENTICATION

    # The same handshake with a token signed by the stack's key is accepted.
    accepted = broker_answer_to_connect(exports["PULSAR_SERVICE_URL"], token_for(secret_key, "admin"))
    assert accepted[1] == COMMAND_CONNECTED

    response = httpx.get(
        f"{exports['PULSAR_ADMIN_URL']}/admin/v2/tenants",
        headers={"Authorization": f"Bearer {forged}"},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert response.status_code == 401
