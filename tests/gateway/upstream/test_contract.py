"""The adapter contract: every adapter classifies its failures the same way (DESIGN.md request flow
step 5, invariant 6).

The same cases run against each adapter behind a real app, on simulated deployments served by the
fake upstream: the OpenAI-wire pass-through, and litellm translating to Anthropic's Messages API,
to Gemini's and to Mistral's, on both translation paths (`SLUICE_TRANSLATION`): litellm's provider
transformations over Sluice's transport (`transform`, `gateway/upstream/litellm_transform.py`) and
`litellm.acompletion`. Both paths answer alike: text, streams, tools, images, usage, every failure
class, cancellation. A request the translation or the provider refuses as invalid is a 400 that names
no content and counts nowhere: after more of them than the breaker's threshold, from one key, the
deployment still serves another key at once. A provider failure (5xx) still opens the breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.core.resilience import trips
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.upstream.base import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamRequestRejected,
    UpstreamStatusError,
    UpstreamTarget,
    UpstreamTimeout,
)
from gateway.upstream.litellm_adapter import LiteLLMAdapter
from gateway.upstream.litellm_transform import FALLBACK_REASONS, path_for
from tests.gateway.support import (
    LITELLM_WARNINGS,
    bearer,
    build_app,
    error_of,
    key_hash,
    mocked_internet,
    serving,
)
from tests.helpers import until

pytestmark = list(LITELLM_WARNINGS)

CANARY = "CONTRACTCANARY5d1e"
MISTAKEN_KEY = "sk-client-contract-mistaken-4f2a"
OTHER_KEY = "sk-client-contract-other-8c1b"
THRESHOLD = 5  # Settings().breaker_failures
TRIES = THRESHOLD + 2
# model name -> the adapter behind it
ADAPTERS = {
    "gpt": "openai-wire pass-through",
    "claude": "litellm -> anthropic",
    "gemini": "litellm -> gemini",
    "mistral": "litellm -> mistral",
}
UPSTREAM_MODEL = {
    "gpt": "gpt-4o-mini",
    "claude": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "mistral": "mistral-large-latest",
}
TRANSLATED = [name for name in ADAPTERS if name != "gpt"]
# (model, translation path): the pass-through once, every translated model on both paths.
CASES = [("gpt", "auto")] + [(name, path) for path in ("auto", "litellm") for name in TRANSLATED]
IDS = [f"{name}-{'transform' if path == 'auto' and name != 'gpt' else path}" for name, path in CASES]
CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: gpt
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, simulate: true}}
  - name: claude
    deployments:
      - {{provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5, simulate: true}}
  - name: gemini
    deployments:
      - {{provider: google, channel: google.gemini_api_paid, model: gemini/gemini-2.5-flash, simulate: true}}
  - name: mistral
    deployments:
      - {{provider: mistral, channel: mistral.api_paid, model: mistral/mistral-large-latest, simulate: true}}
attestations:
  - {{provider: google, channel: google.gemini_api_paid, fact: paid_tier, evidence: "contract test"}}
  - {{provider: mistral, channel: mistral.api_paid, fact: paid_tier, evidence: "contract test"}}
keys:
  - {{name: mistaken, key_hash: "{key_hash(MISTAKEN_KEY)}"}}
  - {{name: other, key_hash: "{key_hash(OTHER_KEY)}"}}
"""


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": CANARY}, *parts]}]


PLAIN = [{"role": "user", "content": CANARY}]
# The shapes that, through litellm, came back as 502 and opened the breaker for everyone.
CLIENT_MISTAKES: dict[str, dict[str, Any]] = {
    "image-data-nonsense": {"messages": user({"type": "image_url", "image_url": {"url": "data:nonsense"}})},
    "image-url-unfetchable": {
        "messages": user(
            {"type": "image_url", "image_url": {"url": "http://images.unreachable.invalid/a.png"}}
        )
    },
    "tools-empty-object": {"messages": PLAIN, "tools": [{}]},
    "tool-parameters-string": {
        "messages": PLAIN,
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": CANARY}}],
    },
    "tool-type-mcp": {
        "messages": PLAIN,
        "tools": [{"type": "mcp", "server_label": "docs", "server_url": "https://mcp.invalid/sse"}],
    },
    "web-search-options": {"messages": PLAIN, "web_search_options": {}},
    "content-part-unknown-type": {"messages": user({"type": "hologram", "hologram": {"data": CANARY}})},
    "bare-tool-message": {"messages": [{"role": "tool", "tool_call_id": "call_1", "content": CANARY}]},
}


