"""Streaming through the OpenAI-wire relay and through litellm, with faults from the fake upstream.

Faults ride in the prompt as `[[fake:...]]` markers. Invariants: a failure after the stream started
becomes an SSE `error` event followed by `data: [DONE]` (never a clean finish); a failure before
the first chunk is a real HTTP status with badge headers; every request has exactly one audit record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.conftest import AUTH, DEMO_CONFIG, chat_body
from tests.gateway.support import (
    LITELLM_WARNINGS,
    assert_badge_headers,
    build_app,
    error_of,
    serving,
    sse_events,
    sse_json,
)
from tests.helpers import until

pytestmark = list(LITELLM_WARNINGS)

SERVED = {
    "gpt-4o-mini": ("gpt-4o-mini", "openai.api"),
    "claude-sonnet": ("claude-sonnet-4-5", "anthropic.api"),
    "gemini-flash": ("gemini-2.5-flash", "google.gemini_api_paid"),
    "llama-local": ("meta-llama/Llama-3.1-8B-Instruct", "self_hosted.vllm"),
}
# How many upstream frames get past the first content chunk of each wire (Anthropic's stream opens
# with message_start, content_block_start and ping frames that carry no content).
MID_STREAM_RESET = {"gpt-4o-mini": 3, "gemini-flash": 3, "claude-sonnet": 8, "llama-local": 3}


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for chunk in chunks
        for choice in chunk.get("choices", [])
    )


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["finish_reason"] for chunk in chunks for c in chunk.get("choices", []) if c.get("finish_reason")
    ]


def stream_body(model: str, content: str = "Hello", **extra: Any) -> dict[str, Any]:
    return chat_body(model, content=content, stream=True, **extra)


@pytest.mark.parametrize("model", list(SERVED))
async def test_stream_arrives_whole(
    client: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink, model: str
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=stream_body(model, stream_options={"include_usage": True}), headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert_badge_headers(response.headers, "allowed")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    chunks = sse_json(response.text)
    assert not any("error" in c for c in chunks)
    served, channel = SERVED[model]
    assert content_of(chunks) == f"Simulated reply from {served}."
    assert sum(1 for c in chunks for ch in c.get("choices", []) if (ch.get("delta") or {}).get("content")) > 1
    assert finish_reasons(chunks)[-1] == "stop"
    assert chunks[0]["privacy"]["channel"] == channel
    assert len(fake.requests) == 1
    [event] = audit.events
    assert (event.decision, event.channel, event.status, event.stream) == ("allowed", channel, 200, True)
    assert event.error_code is None and not event.client_cancelled


@pytest.mark.parametrize("model", list(SERVED))
async def test_reset_mid_stream_ends_with_error_then_done(
    client: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink, model: str
) -> None:
    marker = f"[[fake:reset_after={MID_STREAM_RESET[model]}]]"
    response = await client.post(
        "/v1/chat/completions", json=stream_body(model, f"Hi {marker}"), headers=AUTH
    )
    # The stream had started: the status is committed, the failure is in-band.
    assert response.status_code == 200, response.text
    assert_badge_headers(response.headers, "allowed")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = sse_json(response.text)
    assert content_of(chunks), "the stream should have started before the reset"
    assert "error" in chunks[-1], chunks[-1]
    error = chunks[-1]["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == "upstream_error"
    assert "stop" not in finish_reasons(chunks)
    served, _ = SERVED[model]
    assert content_of(chunks) != f"Simulated reply from {served}."
    [event] = audit.events
    assert (event.status, event.error_code, event.channel) == (502, "upstream_unavailable", SERVED[model][1])


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-flash", "llama-local"])
async def test_upstream_error_event_mid_stream(
    client: httpx.AsyncClient, audit: MemoryAuditSink, model: str
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=stream_body(model, "Hi [[fake:error_after=3]]"), headers=AUTH
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = sse_json(response.text)
    assert "stop" not in finish_reasons(chunks)
    # Exactly one error event, and it is Sluice's: the upstream's own error text is never relayed.
    [error] = [c["error"] for c in chunks if "error" in c]
    assert "error" in chunks[-1]
    assert error["type"] == "upstream_error"
    assert "Simulated mid-stream error" not in response.text
    [event] = audit.events
    assert event.status == 502


@pytest.mark.parametrize(
    ("model", "marker"),
    [
        ("gpt-4o-mini", "[[fake:status=503]]"),
        ("claude-sonnet", "[[fake:status=503]]"),
        ("gemini-flash", "[[fake:status=503]]"),
        ("llama-local", "[[fake:status=500]]"),
        ("gpt-4o-mini", "[[fake:reset]]"),
        ("claude-sonnet", "[[fake:reset_after=3]]"),
        ("gpt-4o-mini", "[[fake:html]]"),
        ("gpt-4o-mini", "[[fake:error200]]"),
        ("gpt-4o-mini", "[[fake:empty200]]"),
    ],
)
async def test_failure_before_first_chunk_is_a_real_status(
    client: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink, model: str, marker: str
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=stream_body(model, f"Hi {marker}"), headers=AUTH
    )
    error = error_of(response, 502, "upstream_unavailable")
    assert error["type"] == "upstream_error"
    assert not response.headers["content-type"].startswith("text/event-stream")
    assert_badge_headers(response.headers, "allowed")
    assert response.headers["X-Privacy-Channel"] == SERVED[model][1]
    assert len(fake.requests) >= 1
    [event] = audit.events
    assert (event.decision, event.status, event.channel) == ("allowed", 502, SERVED[model][1])
    assert event.request_id == response.headers["X-Request-Id"]


async def test_upstream_429_before_first_chunk(client: httpx.AsyncClient, audit: MemoryAuditSink) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json=stream_body("gpt-4o-mini", "Hi [[fake:status=429,retry_after=3]]"),
        headers=AUTH,
    )
    error_of(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "3"
    assert_badge_headers(response.headers, "allowed")
    [event] = audit.events
    assert event.status == 429


async def test_one_audit_record_per_request(client: httpx.AsyncClient, audit: MemoryAuditSink) -> None:
    requests = [
        (stream_body("gpt-4o-mini"), 200),
        (stream_body("claude-sonnet"), 200),
        (stream_body("gemini-flash-free"), 403),
        (stream_body("deepseek-chat"), 200),
        (stream_body("gpt-4o-mini", "Hi [[fake:status=503]]"), 502),
        (stream_body("gpt-4o-mini", "Hi [[fake:reset_after=3]]"), 200),
        (chat_body("gpt-4o-mini"), 200),
    ]
    ids = []
    for body, status in requests:
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert response.status_code == status, response.text
        ids.append(response.headers["X-Request-Id"])
    assert [e.request_id for e in audit.events] == ids
    decisions = [e.decision for e in audit.events]
    assert decisions == ["allowed", "allowed", "blocked", "rerouted", "allowed", "allowed", "allowed"]
    assert [e.status for e in audit.events] == [200, 200, 403, 200, 502, 502, 200]
    assert [e.channel for e in audit.events] == [
        "openai.api",
        "anthropic.api",
        None,
        "self_hosted.vllm",
        "openai.api",
        "openai.api",
        "openai.api",
    ]


async def test_invalid_requests_are_not_audited(client: httpx.AsyncClient, audit: MemoryAuditSink) -> None:
    """No decision, no record: bad input and bad keys never reach the policy step."""
    await client.post(
        "/v1/chat/completions", json=stream_body("gpt-4o-mini"), headers={"authorization": "Bearer x"}
    )
    await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "stream": True}, headers=AUTH)
    assert audit.events == []


@pytest.fixture
async def impatient(
    demo_settings: Settings, fake: FakeUpstream
) -> AsyncIterator[tuple[httpx.AsyncClient, MemoryAuditSink]]:
    """The demo with a short gap allowed between stream chunks."""
    settings = demo_settings.model_copy(update={"stream_idle_timeout": 0.3, "read_timeout": 30.0})
    audit = MemoryAuditSink()
    async with serving(
        build_app(DEMO_CONFIG.read_text(encoding="utf-8"), settings=settings, audit=audit)
    ) as http:
        yield http, audit


async def test_stall_mid_stream_ends_with_error_and_closes_upstream(
    impatient: tuple[httpx.AsyncClient, MemoryAuditSink], fake: FakeUpstream
) -> None:
    http, audit = impatient
    response = await http.post(
        "/v1/chat/completions", json=stream_body("gpt-4o-mini", "Hi [[fake:stall_after=3]]"), headers=AUTH
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert "error" in sse_json(response.text)[-1]
    [record] = fake.requests
    await until(lambda: record.client_closed_at is not None, "the upstream call closed")
    assert record.client_closed_early
    [event] = audit.events
    assert event.status == 502
