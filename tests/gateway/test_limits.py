"""Per-key limits in one process (no Redis), and two apps sharing one Redis: rpm, tpm (streams
included), max_tokens refused up front, the 429's headers and its ledger record; breakers and holds
applied across apps. The multi-process tests are tests/storage/test_replicas.py."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.config import parse_config
from gateway.core.limits import KeyLimits, LocalState, Verdict
from gateway.core.resilience import Resilience
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.upstream.sse import UsageFilter
from tests.conftest import AUTH, DEMO_CONFIG, DEMO_KEY, chat_body, port_open, require_service
from tests.helpers import until

REDIS = ("127.0.0.1", 6379)
LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


def settings_with(demo_settings: Settings, **changes: Any) -> Settings:
    return Settings.model_validate({**demo_settings.model_dump(), **changes})


@contextlib.asynccontextmanager
async def app_client(
    settings: Settings, audit: MemoryAuditSink | None = None, **kwargs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, audit=audit or MemoryAuditSink(), **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test", timeout=30) as http:
            yield http


@pytest.fixture
def redis_prefix() -> str:
    if not port_open(*REDIS):
        require_service(f"Redis is not reachable on {REDIS[0]}:{REDIS[1]}")
    return f"sluice-test-{secrets.token_hex(6)}"


@pytest.fixture
async def flush_prefix(redis_prefix: str) -> AsyncIterator[str]:
    yield redis_prefix
    import redis.asyncio as aioredis

    client = aioredis.Redis(host=REDIS[0], port=REDIS[1])
    try:
        names = [name async for name in client.scan_iter(match=f"{redis_prefix}:*")]
        if names:
            await client.delete(*names)
    finally:
        await client.aclose()


async def test_rpm_refuses_past_the_limit_with_openai_headers_and_a_ledger_record(
    demo_settings: Settings,
) -> None:
    audit = MemoryAuditSink()
    async with app_client(settings_with(demo_settings, key_rpm=3), audit) as http:
        answers = [await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    first, refused = answers[0], answers[3]
    assert all(name in first.headers for name in LIMIT_HEADERS)
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    assert answers[2].headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-request-id"]
    recorded = [(e.status, e.error_code) for e in audit.events]
    assert recorded == [(200, None)] * 3 + [(429, "rate_limited")]


async def test_a_key_without_limits_gets_no_ratelimit_headers(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert answer.status_code == 200
    assert not any(h.startswith("x-ratelimit-") for h in answer.headers)


async def test_a_config_key_limit_beats_the_server_default(demo_settings: Settings, tmp_path: Path) -> None:
    text = DEMO_CONFIG.read_text().replace("  - name: demo\n", "  - name: demo\n    rpm: 1\n", 1)
    config = parse_config(text)
    async with app_client(settings_with(demo_settings, key_rpm=100), config=config) as http:
        codes = [
            (
                await http.post(
                    "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}, headers=AUTH
                )
            ).status_code
            for _ in range(2)
        ]
    assert codes == [200, 429]  # embeddings are limited too


async def test_max_tokens_over_tpm_is_refused_before_any_call(
    demo_settings: Settings, fake: FakeUpstream
) -> None:
    audit = MemoryAuditSink()
    async with app_client(settings_with(demo_settings, key_tpm=100), audit) as http:
        answer = await http.post("/v1/chat/completions", json=chat_body(max_tokens=500), headers=AUTH)
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "rate_limited"
    assert answer.headers["x-ratelimit-limit-tokens"] == "100"
    assert fake.requests == []
    assert [e.status for e in audit.events] == [429]


async def test_tpm_counts_streamed_usage_the_client_did_not_ask_for(
    demo_settings: Settings, fake: FakeUpstream
) -> None:
    audit = MemoryAuditSink()
    async with app_client(settings_with(demo_settings, key_tpm=120), audit) as http:
        client = openai.AsyncOpenAI(
            api_key=DEMO_KEY, base_url="http://sluice.test/v1", http_client=http, max_retries=0
        )
        chunks = [c async for c in await client.chat.completions.create(**chat_body(), stream=True)]
        # Sluice asked the upstream for usage, and kept its usage-only chunk from this client.
        assert fake.requests[-1].json["stream_options"] == {"include_usage": True}
        assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
        used = audit.events[-1].prompt_tokens + audit.events[-1].completion_tokens  # type: ignore[operator]
        assert 0 < used < 120
        # A client that asks for usage sees it, and its tokens count too.
        asked = await client.chat.completions.create(
            **chat_body(), stream=True, stream_options={"include_usage": True}
        )
        usage = [c.usage async for c in asked if c.usage is not None]
        assert len(usage) == 1
        refused = None
        for _ in range(10):  # each stream counts about `used` tokens: the window fills within a few
            try:
                async for _ in await client.chat.completions.create(**chat_body(), stream=True):
                    pass
            except openai.RateLimitError as exc:
                refused = exc
                break
    assert refused is not None and refused.response.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_max_concurrency_per_key(demo_settings: Settings, fake: FakeUpstream) -> None:
    async with app_client(settings_with(demo_settings, key_max_concurrency=1)) as http:
        slow = asyncio.create_task(
            http.post("/v1/chat/completions", json=chat_body(content="[[fake:delay_ms=3000]]"), headers=AUTH)
        )
        await until(lambda: fake.requests, "the slow request to hold the key's only slot")
        second = await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert second.status_code == 429 and "in flight" in second.json()["error"]["message"]
        assert (await slow).status_code == 200
        third = await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert third.status_code == 200  # the slot was released with the first answer


def test_the_usage_filter_drops_only_the_usage_chunk() -> None:
    usage = b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    content = b'data: {"id":"x","choices":[{"delta":{"content":"usage"}}]}\n\n'
    whole = content + usage + b"data: [DONE]\n\n"
    for cut in range(1, len(whole)):  # wherever the upstream splits its chunks
        kept = UsageFilter()
        out = kept.feed(whole[:cut]) + kept.feed(whole[cut:]) + kept.flush()
        assert out == content + b"data: [DONE]\n\n"


def test_local_state_window_and_leases() -> None:
    now = [1000.0]
    state = LocalState(Resilience(), clock=lambda: now[0])
    limits = KeyLimits(rpm=2, max_concurrency=1)
    first = state.admit_now("k", limits, "a")
    assert first.allowed and first.lease == "a"
    assert state.admit_now("k", limits, "b").limited_by == "concurrency"
    state.finish_now("k", first, 0)
    assert state.admit_now("k", limits, "c").allowed
    state.finish_now("k", Verdict(True, lease="c"), 0)
    refused = state.admit_now("k", limits, "d")
    assert refused.limited_by == "requests" and 59 < refused.requests_reset <= 60
    now[0] += 60.5  # both requests left the window
    assert state.admit_now("k", limits, "e").allowed


async def test_two_apps_on_one_redis_share_the_rpm_window(demo_settings: Settings, flush_prefix: str) -> None:
    shared = settings_with(
        demo_settings,
        key_rpm=5,
        redis_url="redis://127.0.0.1:6379/0",
        redis_prefix=flush_prefix,
        redis_timeout=2.0,
    )
    async with app_client(shared) as a, app_client(shared) as b:
        assert (await a.get("/readyz")).json()["shared_state"]["status"] == "ok"
        codes = [
            (
                await (a if i % 2 else b).post("/v1/chat/completions", json=chat_body(), headers=AUTH)
            ).status_code
            for i in range(8)
        ]
    assert codes.count(200) == 5 and codes[5:] == [429] * 3


async def test_a_retry_after_hold_reaches_the_other_app(
    demo_settings: Settings, fake: FakeUpstream, flush_prefix: str
) -> None:
    shared = settings_with(
        demo_settings,
        redis_url="redis://127.0.0.1:6379/0",
        redis_prefix=flush_prefix,
        redis_timeout=2.0,
        breaker_failures=1,
    )
    ra, rb = Resilience(breaker_failures=1), Resilience(breaker_failures=1)
    async with app_client(shared, resilience=ra) as a, app_client(shared, resilience=rb) as b:
        dep = "gpt-4o-mini#0"
        held = await a.post(
            "/v1/chat/completions", json=chat_body(content="[[fake:status=429,retry_after=30]]"), headers=AUTH
        )
        assert held.status_code == 429
        await until(lambda: rb.holds.remaining(dep) > 0, "the hold to reach app b")
        calls = len(fake.requests)
        skipped = await b.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert skipped.status_code == 429 and len(fake.requests) == calls  # no call made
        assert 25 <= int(skipped.headers["retry-after"]) <= 30


class StallingProxy:
    """A loopback relay to Redis that can stop passing bytes (a Redis that answers slowly, or never)
    while keeping every connection open."""

    def __init__(self) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*REDIS)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()


async def test_a_redis_that_stops_answering_costs_a_request_at_most_the_timeout(
    demo_settings: Settings, flush_prefix: str
) -> None:
    proxy = StallingProxy()
    port = await proxy.start()
    shared = settings_with(
        demo_settings,
        key_rpm=100,
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_prefix=flush_prefix,
        redis_timeout=0.2,
        metrics_public=True,
    )
    try:
        async with app_client(shared) as http:
            assert (await http.get("/readyz")).json()["shared_state"]["status"] == "ok"
            proxy.flowing.clear()  # Redis still connected, but no answer comes back
            answers = [
                await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH) for _ in range(3)
            ]
            assert [a.status_code for a in answers] == [200, 200, 200]
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["shared_state"]["status"] == "degraded"
            metrics = (await http.get("/metrics")).text
            assert "sluice_shared_state_up 0" in metrics
            proxy.flowing.set()

            async def shared_again() -> bool:
                return (await http.get("/readyz")).json()["shared_state"]["status"] == "ok"

            await until(shared_again, "Redis to be used again")
    finally:
        await proxy.stop()


async def test_the_responses_api_is_limited_by_the_same_step(demo_settings: Settings) -> None:
    audit = MemoryAuditSink()
    async with app_client(settings_with(demo_settings, key_rpm=1), audit) as http:
        body = {"model": "gpt-4o-mini", "input": "Hello"}
        answers = [await http.post("/v1/responses", json=body, headers=AUTH) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[1].headers["x-ratelimit-remaining-requests"] == "0"
    assert [(e.endpoint, e.status) for e in audit.events] == [("responses", 200), ("responses", 429)]


async def test_the_messages_api_is_limited_by_the_same_step(demo_settings: Settings) -> None:
    async with app_client(settings_with(demo_settings, key_rpm=1)) as http:
        body = {"model": "claude-sonnet", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
        headers = {"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"}
        answers = [await http.post("/v1/messages", json=body, headers=headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    refused = answers[1].json()
    assert refused["type"] == "error" and refused["error"]["type"] == "rate_limit_error"
    assert answers[1].headers["x-ratelimit-remaining-requests"] == "0"