@pytest.fixture
def path() -> str:
    """The translation path (`SLUICE_TRANSLATION`); tests parametrize it with their model."""
    return "auto"


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
async def http(fake: FakeUpstream, path: str, audit: MemoryAuditSink) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(allow_simulate=True, fake_upstream_url=fake.url, translation=path)
    async with serving(build_app(CONFIG, settings=settings, audit=audit)) as client:
        yield client


async def chat(http: httpx.AsyncClient, model: str, key: str, **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "Hello"}])
    return await http.post("/v1/chat/completions", json={"model": model, **body}, headers=bearer(key))


async def serves_others(http: httpx.AsyncClient, fake: FakeUpstream, model: str) -> None:
    """Another key gets an answer from the deployment itself (not a fast-failed circuit)."""
    before = len(fake.requests)
    for stream in (False, True):
        response = await chat(http, model, OTHER_KEY, stream=stream)
        assert response.status_code == 200, (model, stream, response.text[:300])
    assert len(fake.requests) == before + 2


def assert_client_error(response: httpx.Response, what: str) -> None:
    """A refusal is a 400 in the envelope that names no content, or, for a data path the policy
    refuses (an MCP server, provider-hosted web search), a 403 `feature_not_allowed`; an accepted
    shape is a 200."""
    assert response.status_code in (200, 400, 403), (what, response.status_code, response.text[:300])
    assert CANARY not in response.text or response.status_code == 200, what
    if response.status_code == 403:
        assert error_of(response, 403)["code"] == "feature_not_allowed", what
    if response.status_code == 400:
        error = error_of(response, 400)
        assert error["type"] == "invalid_request_error", error
        assert CANARY not in str(error)


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
@pytest.mark.parametrize("mistake", list(CLIENT_MISTAKES))
async def test_client_mistakes_are_400s_that_never_switch_the_deployment_off(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, mistake: str
) -> None:
    for attempt in range(TRIES):
        body = {**CLIENT_MISTAKES[mistake], "stream": attempt % 2 == 1}
        assert_client_error(await chat(http, model, MISTAKEN_KEY, **body), f"{model} {mistake} #{attempt}")
    await serves_others(http, fake, model)


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_provider_refusing_the_request_is_a_400_that_never_counts(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, status: int
) -> None:
    fake.script(f"status={status}", times=TRIES)
    for attempt in range(TRIES):
        response = await chat(http, model, MISTAKEN_KEY, messages=PLAIN, stream=attempt % 2 == 1)
        error = error_of(response, 400)
        assert error["type"] == "invalid_request_error" and CANARY not in response.text, error
    await serves_others(http, fake, model)


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
async def test_provider_failures_still_open_the_breaker(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str
) -> None:
    fake.script("status=500", times=THRESHOLD)
    for _ in range(THRESHOLD):
        error_of(await chat(http, model, MISTAKEN_KEY), 502, "upstream_unavailable")
    before = len(fake.requests)
    response = await chat(http, model, OTHER_KEY)
    assert "circuit open" in error_of(response, 502, "upstream_unavailable")["message"]
    assert len(fake.requests) == before  # failed fast: the provider was not called


def test_one_classification_for_every_adapter() -> None:
    """The error tree decides once: a client's fault never trips the breaker, a provider's does."""
    for status in (400, 404, 409, 413, 422):
        error = UpstreamStatusError(status, code="invalid_request_error")
        assert error.client_fault and not error.retryable and not trips(error)
    rejected = UpstreamRequestRejected("the request cannot be translated")
    assert rejected.client_fault and not rejected.retryable and not trips(rejected)
    for provider in (
        UpstreamStatusError(500),
        UpstreamStatusError(529),
        UpstreamConnectError("down"),
        UpstreamTimeout("slow"),
        UpstreamProtocolError("garbage"),
    ):
        assert not provider.client_fault and trips(provider)
    assert not UpstreamStatusError(429).client_fault and not trips(UpstreamStatusError(429))


