"""The adapter contract: every adapter classifies its failures the same way (DESIGN.md request flow
step 5, invariant 6).

The same cases run against each adapter behind a real app, on simulated deployments served by the
fake upstream: the OpenAI-wire pass-through, and litellm translating to Anthropic's Messages API
and to Gemini's. A request the translation or the provider refuses as invalid is a 400 that names
no content and counts nowhere: after more of them than the breaker's threshold, from one key, the
deployment still serves another key at once. A provider failure (5xx) still opens the breaker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.core.resilience import trips
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.upstream.base import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamRequestRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from tests.gateway.support import LITELLM_WARNINGS, bearer, build_app, error_of, key_hash, serving

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
}
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
attestations:
  - {{provider: google, channel: google.gemini_api_paid, fact: paid_tier, evidence: "contract test"}}
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
        "messages": user({"type": "image_url", "image_url": {"url": "http://images.unreachable.invalid/a.png"}})
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
async def http(fake: FakeUpstream) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(allow_simulate=True, fake_upstream_url=fake.url)
    async with serving(build_app(CONFIG, settings=settings, audit=MemoryAuditSink())) as client:
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


@pytest.mark.parametrize("model", list(ADAPTERS))
@pytest.mark.parametrize("mistake", list(CLIENT_MISTAKES))
async def test_client_mistakes_are_400s_that_never_switch_the_deployment_off(
    http: httpx.AsyncClient, fake: FakeUpstream, model: str, mistake: str
) -> None:
    for attempt in range(TRIES):
        body = {**CLIENT_MISTAKES[mistake], "stream": attempt % 2 == 1}
        assert_client_error(await chat(http, model, MISTAKEN_KEY, **body), f"{model} {mistake} #{attempt}")
    await serves_others(http, fake, model)


@pytest.mark.parametrize("model", list(ADAPTERS))
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


@pytest.mark.parametrize("model", list(ADAPTERS))
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
