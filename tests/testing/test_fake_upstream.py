"""Tests for the fake upstream server (fakes/sluice_fakes/fake_upstream.py).

The acceptance tests drive the fake with litellm itself (OpenAI, hosted vLLM, Anthropic, Gemini;
non-stream and stream) and with the official ``openai`` SDK; the rest cover fault directives,
recording, the control API, HTTP/1.1 plumbing and the ``python -m`` entry point.
No test asserts on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sluice_fakes import fake_content
from sluice_fakes.fake_directives import DirectiveError, build_faults, parse_directives
from sluice_fakes.fake_faults import gzip_bomb
from sluice_fakes.fake_upstream import FakeUpstream

from tests.helpers import until

REPO_ROOT = Path(__file__).resolve().parents[2]
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
}
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello there"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CHAT_BODY = {"model": "gpt-4o-mini", "messages": USER}
# Warnings raised inside litellm 1.110 itself (with filterwarnings=error it re-raises them wrapped
# in APIConnectionError): pydantic schemas built lazily for its TypedDicts using `ReadOnly`, and
# litellm_core_utils/model_response_utils.py reading `model_fields` on instances (stream usage).
_LITELLM_WARNING_FILTERS = (
    "ignore:.*`ReadOnly` qualifier:UserWarning",
    "ignore:Accessing the '[a-z_]+' attribute on the instance is deprecated:DeprecationWarning",
)


def litellm_warnings(test: Callable[..., Any]) -> Callable[..., Any]:
    for spec in _LITELLM_WARNING_FILTERS:
        test = pytest.mark.filterwarnings(spec)(test)
    return test


# -- fixtures and helpers ---------------------------------------------------------------------------
@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def litellm() -> Any:
    """litellm, imported with the offline switches (it would fetch cost maps at import otherwise)."""
    for key, value in LITELLM_ENV.items():
        os.environ.setdefault(key, value)
    module: Any = importlib.import_module("litellm")
    module.suppress_debug_info = True
    return module


@pytest.fixture
def thread_fake() -> Iterator[FakeUpstream]:
    with FakeUpstream.in_thread() as server:
        yield server


def litellm_targets(fake: FakeUpstream) -> dict[str, tuple[str, str]]:
    """Provider -> (litellm model, api_base) exactly as litellm must be configured for the fake."""
    return {
        "openai": ("openai/gpt-4o-mini", fake.url + "/v1"),
        "hosted_vllm": ("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", fake.url + "/v1"),
        "anthropic": ("anthropic/claude-sonnet-4-5", fake.url),
        "gemini": ("gemini/gemini-2.5-flash", fake.url + "/v1beta"),
        "gemini_root": ("gemini/gemini-2.5-flash", fake.url),
    }


EXPECTED_PATHS = {
    "openai": "/v1/chat/completions",
    "hosted_vllm": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/gemini-2.5-flash:",
    "gemini_root": "/models/gemini-2.5-flash:",
}


def data_lines(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


async def collect_lines(response: httpx.Response, into: list[str]) -> None:
    async for line in response.aiter_lines():
        into.append(line)


# -- litellm acceptance -----------------------------------------------------------------------------
@litellm_warnings
@pytest.mark.parametrize("provider", ["openai", "hosted_vllm", "anthropic", "gemini", "gemini_root"])
async def test_litellm_non_stream(litellm: Any, fake: FakeUpstream, provider: str) -> None:
    model, api_base = litellm_targets(fake)[provider]
    response = await litellm.acompletion(
        model=model, api_base=api_base, api_key="sk-test", messages=USER, num_retries=0
    )
    served = model.split("/", 1)[1]
    assert response.choices[0].message.content == f"Simulated reply from {served}."
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens == fake_content.DEFAULT_CHUNKS
    [record] = fake.requests
    assert record.path.startswith(EXPECTED_PATHS[provider])
    assert record.completed


@litellm_warnings
@pytest.mark.parametrize("provider", ["openai", "hosted_vllm", "anthropic", "gemini", "gemini_root"])
async def test_litellm_stream(litellm: Any, fake: FakeUpstream, provider: str) -> None:
    model, api_base = litellm_targets(fake)[provider]
    stream = await litellm.acompletion(
        model=model,
        api_base=api_base,
        api_key="sk-test",
        messages=USER,
        num_retries=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    served = model.split("/", 1)[1]
    assert "".join(pieces) == f"Simulated reply from {served}."
    assert len(pieces) == fake_content.DEFAULT_CHUNKS
    built = litellm.stream_chunk_builder(chunks)
    assert built.choices[0].finish_reason == "stop"
    assert built.usage.completion_tokens == fake_content.DEFAULT_CHUNKS
    [record] = fake.requests
    assert record.path.startswith(EXPECTED_PATHS[provider])
    if provider.startswith("gemini"):
        assert record.path.endswith(":streamGenerateContent")
        assert record.query == "alt=sse"


@litellm_warnings
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
async def test_litellm_tool_calls(litellm: Any, fake: FakeUpstream, provider: str, stream: bool) -> None:
    model, api_base = litellm_targets(fake)[provider]
    kwargs: dict[str, Any] = {"model": model, "api_base": api_base, "api_key": "sk-test", "num_retries": 0}
    response = await litellm.acompletion(messages=USER, tools=[WEATHER_TOOL], stream=stream, **kwargs)
    if stream:
        response = litellm.stream_chunk_builder([chunk async for chunk in response])
    [tool_call] = response.choices[0].message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {}


@litellm_warnings
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_litellm_json_schema_response(litellm: Any, fake: FakeUpstream, provider: str) -> None:
    model, api_base = litellm_targets(fake)[provider]
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
        "required": ["city", "temp"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "w", "schema": schema, "strict": True}}
    response = await litellm.acompletion(
        model=model,
        api_base=api_base,
        api_key="sk-test",
        messages=USER,
        num_retries=0,
        response_format=response_format,
    )
    assert json.loads(response.choices[0].message.content) == {"city": "simulated", "temp": 0}


@litellm_warnings
async def test_litellm_embeddings_openai_and_gemini(litellm: Any, fake: FakeUpstream) -> None:
    openai_result = await litellm.aembedding(
        model="openai/text-embedding-3-small",
        api_base=fake.url + "/v1",
        api_key="sk-test",
        input=["alpha", "beta"],
        num_retries=0,
    )
    vectors = [item["embedding"] for item in openai_result.data]
    assert vectors == [fake_content.embedding_vector("alpha"), fake_content.embedding_vector("beta")]
    assert len(vectors[0]) == fake_content.EMBEDDING_DIMS
    gemini_result = await litellm.aembedding(
        model="gemini/text-embedding-004",
        api_base=fake.url + "/v1beta",
        api_key="g-test",
        input=["alpha"],
        num_retries=0,
    )
    assert len(gemini_result.data) == 1
    assert fake.requests[-1].path == "/v1beta/models/text-embedding-004:batchEmbedContents"


@litellm_warnings
async def test_litellm_sees_rate_limit_from_status_directive(litellm: Any, fake: FakeUpstream) -> None:
    for provider in ("openai", "anthropic", "gemini"):
        model, api_base = litellm_targets(fake)[provider]
        fake.script("status=429,retry_after=2")
        with pytest.raises(litellm.RateLimitError):
            await litellm.acompletion(
                model=model, api_base=api_base, api_key="sk-test", messages=USER, num_retries=0
            )


@litellm_warnings
async def test_litellm_stream_reset_mid_stream_is_an_error(litellm: Any, fake: FakeUpstream) -> None:
    model, api_base = litellm_targets(fake)["openai"]
    fake.script("reset_after=3")
    stream = await litellm.acompletion(
        model=model, api_base=api_base, api_key="sk-test", messages=USER, num_retries=0, stream=True
    )
    received: list[Any] = []
    with pytest.raises(litellm.exceptions.MidStreamFallbackError):
        async for chunk in stream:
            received.append(chunk)
    assert all(c.choices[0].finish_reason != "stop" for c in received if c.choices)


@litellm_warnings
async def test_litellm_follows_cross_host_redirects_characterization(
    litellm: Any, fake: FakeUpstream
) -> None:
    """Documents litellm 1.x behaviour the gateway must defend against (checklist S2).

    A 307 from the upstream is followed to another host, and for Anthropic the ``x-api-key``
    travels with it.  If this test starts failing, litellm changed: update the gateway notes.
    """
    async with FakeUpstream() as other_host:
        model, api_base = litellm_targets(fake)["anthropic"]
        fake.script(f"redirect={other_host.url}/v1/messages,status=307")
        await litellm.acompletion(
            model=model, api_base=api_base, api_key="sk-ant-secret", messages=USER, num_retries=0
        )
        [followed] = other_host.requests
        assert followed.headers.get("x-api-key") == "sk-ant-secret"


# -- official openai SDK, sync, against the threaded fake ------------------------------------------
def test_openai_sdk_sync_chat_stream_and_embeddings(thread_fake: FakeUpstream) -> None:
    with openai.OpenAI(base_url=thread_fake.url + "/v1", api_key="sk-test", max_retries=0) as sdk:
        chat = sdk.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert chat.choices[0].message.content == "Simulated reply from gpt-4o-mini."
        stream = sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Simulated reply from gpt-4o-mini."
        assert chunks[-1].usage is not None
        embedded = sdk.embeddings.create(model="text-embedding-3-small", input="hello")
        assert embedded.data[0].embedding == fake_content.embedding_vector("hello")
    records = thread_fake.requests
    assert [r.path for r in records] == ["/v1/chat/completions"] * 2 + ["/v1/embeddings"]
    assert records[0].headers["authorization"] == "Bearer sk-test"
    assert records[2].json is not None and records[2].json.get("encoding_format") == "base64"


def test_openai_sdk_echo_and_tricky_split_stream(thread_fake: FakeUpstream) -> None:
    with openai.OpenAI(base_url=thread_fake.url, api_key="sk-test", max_retries=0) as sdk:
        prompt = "repeat me [[fake:echo]] \u00e9\U0001f389"
        echoed = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
        assert echoed.choices[0].message.content == prompt
        stream = sdk.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "[[fake:tricky,split_bytes=3,chunks=7]]"}],
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == fake_content.TRICKY_TEXT
    assert thread_fake.requests[0].path == "/chat/completions"


def test_openai_sdk_status_and_retry_after(thread_fake: FakeUpstream) -> None:
    sdk = openai.OpenAI(base_url=thread_fake.url + "/v1", api_key="sk-test", max_retries=0)
    with sdk, pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(
            model="fake-fault:status=429,retry_after=7",
            messages=USER,
        )
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"


# -- wire shapes over plain HTTP --------------------------------------------------------------------
async def test_anthropic_stream_event_sequence(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    body = {"model": "claude-x", "max_tokens": 10, "stream": True, "messages": USER}
    response = await http.post(fake.url + "/v1/messages", json=body)
    events = [line[len("event: ") :] for line in response.text.splitlines() if line.startswith("event: ")]
    n = fake_content.DEFAULT_CHUNKS
    prologue = ["message_start", "content_block_start", "ping"]
    epilogue = ["content_block_stop", "message_delta", "message_stop"]
    assert events == [*prologue, *["content_block_delta"] * n, *epilogue]
    payloads = [json.loads(d) for d in data_lines(response.text)]
    assert [p["type"] for p in payloads] == events
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn"
    assert response.headers["content-type"] == "text/event-stream"


async def test_anthropic_thinking_comes_first_with_its_signature(
    fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    body = {"model": "claude-x", "max_tokens": 2048, "thinking": thinking, "messages": USER}
    message = (await http.post(fake.url + "/v1/messages", json=body)).json()
    assert [b["type"] for b in message["content"]] == ["thinking", "text"]
    assert message["content"][0]["signature"]
    streamed = await http.post(fake.url + "/v1/messages", json={**body, "stream": True})
    payloads = [json.loads(d) for d in data_lines(streamed.text)]
    deltas = [p["delta"]["type"] for p in payloads if p["type"] == "content_block_delta" and p["index"] == 0]
    assert deltas[-1] == "signature_delta" and set(deltas[:-1]) == {"thinking_delta"}
    starts = [p["content_block"]["type"] for p in payloads if p["type"] == "content_block_start"]
    assert starts == ["thinking", "text"]


async def test_gemini_stream_without_sse_is_a_json_array(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi [[fake:chunks=4]]"}]}]}
    url = fake.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?key=abc"
    response = await http.post(url, json=body)
    items = response.json()
    assert len(items) == 4
    text = "".join(item["candidates"][0]["content"]["parts"][0]["text"] for item in items)
    assert text == "Simulated reply from gemini-2.5-flash."
    assert items[-1]["candidates"][0]["finishReason"] == "STOP"
    assert fake.requests[0].query == "key=abc"


async def test_gemini_model_name_directive_in_path(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    url = fake.url + "/v1beta/models/fake-fault:status=503:generateContent"
    response = await http.post(url, json={"contents": []}, headers={"x-goog-api-key": "g"})
    assert response.status_code == 503
    assert response.json() == {
        "error": {"code": 503, "message": "Simulated upstream error (HTTP 503).", "status": "UNAVAILABLE"}
    }


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            "/v1/chat/completions",
            CHAT_BODY,
            {
                "message": "Simulated upstream error (HTTP 529).",
                "type": "server_error",
                "param": None,
                "code": None,
            },
        ),
        (
            "/v1/messages",
            {"model": "c", "messages": USER, "max_tokens": 5},
            {"type": "overloaded_error", "message": "Simulated upstream error (HTTP 529)."},
        ),
    ],
)
async def test_error_body_shapes(
    fake: FakeUpstream, http: httpx.AsyncClient, path: str, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    fake.script("status=529")
    response = await http.post(fake.url + path, json=body)
    assert response.status_code == 529
    assert response.json()["error"] == expected
    if path == "/v1/messages":
        assert response.json()["type"] == "error"


async def test_models_lists(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    openai_list = (await http.get(fake.url + "/v1/models")).json()
    assert openai_list["object"] == "list"
    assert "gpt-4o-mini" in [m["id"] for m in openai_list["data"]]
    anthropic_list = (await http.get(fake.url + "/v1/models", headers={"anthropic-version": "x"})).json()
    assert anthropic_list["data"][0]["type"] == "model"
    gemini_list = (await http.get(fake.url + "/v1beta/models")).json()
    assert "models/gemini-2.5-flash" in [m["name"] for m in gemini_list["models"]]


# -- fault directives -------------------------------------------------------------------------------
async def test_reset_after_leaves_an_incomplete_stream(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    body = {**CHAT_BODY, "stream": True, "messages": [{"role": "user", "content": "[[fake:reset_after=3]]"}]}
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream("POST", fake.url + "/v1/chat/completions", json=body) as response:
            await collect_lines(response, lines)
    frames = data_lines("\n".join(lines))
    assert len(frames) == 3
    assert "[DONE]" not in frames
    assert all(json.loads(f)["choices"][0]["finish_reason"] is None for f in frames)


async def test_reset_after_with_rst(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    fake.script("reset_after=2,rst")
    with pytest.raises(httpx.TransportError):
        async with http.stream(
            "POST", fake.url + "/v1/chat/completions", json={**CHAT_BODY, "stream": True}
        ) as r:
            await collect_lines(r, [])


@pytest.mark.parametrize(
    ("path", "body", "error_line"),
    [
        ("/v1/chat/completions", {**CHAT_BODY, "stream": True}, '{"error":'),
        (
            "/v1/messages",
            {"model": "c", "max_tokens": 5, "stream": True, "messages": USER},
            '{"type":"error"',
        ),
        ("/v1beta/models/g:streamGenerateContent?alt=sse", {"contents": []}, '{"error":'),
    ],
)
async def test_error_after_sends_an_in_band_error_event(
    fake: FakeUpstream, http: httpx.AsyncClient, path: str, body: dict[str, Any], error_line: str
) -> None:
    fake.script("error_after=2")
    response = await http.post(fake.url + path, json=body)
    assert response.status_code == 200
    frames = data_lines(response.text)
    assert len(frames) == 3
    assert frames[-1].startswith(error_line)
    assert "error" in json.loads(frames[-1])


async def test_split_bytes_writes_small_http_chunks(fake: FakeUpstream) -> None:
    payload = json.dumps({**CHAT_BODY, "stream": True, "model": "fake-fault:split_bytes=5,chunks=3"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(payload)}\r\n\r\n"
        writer.write(head.encode() + payload)
        assert b"transfer-encoding: chunked" in await reader.readuntil(b"\r\n\r\n")
        sizes: list[int] = []
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            sizes.append(size)
            body += data[:-2]
    finally:
        writer.close()
        await writer.wait_closed()
    assert max(sizes) <= 5
    assert data_lines(body.decode())[-1] == "[DONE]"


async def test_reset_without_answer(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    fake.script("reset")
    with pytest.raises(httpx.TransportError):
        await http.post(fake.url + "/v1/chat/completions", json=CHAT_BODY)
    assert len(fake.requests) == 1


async def test_delay_then_client_timeout_is_recorded(fake: FakeUpstream) -> None:
    fake.script("delay_ms=5000")
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=0.2)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post(fake.url + "/v1/chat/completions", json=CHAT_BODY)
    await until(lambda: fake.requests[0].client_closed_at is not None, "the client to close")
    assert fake.requests[0].client_closed_early


async def test_delay_still_answers(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    fake.script("delay_ms=20")
    response = await http.post(fake.url + "/v1/chat/completions", json=CHAT_BODY)
    assert response.status_code == 200


async def test_client_disconnect_mid_stream_is_recorded(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    body = {**CHAT_BODY, "stream": True, "model": "fake-fault:chunk_delay_ms=20,chunks=500"}
    async with http.stream("POST", fake.url + "/v1/chat/completions", json=body) as response:
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: ")
            if seen == 3:
                break
    await until(lambda: fake.requests[0].client_closed_at is not None, "the client to close")
    record = fake.requests[0]
    assert record.client_closed_early
    assert not record.completed


async def test_stall_after_hangs_until_client_leaves(fake: FakeUpstream) -> None:
    fake.script("stall_after=2")
    body = {**CHAT_BODY, "stream": True}
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=0.3)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            async with impatient.stream("POST", fake.url + "/v1/chat/completions", json=body) as response:
                await collect_lines(response, lines)
    assert len(data_lines("\n".join(lines))) == 2
    await until(lambda: fake.requests[0].client_closed_at is not None, "the client to close")


@pytest.mark.parametrize(("directives", "status"), [("html", 502), ("html,status=200", 200)])
async def test_html_error_page(
    fake: FakeUpstream, http: httpx.AsyncClient, directives: str, status: int
) -> None:
    fake.script(directives)
    response = await http.post(fake.url + "/v1/chat/completions", json=CHAT_BODY)
    assert response.status_code == status
    assert response.headers["content-type"] == "text/html"
    assert response.text.startswith("<html>")


async def test_broken_200s(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    url = fake.url + "/v1/chat/completions"
    fake.script("empty200")
    fake.script("error200")
    fake.script("bad_json")
    empty, error, bad = [await http.post(url, json=CHAT_BODY) for _ in range(3)]
    assert (empty.status_code, empty.content) == (200, b"")
    assert error.status_code == 200
    assert error.json()["error"]["type"] == "server_error"
    assert bad.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.content)


async def test_redirect_is_not_followed_by_default_httpx(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    async with FakeUpstream() as other_host:
        target = other_host.url + "/v1/chat/completions"
        body = {**CHAT_BODY, "messages": [{"role": "user", "content": f"[[fake:redirect={target}]]"}]}
        response = await http.post(fake.url + "/v1/chat/completions", json=body)
        assert response.status_code == 302
        assert response.headers["location"] == target
        assert other_host.requests == []


async def test_endless_line_is_bounded(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    bound = 2 * 1024 * 1024
    fake.script(f"endless_line={bound}")
    received = 0
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream("POST", fake.url + "/v1/chat/completions", json=CHAT_BODY) as response:
            async for data in response.aiter_bytes():
                assert b"\n" not in data
                received += len(data)
    assert bound <= received < bound + 1024 * 1024


async def test_endless_line_client_may_stop_reading(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    fake.script("endless_line")
    cap = 512 * 1024
    received = 0
    async with http.stream("POST", fake.url + "/v1/chat/completions", json=CHAT_BODY) as response:
        async for data in response.aiter_bytes():
            received += len(data)
            if received >= cap:
                break
    await until(lambda: fake.requests[0].client_closed_at is not None, "the client to close")


async def test_gzip_bomb_over_http(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    size = 16 * 1024 * 1024
    fake.script(f"gzip_bomb={size}")
    async with http.stream("POST", fake.url + "/v1/chat/completions", json=CHAT_BODY) as response:
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join([part async for part in response.aiter_raw()])
    assert len(raw) < size // 500
    inflated = gzip.decompress(raw)  # verifies CRC-32 and length too
    assert len(inflated) > size
    assert json.loads(inflated)["choices"][0]["message"]["content"].startswith("Simulated reply")


def test_gzip_bomb_encoding_with_partial_block() -> None:
    size = 3 * 1024 * 1024 + 12345
    assert gzip.decompress(gzip_bomb(size, b"{}")) == b" " * size + b"{}"
    assert gzip.decompress(gzip_bomb(1000, b"")) == b" " * 1000


async def test_huge_body_is_padded_valid_json(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    size = 3 * 1024 * 1024
    fake.script(f"huge_body={size}")
    response = await http.post(fake.url + "/v1/chat/completions", json=CHAT_BODY)
    assert len(response.content) == size == int(response.headers["content-length"])
    assert response.json()["object"] == "chat.completion"
    fake.script(f"huge_body={size}")
    streamed = await http.post(fake.url + "/v1/chat/completions", json={**CHAT_BODY, "stream": True})
    frames = data_lines(streamed.text)
    assert len(frames[0]) > size - 100
    assert json.loads(frames[0])["object"] == "chat.completion.chunk"
    assert frames[-1] == "[DONE]"


async def test_retry_after_headers(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    fake.script("status=503,retry_after=3,retry_after_ms=2500")
    response = await http.post(fake.url + "/v1/chat/completions", json=CHAT_BODY)
    assert response.status_code == 503
    assert (response.headers["retry-after"], response.headers["retry-after-ms"]) == ("3", "2500")
    assert response.json()["error"]["code"] == "service_unavailable"


async def test_leaky_headers(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    fake.script("leaky_headers")
    response = await http.post(fake.url + "/v1/chat/completions", json=CHAT_BODY)
    assert response.headers["set-cookie"].startswith("__cf_bm=")
    assert response.headers["openai-organization"] == "org-fake-upstream"


async def test_huge_header(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    fake.script("huge_header=20000")
    response = await http.post(fake.url + "/v1/chat/completions", json=CHAT_BODY)
    assert len(response.headers["x-fake-padding"]) == 20000


async def test_leak_puts_key_and_prompt_in_the_error(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    fake.script("status=401,leak")
    response = await http.post(
        fake.url + "/v1/chat/completions", json=CHAT_BODY, headers={"authorization": "Bearer sk-canary"}
    )
    message = response.json()["error"]["message"]
    assert "sk-canary" in message
    assert "Hello there" in message


async def test_chunks_directive(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    body = {**CHAT_BODY, "stream": True, "model": "fake-fault:chunks=5"}
    response = await http.post(fake.url + "/v1/chat/completions", json=body)
    frames = [json.loads(f) for f in data_lines(response.text) if f != "[DONE]"]
    contents = [f["choices"][0]["delta"].get("content") for f in frames]
    assert len([c for c in contents if c]) == 5


async def test_directive_priority_and_script_queue(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    url = fake.url + "/v1/chat/completions"
    fake.script("status=500", times=2)
    body = {
        "model": "fake-fault:status=502",
        "messages": [{"role": "user", "content": "[[fake:status=418]]"}],
    }
    assert (await http.post(url, json=body)).status_code == 418
    assert (await http.post(url, json=CHAT_BODY)).status_code == 500
    assert (await http.post(url, json=CHAT_BODY)).status_code == 200
    assert fake.requests[0].directives == "status=500,status=502,status=418"


async def test_unknown_directive_is_a_400(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    body = {**CHAT_BODY, "messages": [{"role": "user", "content": "[[fake:stauts=500]]"}]}
    response = await http.post(fake.url + "/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert "stauts" in response.json()["error"]["message"]
    with pytest.raises(DirectiveError):
        fake.script("reset_after=soon")


def test_directive_parsing() -> None:
    assert parse_directives("status=503, retry_after=2 ,reset") == (
        ("status", 503),
        ("retry_after", "2"),
        ("reset", True),
    )
    faults = build_faults("status=500,delay_ms=5", "status=429", "redirect=http://h/x?a=b")
    assert (faults.status, faults.delay_ms, faults.redirect) == (429, 5, "http://h/x?a=b")
    assert build_faults("endless_line").endless_line == 64 * 1024 * 1024
    for bad in ("status=99", "status", "reset=1", "chunks=-1", "nope"):
        with pytest.raises(DirectiveError):
            parse_directives(bad)


# -- recording, control API, HTTP plumbing ----------------------------------------------------------
def test_control_api_over_http(thread_fake: FakeUpstream) -> None:
    with httpx.Client(base_url=thread_fake.url, timeout=10) as http:
        assert http.get("/_fake/health").json()["status"] == "ok"
        scripted = http.post("/_fake/script", json={"directives": "status=503", "times": 2})
        assert scripted.status_code == 200
        codes = [http.post("/v1/chat/completions", json=CHAT_BODY).status_code for _ in range(3)]
        assert codes == [503, 503, 200]
        records = http.get("/_fake/requests").json()
        assert len(records) == 3
        assert json.loads(records[0]["body"]) == CHAT_BODY
        assert records[0]["json"] == CHAT_BODY
        assert records[0]["headers"]["content-type"] == "application/json"
        assert records[0]["directives"] == "status=503"
        assert len(http.get("/_fake/requests", params={"since": 2}).json()) == 1
        assert http.post("/_fake/script", json={"directives": "bogus"}).status_code == 400
        assert http.post("/_fake/reset").status_code == 200
        assert http.get("/_fake/requests").json() == []
        assert http.get("/_fake/nothing").status_code == 404
    assert thread_fake.requests == []


async def test_keep_alive_and_connection_close(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    url = fake.url + "/v1/chat/completions"
    for _ in range(3):
        assert (await http.post(url, json=CHAT_BODY)).status_code == 200
    await http.post(url, json=CHAT_BODY, headers={"connection": "close"})
    await http.post(url, json=CHAT_BODY)
    connections = [r.connection for r in fake.requests]
    assert connections[:4] == [connections[0]] * 4
    assert connections[4] != connections[0]


async def test_chunked_request_body(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        encoded = json.dumps(CHAT_BODY).encode()
        yield encoded[:10]
        yield encoded[10:]

    response = await http.post(fake.url + "/v1/chat/completions", content=body())
    assert response.status_code == 200
    record = fake.requests[0]
    assert record.headers["transfer-encoding"] == "chunked"
    assert record.json == CHAT_BODY


async def test_expect_100_continue_and_bad_requests(fake: FakeUpstream) -> None:
    payload = json.dumps(CHAT_BODY).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(payload)}\r\n"
            "expect: 100-continue\r\n\r\n"
        )
        writer.write(head.encode())
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(payload)
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200 ")
        writer.write(b"NONSENSE\r\n\r\n")
        rest = await reader.read()
        assert b"HTTP/1.1 400 Bad Request" in rest
    finally:
        writer.close()
        await writer.wait_closed()


async def test_unknown_route_and_invalid_json(fake: FakeUpstream, http: httpx.AsyncClient) -> None:
    missing = await http.post(fake.url + "/v2/unknown", json={})
    assert missing.status_code == 404
    assert "error" in missing.json()
    invalid = await http.post(fake.url + "/v1/messages", content=b"{not json")
    assert invalid.status_code == 400
    assert invalid.json()["type"] == "error"


async def test_no_record_mode() -> None:
    async with FakeUpstream(record=False) as quiet, httpx.AsyncClient() as http:
        assert (await http.post(quiet.url + "/v1/chat/completions", json=CHAT_BODY)).status_code == 200
        assert quiet.requests == []


def test_module_entry_point() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "sluice_fakes.fake_upstream", "--port", "0", "--quiet"]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "the fake did not print its listening line"
            line = proc.stdout.readline().strip()
            assert line.startswith("fake upstream listening on http://127.0.0.1:")
            url = line.rsplit(" ", 1)[1]
            with httpx.Client(base_url=url, timeout=10) as http:
                assert http.get("/_fake/health").json()["status"] == "ok"
                assert http.post("/v1/chat/completions", json=CHAT_BODY).status_code == 200
                assert len(http.get("/_fake/requests").json()) == 1
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            assert proc.stderr is not None
            assert proc.stderr.read() == ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
