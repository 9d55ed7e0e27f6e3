"""gateway/core/pipeline.py: `ChatService` on its own (no app, no HTTP edge): the plan, failover,
the breaker, badges and exactly one audit record per request. The upstream is respx at the HTTP
seam behind the real OpenAI-wire adapter; the config, catalog and router are the real ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import respx
from starlette.responses import Response
from starlette.types import Message

from gateway.config import check, parse_config
from gateway.core.auth import KeyRecord
from gateway.core.deployments import build_deployments
from gateway.core.pipeline import ChatService
from gateway.core.request import ParsedRequest, PrivacyAsk
from gateway.core.resilience import Resilience
from gateway.core.routing import PolicyRouter, utc_today
from gateway.errors import InvalidRequest, PolicyViolation, UpstreamFailure
from gateway.names import Endpoint, ErrorCode, Header
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.upstream.openai_wire import OpenAIWireAdapter
from policies.catalog import load_catalog
from tests.gateway.support import mocked_internet

FIRST, SECOND = "http://127.0.0.1:18001/v1", "http://127.0.0.1:18002/v1"
CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: local
    deployments:
      - {{provider: self_hosted, channel: self_hosted.vllm, model: hosted_vllm/llama, api_base: "{FIRST}"}}
      - {{provider: self_hosted, channel: self_hosted.vllm, model: hosted_vllm/llama, api_base: "{SECOND}"}}
  - name: deepseek
    deployments:
      - {{provider: deepseek, channel: deepseek.api, model: deepseek/deepseek-chat, api_key_env: UNIT_KEY}}
"""
KEY = KeyRecord(name="unit", key_hash="sha256:" + "0" * 64)
COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
    "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
}


@pytest.fixture
async def service() -> AsyncIterator[tuple[ChatService, MemoryAuditSink]]:
    config = parse_config(CONFIG, origin="unit")
    catalog = load_catalog()
    assert check(config, catalog) == []
    deployments = build_deployments(config, catalog, Settings(), utc_today())
    adapter = OpenAIWireAdapter()
    audit = MemoryAuditSink()
    chat = ChatService(
        config=config,
        router=PolicyRouter(config, deployments),
        policies=config.policy_table(),
        adapter_for=lambda _dep, _endpoint: adapter,
        audit=audit,
        resilience=Resilience(breaker_failures=2),
    )
    yield chat, audit
    await adapter.aclose()


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    with mocked_internet() as mock:
        yield mock


def request(model: str = "local", *, stream: bool = False) -> ParsedRequest:
    fields: dict[str, Any] = {"messages": [{"role": "user", "content": "Hello"}]}
    if stream:
        fields["stream"] = True
    return ParsedRequest(model, stream, fields, PrivacyAsk())


async def run(chat: ChatService, parsed: ParsedRequest) -> httpx.Response:
    """The service's answer, read as a client would (a stream consumed to its end)."""
    response = await chat.run(Endpoint.CHAT, KEY, parsed, request_id="req-unit", started=time.perf_counter())
    if hasattr(response, "body_iterator"):
        body = b"".join([bytes(piece) async for piece in response.body_iterator])  # type: ignore[misc]
    else:
        body = await sent(response)
    return httpx.Response(response.status_code, headers=dict(response.headers), content=body)


async def sent(response: Response) -> bytes:
    """A one-answer response sent as the edge sends it (its audit record is made once sent)."""
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)

    await response({"type": "http"}, receive, send)
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


async def test_a_served_request_carries_badges_and_one_audit_record(
    service: tuple[ChatService, MemoryAuditSink], upstream: respx.MockRouter
) -> None:
    chat, audit = service
    upstream.post(f"{FIRST}/chat/completions").respond(200, json=COMPLETION)
    answer = await run(chat, request())
    assert answer.status_code == 200
    assert answer.headers["x-privacy-decision"] == "allowed"
    assert answer.headers["x-privacy-channel"] == "self_hosted.vllm"
    assert answer.headers["x-request-id"] == "req-unit"
    assert answer.json()["privacy"]["channel"] == "self_hosted.vllm"
    [event] = audit.events
    assert (event.status, event.deployment, event.attempts) == (200, "local#0", 1)
    assert (event.prompt_tokens, event.completion_tokens) == (4, 1)


async def test_a_deployment_that_did_not_start_the_work_fails_over(
    service: tuple[ChatService, MemoryAuditSink], upstream: respx.MockRouter
) -> None:
    chat, audit = service
    first = upstream.post(f"{FIRST}/chat/completions").respond(503)
    second = upstream.post(f"{SECOND}/chat/completions").respond(200, json=COMPLETION)
    assert (await run(chat, request())).status_code == 200
    assert (first.call_count, second.call_count) == (1, 1)
    [event] = audit.events
    assert (event.deployment, event.attempts) == ("local#1", 2)


