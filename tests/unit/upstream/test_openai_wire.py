"""gateway/upstream/openai_wire.py: the pass-through adapter against respx at the HTTP seam."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import respx

from gateway.upstream.base import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTarget,
)
from gateway.upstream.openai_wire import OpenAIWireAdapter
from tests.gateway.support import mocked_internet

BASE = "http://upstream.test/v1"
TARGET = UpstreamTarget(
    model="openai/gpt-4o-mini", upstream_model="gpt-4o-mini", api_base=BASE, api_key="sk-upstream-unit"
)
BODY = {"messages": [{"role": "user", "content": "Hello"}]}
COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
}


@pytest.fixture
async def adapter() -> AsyncIterator[OpenAIWireAdapter]:
    wire = OpenAIWireAdapter()
    yield wire
    await wire.aclose()


@pytest.fixture
def mock() -> Any:
    with mocked_internet() as router:
        yield router


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events
    )


def chunk(content: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}}],
        **extra,
    }


async def test_chat_sends_the_upstream_model_and_key_and_returns_the_answer(
    adapter: OpenAIWireAdapter, mock: respx.MockRouter
) -> None:
    route = mock.post(f"{BASE}/chat/completions").respond(200, json=COMPLETION)
    assert await adapter.chat(TARGET, BODY) == COMPLETION
    sent = route.calls.last.request
    assert orjson.loads(sent.content) == {**BODY, "model": "gpt-4o-mini"}
    assert sent.headers["authorization"] == "Bearer sk-upstream-unit"
    assert sent.headers["content-type"] == "application/json"


async def test_embeddings_go_to_their_path(adapter: OpenAIWireAdapter, mock: respx.MockRouter) -> None:
    answer = {"object": "list", "data": [{"embedding": [0.1], "index": 0}]}
    mock.post(f"{BASE}/embeddings").respond(200, json=answer)
    assert await adapter.embeddings(TARGET, {"input": "hi"}) == answer


async def test_an_error_status_keeps_the_code_and_retry_after_never_the_message(
    adapter: OpenAIWireAdapter, mock: respx.MockRouter
) -> None:
    error = {
        "error": {"message": "your prompt PROMPT-CANARY", "type": "requests", "code": "rate_limit_exceeded"}
    }
    mock.post(f"{BASE}/chat/completions").respond(429, json=error, headers={"retry-after": "3"})
    with pytest.raises(UpstreamStatusError) as raised:
        await adapter.chat(TARGET, BODY)
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (
        429,
        "rate_limit_exceeded",
        3,
    )
    assert raised.value.retryable
    assert "PROMPT-CANARY" not in str(raised.value)


async def test_a_client_error_is_not_retryable(adapter: OpenAIWireAdapter, mock: respx.MockRouter) -> None:
    mock.post(f"{BASE}/chat/completions").respond(400, json={"error": {"code": "invalid_value"}})
    with pytest.raises(UpstreamStatusError) as raised:
        await adapter.chat(TARGET, BODY)
    assert raised.value.client_fault and not raised.value.retryable


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (302, {"headers": {"location": "http://elsewhere.test/"}}),
        (200, {"content": b"<html>not json</html>"}),
        (200, {"json": {"error": {"message": "in a 200"}}}),
        (200, {"json": {"object": "chat.completion"}}),  # no choices
    ],
    ids=["redirect", "not-json", "error-in-200", "no-choices"],
)
async def test_odd_answers_are_protocol_errors(
    adapter: OpenAIWireAdapter, mock: respx.MockRouter, status: int, answer: dict[str, Any]
) -> None:
    mock.post(f"{BASE}/chat/completions").respond(status, **answer)
    with pytest.raises(UpstreamProtocolError):
        await adapter.chat(TARGET, BODY)


async def test_a_refused_connection_is_a_connect_error(adapter: OpenAIWireAdapter) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = UpstreamTarget(model="m", upstream_model="m", api_base=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(UpstreamConnectError) as raised:
        await adapter.chat(target, BODY)
    assert raised.value.retryable


async def stream_of(
    adapter: OpenAIWireAdapter, mock: respx.MockRouter, raw: bytes
) -> tuple[dict[str, Any], bytes, Any]:
    mock.post(f"{BASE}/chat/completions").respond(
        200, content=raw, headers={"content-type": "text/event-stream"}
    )
    stream = await adapter.chat_stream(TARGET, {**BODY, "stream": True})
    relayed = b""
    try:
        async for piece in stream:
            relayed += piece
    except UpstreamStreamError as exc:
        return stream.first, relayed, exc
    return stream.first, relayed, stream.usage


async def test_a_stream_parses_its_first_event_and_relays_the_rest_as_framed(
    adapter: OpenAIWireAdapter, mock: respx.MockRouter
) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    raw = sse(chunk("Hel"), chunk("lo"), {**chunk(""), "usage": usage}, "[DONE]")
    first, relayed, seen_usage = await stream_of(adapter, mock, raw)
    assert first == chunk("Hel")
    assert relayed == raw[len(sse(chunk("Hel"))) :]  # byte for byte, not re-encoded
    assert seen_usage == usage


async def test_a_stream_without_done_ends_in_an_error(
    adapter: OpenAIWireAdapter, mock: respx.MockRouter
) -> None:
    _, relayed, error = await stream_of(adapter, mock, sse(chunk("Hel"), chunk("lo")))
    assert isinstance(error, UpstreamStreamError)
    assert relayed == sse(chunk("lo"))


async def test_an_error_event_mid_stream_is_never_relayed(
    adapter: OpenAIWireAdapter, mock: respx.MockRouter
) -> None:
    raw = sse(chunk("Hel"), chunk("lo"), {"error": {"message": "PROMPT-CANARY"}}, "[DONE]")
    _, relayed, error = await stream_of(adapter, mock, raw)
    assert isinstance(error, UpstreamStreamError)
    assert b"PROMPT-CANARY" not in relayed and relayed == sse(chunk("lo"))


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (sse("[DONE]"), "text/event-stream"),
        (sse({"error": {"message": "no"}}), "text/event-stream"),
        (orjson.dumps(COMPLETION), "application/json"),
    ],
    ids=["done-first", "error-first", "not-a-stream"],
)
async def test_a_stream_that_never_starts_is_a_protocol_error(
    adapter: OpenAIWireAdapter, mock: respx.MockRouter, raw: bytes, content_type: str
) -> None:
    mock.post(f"{BASE}/chat/completions").respond(200, content=raw, headers={"content-type": content_type})
    with pytest.raises(UpstreamProtocolError):
        await adapter.chat_stream(TARGET, {**BODY, "stream": True})


def test_the_adapter_builds_its_own_client_per_instance() -> None:
    """No module-level client: two adapters (two apps) share no connection pool."""
    one, two = OpenAIWireAdapter(), OpenAIWireAdapter()
    assert one._client is not two._client
    assert isinstance(one._client, httpx.AsyncClient)