# -- the same answers on every path ------------------------------------------------------------
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]
# A 1x1 PNG, inline (Sluice refuses media URLs the translation would fetch itself).
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def stream_events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]", data[-3:]
    return [orjson.loads(item) for item in data[:-1]]


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for event in events for choice in event.get("choices", [])
    )


def finish_reasons(events: list[dict[str, Any]]) -> list[str]:
    return [c["finish_reason"] for e in events for c in e.get("choices", []) if c.get("finish_reason")]


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
async def test_text_non_stream_and_stream(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, path: str, audit: MemoryAuditSink
) -> None:
    expected = f"Simulated reply from {UPSTREAM_MODEL[model]}."
    response = await chat(http, model, OTHER_KEY)
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    [choice] = body["choices"]
    assert choice["message"]["content"] == expected and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    events = stream_events(await chat(http, model, OTHER_KEY, stream=True))
    assert streamed_text(events) == expected
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert len({e["id"] for e in events}) == 1  # one id for the whole stream
    assert finish_reasons(events) == ["stop"]
    assert "privacy" in events[0]  # Sluice's own object rides on the first chunk
    assert [e.status for e in audit.events] == [200, 200]


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
async def test_stream_usage_when_asked(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, path: str, audit: MemoryAuditSink
) -> None:
    if model == "mistral":  # the fake's OpenAI wire reports usage only on `stream_options`, which
        pytest.skip("litellm drops for Mistral; litellm.acompletion counts tokens itself then")
    events = stream_events(
        await chat(http, model, OTHER_KEY, stream=True, stream_options={"include_usage": True})
    )
    [last] = [e for e in events if "usage" in e]
    assert last is events[-1] and last["choices"] == []
    assert last["usage"]["completion_tokens"] > 0 and last["usage"]["prompt_tokens"] > 0
    [event] = audit.events
    assert event.completion_tokens == last["usage"]["completion_tokens"]
    assert event.prompt_tokens == last["usage"]["prompt_tokens"]


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
async def test_tool_calls(http: httpx.AsyncClient, fake: FakeUpstream, model: str, path: str) -> None:
    response = await chat(http, model, OTHER_KEY, tools=TOOLS)
    assert response.status_code == 200, response.text[:300]
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "lookup" and call["id"]
    assert isinstance(orjson.loads(call["function"]["arguments"]), dict)
    assert b"lookup" in fake.requests[-1].body  # the tool reached the wire

    events = stream_events(await chat(http, model, OTHER_KEY, tools=TOOLS, stream=True))
    calls = [c for e in events for ch in e["choices"] for c in ch["delta"].get("tool_calls") or []]
    assert calls and calls[0]["function"]["name"] == "lookup" and calls[0]["id"]
    arguments = "".join(c["function"].get("arguments") or "" for c in calls)
    assert isinstance(orjson.loads(arguments), dict)
    assert finish_reasons(events) == ["tool_calls"]


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
async def test_inline_image_reaches_the_provider(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, path: str
) -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    for stream in (False, True):
        response = await chat(http, model, OTHER_KEY, messages=user(image), stream=stream)
        assert response.status_code == 200, response.text[:300]
        raw = fake.requests[-1].body.decode()
        assert PIXEL in raw and CANARY in raw  # the image and the text, in the provider's own shape


