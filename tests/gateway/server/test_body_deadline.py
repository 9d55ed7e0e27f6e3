"""The one body deadline (`gateway.server.uvicorn_deadlines` times it, `gateway.server.edge`
answers it): on Sluice's HTTP protocol, a pipeline route's body that stops arriving gets the
edge's 408 (with the request id) at the protocol's deadline, not at one of the edge's own."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.server.uvicorn_deadlines import deadline_protocol
from gateway.settings import Settings
from tests.conftest import DEMO_KEY
from tests.helpers import until

PROTOCOL_BODY_TIMEOUT = 0.5  # what the protocol is given
APP_BODY_TIMEOUT = 120.0  # what the app's own settings say: far past the client's patience below
CLIENT_PATIENCE = 30.0  # seconds the client waits for an answer: a bound, never an expectation


@asynccontextmanager
async def protocol_served(settings: Settings) -> AsyncIterator[int]:
    app = create_app(settings.model_copy(update={"body_timeout": APP_BODY_TIMEOUT}), audit=MemoryAuditSink())
    protocol = deadline_protocol(settings.model_copy(update={"body_timeout": PROTOCOL_BODY_TIMEOUT}))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=protocol, log_level="warning", lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), "uvicorn to start")
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


def read_answer(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_PATIENCE) as sock:
        sock.sendall(head + b'{"model": "gpt-4o-mini", ')  # and the rest never comes
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
async def test_the_protocols_deadline_is_answered_by_the_edge(
    demo_settings: Settings, fake: FakeUpstream, path: str
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEMO_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    async with protocol_served(demo_settings) as port:
        answer = await asyncio.to_thread(read_answer, port, head)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", answer[:300]
    headers = rest.split(b"\r\n\r\n", 1)[0].lower()
    assert b"x-request-id: " in headers  # the edge's answer, not the protocol's
    assert b"connection: close" in headers
    assert f"within {PROTOCOL_BODY_TIMEOUT:g} s".encode() in answer
    assert fake.requests == []
