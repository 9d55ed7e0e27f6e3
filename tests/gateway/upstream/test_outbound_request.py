"""The pass-through's upstream request, built without `AsyncClient.build_request` (bench/PROFILE.md):
the same request line, header lines (names, values, order), body and deadlines as that call builds,
and sent to the transport the client would choose (the seam respx mocks); a closed client refuses."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from gateway.upstream.anthropic_wire import AnthropicWireAdapter
from gateway.upstream.base import UpstreamTarget
from gateway.upstream.openai_wire import OpenAIWireAdapter, new_client, post_request, send_checked

TARGETS = (
    UpstreamTarget("openai/m", "m", "http://127.0.0.1:8000/v1/", api_key="sk-up", timeout=30.0),
    UpstreamTarget("openai/m", "m", "https://api.example.com/v1", api_key=None, connect_timeout=2.5),
    UpstreamTarget("openai/m", "m", "http://[::1]:9/v1", api_key="sk-up"),
)


def built_by_httpx(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], payload: bytes, target: UpstreamTarget
) -> httpx.Request:
    """What the pass-through sent before: `AsyncClient.build_request`."""
    read = target.timeout
    connect = target.connect_timeout
    timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
    return client.build_request(
        "POST", url, content=payload, headers=headers, extensions={"timeout": timeout.as_dict()}
    )


def same(ours: httpx.Request, theirs: httpx.Request) -> None:
    assert (ours.method, ours.url) == (theirs.method, theirs.url)
    assert ours.headers.raw == theirs.headers.raw
    assert ours.content == theirs.content
    assert ours.extensions == theirs.extensions


@pytest.mark.parametrize("target", TARGETS)
async def test_openai_wire_request_is_what_build_request_made(target: UpstreamTarget) -> None:
    adapter = OpenAIWireAdapter()
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "héllo"}], "stream": False}
    ours = adapter._request(target, "/chat/completions", body, target.timeout)
    headers = {"content-type": "application/json", "accept": "application/json"}
    if target.api_key:
        headers["authorization"] = f"Bearer {target.api_key}"
    url = (target.api_base or "").rstrip("/") + "/chat/completions"
    payload = orjson.dumps({**body, "model": target.upstream_model})
    same(ours, built_by_httpx(adapter._client, url, headers, payload, target))
    await adapter.aclose()


async def test_anthropic_wire_request_is_what_build_request_made() -> None:
    adapter = AnthropicWireAdapter()
    target = UpstreamTarget("anthropic/c", "c", "https://api.anthropic.com", api_key="sk-ant")
    wire = (("anthropic-version", "2023-06-01"), ("anthropic-beta", "tools-2024"))
    ours = adapter._request(target, "/messages", {"max_tokens": 5}, wire)
    headers = {
        "content-type": "application/json",
        "accept": "application/json",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "tools-2024",
        "x-api-key": "sk-ant",
    }
    payload = orjson.dumps({"max_tokens": 5, "model": "c"})
    url = "https://api.anthropic.com/v1/messages"
    same(ours, built_by_httpx(adapter._client, url, headers, payload, target))
    await adapter.aclose()


async def test_a_header_given_replaces_the_clients_default_of_that_name() -> None:
    client = new_client()
    target = TARGETS[0]
    ours = post_request(client, "http://127.0.0.1:8000/x", {"User-Agent": "mine"}, b"{}", target, 1.0)
    assert ours.headers.get_list("user-agent") == ["mine"]
    await client.aclose()


async def test_sent_to_the_transport_the_client_chooses() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": []})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    request = post_request(client, "http://127.0.0.1:8000/v1/chat/completions", {}, b"{}", TARGETS[0], 1.0)
    response = await send_checked(client, request)
    assert seen == [request]
    assert response.request is request
    assert orjson.loads(await response.aread()) == {"choices": []}
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await send_checked(client, request)