# Failures before the first byte: (fake directive, status Sluice answers, error code).
FAILURES = [
    ("status=429,retry_after=7", 429, "rate_limited"),
    ("status=503", 502, "upstream_unavailable"),
    ("status=500", 502, "upstream_unavailable"),
    ("status=401", 502, "upstream_unavailable"),
    ("html", 502, "upstream_unavailable"),
    ("bad_json", 502, "upstream_unavailable"),
    ("reset", 502, "upstream_unavailable"),
    ("redirect=http://127.0.0.1:9/elsewhere", 502, "upstream_unavailable"),
]


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
@pytest.mark.parametrize(("directive", "status", "code"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_failure_classes(
    http: httpx.AsyncClient,
    fake: FakeUpstream,
    model: str,
    path: str,
    directive: str,
    status: int,
    code: str,
) -> None:
    for stream in (False, True):
        fake.script(directive)
        response = await chat(http, model, OTHER_KEY, messages=PLAIN, stream=stream)
        if (directive, model, path, stream) == ("bad_json", "mistral", "litellm", True):
            # litellm.acompletion's OpenAI-style stream skips the unparsable line and answers an empty
            # 200 stream; the transformation path refuses it as the pass-through does (a 502).
            assert response.status_code == 200 and CANARY not in response.text
            continue
        error = error_of(response, status, code)
        assert CANARY not in response.text, error
        if status == 429:
            assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
@pytest.mark.parametrize("directive", ["reset_after=8", "error_after=8"])
async def test_stream_broken_after_it_started_ends_in_band(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, path: str, directive: str, audit: MemoryAuditSink
) -> None:
    fake.script(f"{directive},chunks=20")  # after the first content chunk on every wire
    events = stream_events(await chat(http, model, OTHER_KEY, messages=PLAIN, stream=True))
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    error = events[-1]["error"]
    assert error["code"] == "upstream_unavailable" and CANARY not in str(events)
    [event] = audit.events
    assert event.status == 502


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real uvicorn: a client hanging up needs a real connection."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, ws="none"))
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), "the server to start")
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize(("model", "path"), CASES, ids=IDS)
async def test_client_leaving_mid_stream_closes_the_upstream(
    fake: FakeUpstream, model: str, path: str
) -> None:
    audit = MemoryAuditSink()
    settings = Settings(allow_simulate=True, fake_upstream_url=fake.url, translation=path)
    app = build_app(CONFIG, settings=settings, audit=audit)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "[[fake:stall_after=8]]"}],
        "stream": True,
    }
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        seen: list[str] = []

        async def call() -> None:
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=bearer(OTHER_KEY)
            ) as r:
                async for line in r.aiter_lines():
                    seen.append(line)

        task = asyncio.ensure_future(call())
        await until(lambda: any(line.startswith("data: ") for line in seen), "the stream to begin")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        [record] = fake.requests
        await until(lambda: record.client_closed_at is not None, "Sluice to hang up upstream too")
        await until(lambda: len(audit.events) == 1, "the audit record")
    [event] = audit.events
    assert event.client_cancelled is True


def test_which_path_each_provider_takes() -> None:
    """litellm's transformations over Sluice's transport where they can be driven alone;
    `litellm.acompletion` for the rest (`FALLBACK_REASONS` says why)."""
    taken = {
        model: path_for(model)
        for model in (
            "anthropic/claude-sonnet-4-5",
            "gemini/gemini-2.5-flash",
            "vertex_ai/gemini-2.5-pro",
            "mistral/mistral-large-latest",
            "cohere_chat/command-r-plus",
            "cohere/command-a-03-2025",
            "vertex_ai/claude-sonnet-4-5@20250929",
            "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
            "azure/gpt-4o",
            "ollama_chat/llama3.1",
        )
    }
    assert taken == {
        "anthropic/claude-sonnet-4-5": "transform",
        "gemini/gemini-2.5-flash": "transform",
        "vertex_ai/gemini-2.5-pro": "transform",
        "mistral/mistral-large-latest": "transform",
        "cohere_chat/command-r-plus": "transform",
        "cohere/command-a-03-2025": "transform",
        "vertex_ai/claude-sonnet-4-5@20250929": "acompletion",
        "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0": "acompletion",
        "azure/gpt-4o": "acompletion",
        "ollama_chat/llama3.1": "acompletion",
    }
    for model, path in taken.items():
        prefix = model.partition("/")[0]
        assert path == "transform" or prefix in FALLBACK_REASONS
    off = LiteLLMAdapter(transform=False)
    target = UpstreamTarget(
        model="anthropic/claude-sonnet-4-5", upstream_model="claude-sonnet-4-5", api_base=None
    )
    assert off.path(target) == "acompletion" and LiteLLMAdapter().path(target) == "transform"