async def test_a_request_the_provider_refuses_is_the_clients_400_without_failover(
    service: tuple[ChatService, MemoryAuditSink], upstream: respx.MockRouter
) -> None:
    chat, audit = service
    upstream.post(f"{FIRST}/chat/completions").respond(400, json={"error": {"code": "invalid_value"}})
    second = upstream.post(f"{SECOND}/chat/completions").respond(200, json=COMPLETION)
    with pytest.raises(InvalidRequest):
        await run(chat, request())
    assert second.call_count == 0
    [event] = audit.events
    assert (event.status, event.deployment) == (400, "local#0")


async def test_every_deployment_failing_is_a_502_and_then_the_open_circuit_skips_the_call(
    service: tuple[ChatService, MemoryAuditSink], upstream: respx.MockRouter
) -> None:
    chat, audit = service
    routes = [upstream.post(f"{base}/chat/completions").respond(503) for base in (FIRST, SECOND)]
    for _ in range(2):  # the breaker's threshold (breaker_failures=2)
        with pytest.raises(UpstreamFailure) as failed:
            await run(chat, request())
        assert failed.value.status == 502 and "retry-after" in failed.value.headers
    calls = [r.call_count for r in routes]
    with pytest.raises(UpstreamFailure) as skipped:
        await run(chat, request())
    assert "circuit open" in skipped.value.message
    assert [r.call_count for r in routes] == calls  # no upstream call at all
    assert len(audit.events) == 3


async def test_a_non_compliant_model_is_blocked_before_any_call(
    service: tuple[ChatService, MemoryAuditSink], upstream: respx.MockRouter
) -> None:
    chat, audit = service
    with pytest.raises(PolicyViolation) as blocked:
        await run(chat, request("deepseek"))
    assert blocked.value.code is ErrorCode.NO_COMPLIANT_DEPLOYMENT
    assert blocked.value.headers[Header.REQUEST_ID] == "req-unit"
    assert [c for c in upstream.calls if c.request.url.host != "sluice.test"] == []
    [event] = audit.events
    assert (event.decision, event.status, event.deployment) == ("blocked", 403, None)


def test_a_request_can_only_add_to_the_policy(service: tuple[ChatService, MemoryAuditSink]) -> None:
    chat, _ = service
    names = [p.name for p in chat.effective_policy(KEY, PrivacyAsk(("zero-retention",)))]
    assert {"api-channel-only", "no-training-only", "zero-retention"} <= set(names)
    with pytest.raises(InvalidRequest) as unknown:
        chat.effective_policy(KEY, PrivacyAsk(("no-such-policy",)))
    assert unknown.value.code is ErrorCode.UNKNOWN_POLICY


async def test_a_stream_puts_privacy_on_its_first_chunk_and_records_when_it_ends(
    service: tuple[ChatService, MemoryAuditSink], upstream: respx.MockRouter
) -> None:
    chat, audit = service
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "Hi"}}],
    }
    usage = {**chunk, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in (chunk, usage)) + b"data: [DONE]\n\n"
    upstream.post(f"{FIRST}/chat/completions").respond(
        200, content=raw, headers={"content-type": "text/event-stream"}
    )
    response = await chat.run(
        Endpoint.CHAT, KEY, request(stream=True), request_id="req-unit", started=time.perf_counter()
    )
    assert response.headers["x-privacy-decision"] == "allowed"
    assert audit.events == []  # recorded when the stream ends, not before
    body = b"".join([bytes(piece) async for piece in response.body_iterator])  # type: ignore[attr-defined]
    events = [e[len(b"data: ") :] for e in body.split(b"\n\n") if e]
    assert orjson.loads(events[0])["privacy"]["channel"] == "self_hosted.vllm"
    assert events[-1] == b"[DONE]"
    [event] = audit.events
    assert (event.status, event.stream, event.completion_tokens) == (200, True, 1)


async def test_a_one_answer_response_is_recorded_once_sent_with_the_latency_of_the_answer(
    service: tuple[ChatService, MemoryAuditSink], upstream: respx.MockRouter
) -> None:
    chat, audit = service
    upstream.post(f"{FIRST}/chat/completions").respond(200, json=COMPLETION)
    started = time.perf_counter()
    response = await chat.run(Endpoint.CHAT, KEY, request(), request_id="req-unit", started=started)
    assert audit.events == []  # recorded once the answer has been sent, off its latency path
    ready = time.perf_counter()
    await asyncio.sleep(0.05)  # a slow send: not part of the answer's latency
    assert orjson.loads(await sent(response))["privacy"]["channel"] == "self_hosted.vllm"
    [event] = audit.events
    assert event.status == 200
    assert 0 < event.latency_ms <= (ready - started) * 1000


async def test_a_one_answer_response_is_recorded_when_its_send_fails(
    service: tuple[ChatService, MemoryAuditSink], upstream: respx.MockRouter
) -> None:
    chat, audit = service
    upstream.post(f"{FIRST}/chat/completions").respond(200, json=COMPLETION)
    started = time.perf_counter()
    response = await chat.run(Endpoint.CHAT, KEY, request(), request_id="req-unit", started=started)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def broken(message: Message) -> None:
        raise OSError("connection reset")

    with pytest.raises(OSError):
        await response({"type": "http"}, receive, broken)
    [event] = audit.events
    assert (event.status, event.deployment) == (200, "local#0")