COHERE_URL = "https://api.cohere.com/v2/chat"
COHERE_CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: command
    deployments:
      - {{provider: cohere, channel: cohere.api, model: cohere_chat/command-r-plus,
         api_key_env: CONTRACT_COHERE_KEY}}
attestations:
  - {{provider: cohere, channel: cohere.api, fact: paid_tier, evidence: "contract test"}}
  - {{provider: cohere, channel: cohere.api, fact: training_opted_out, evidence: "contract test"}}
keys:
  - {{name: other, key_hash: "{key_hash(OTHER_KEY)}"}}
"""


@pytest.mark.parametrize("path", ["auto", "litellm"], ids=["transform", "acompletion"])
async def test_cohere_at_the_http_seam(
    path: str, monkeypatch: pytest.MonkeyPatch, litellm_over_httpx: None
) -> None:
    """Cohere (no fake upstream speaks its wire): the same answers through both paths, respx at the
    HTTP seam, the provider key sent and the canary only where it belongs. (Its stream is not
    covered here.)"""
    monkeypatch.setenv("CONTRACT_COHERE_KEY", "co-contract-key")
    reply = {
        "id": "r1",
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "Hello there"}]},
        "usage": {"tokens": {"input_tokens": 4, "output_tokens": 2}},
    }
    settings = Settings(translation=path)
    with mocked_internet() as mock:
        route = mock.post(COHERE_URL)
        route.mock(return_value=httpx.Response(200, json=reply))
        async with serving(build_app(COHERE_CONFIG, settings=settings, audit=MemoryAuditSink())) as http:
            response = await chat(http, "command", OTHER_KEY, messages=PLAIN)
            assert response.status_code == 200, response.text[:300]
            [choice] = response.json()["choices"]
            assert choice["message"]["content"] == "Hello there" and choice["finish_reason"] == "stop"
            sent = route.calls.last.request
            assert sent.headers["authorization"] == "Bearer co-contract-key"
            assert orjson.loads(sent.content)["messages"] == [{"role": "user", "content": CANARY}]

            route.mock(
                return_value=httpx.Response(429, json={"message": CANARY}, headers={"retry-after": "5"})
            )
            error = error_of(await chat(http, "command", OTHER_KEY, messages=PLAIN), 429, "rate_limited")
            assert CANARY not in str(error)


GEMINI_CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: gemini
    deployments:
      - {{provider: google, channel: google.gemini_api_paid, model: gemini/gemini-2.5-flash,
         api_key_env: CONTRACT_GEMINI_KEY}}
attestations:
  - {{provider: google, channel: google.gemini_api_paid, fact: paid_tier, evidence: "contract test"}}
keys:
  - {{name: other, key_hash: "{key_hash(OTHER_KEY)}"}}
"""


@pytest.mark.parametrize("path", ["auto", "litellm"], ids=["transform", "acompletion"])
async def test_out_of_quota_is_not_retried_on_either_path(
    path: str, monkeypatch: pytest.MonkeyPatch, litellm_over_httpx: None
) -> None:
    """Gemini says "quota" only in its message (status RESOURCE_EXHAUSTED): both paths read the marker
    as a yes/no and answer the quota refusal, which waiting will not clear."""
    monkeypatch.setenv("CONTRACT_GEMINI_KEY", "gm-contract-key")
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": f"Quota exceeded {CANARY}"}}
    with mocked_internet() as mock:
        mock.post(url__startswith="https://generativelanguage.googleapis.com/").mock(
            return_value=httpx.Response(429, json=body)
        )
        settings = Settings(translation=path)
        async with serving(build_app(GEMINI_CONFIG, settings=settings, audit=MemoryAuditSink())) as http:
            for stream in (False, True):
                response = await chat(http, "gemini", OTHER_KEY, messages=PLAIN, stream=stream)
                error = error_of(response, 429)
                assert "quota" in error["message"] and CANARY not in response.text
