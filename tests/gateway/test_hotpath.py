"""The hot path's own duties: cancelling abandoned calls, and the in-flight cap. Over a real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.conftest import AUTH, LEGAL_KEY, chat_body
from tests.helpers import served, until


async def test_client_gone_during_a_non_stream_call_cancels_the_upstream(
    demo_settings: Settings, fake: FakeUpstream
) -> None:
    audit = MemoryAuditSink()
    app = create_app(demo_settings, audit=audit)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        call = asyncio.ensure_future(
            http.post(
                "/v1/chat/completions", json=chat_body(content="slow [[fake:delay_ms=20000]]"), headers=AUTH
            )
        )
        await until(lambda: len(fake.requests) == 1, "the upstream call to start")
        call.cancel()  # the client hangs up while Sluice waits for the upstream
        with contextlib.suppress(asyncio.CancelledError):
            await call
        await until(
            lambda: fake.requests[0].client_closed_at is not None, "Sluice to close the upstream call"
        )
        await until(lambda: len(audit.events) == 1, "the ledger entry")
    [event] = audit.events
    assert event.client_cancelled is True
    assert (event.decision, event.status, event.channel) == ("allowed", 499, "openai.api")


async def test_past_the_concurrency_cap_requests_are_refused_fast(
    demo_settings: Settings, fake: FakeUpstream
) -> None:
    settings = demo_settings.model_copy(update={"max_concurrency": 1})
    app = create_app(settings, audit=MemoryAuditSink())
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        first = asyncio.ensure_future(
            http.post("/v1/chat/completions", json=chat_body(content="[[fake:delay_ms=1500]]"), headers=AUTH)
        )
        await until(lambda: len(fake.requests) == 1, "the first call to reach the upstream")
        second = await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert second.status_code == 429
        assert second.headers["retry-after"] == "1"
        assert second.json()["error"]["code"] == "rate_limited"
        assert (await first).status_code == 200
        third = await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert third.status_code == 200
    assert len(fake.requests) == 2


async def test_one_key_cannot_take_every_slot(demo_settings: Settings, fake: FakeUpstream) -> None:
    """SLUICE_MAX_CONCURRENCY_PER_KEY: past it a fast 429 for that key only, claimed before the body
    is read and freed when the response is done, whatever the outcome."""
    settings = demo_settings.model_copy(update={"max_concurrency_per_key": 1})
    app = create_app(settings, audit=MemoryAuditSink())
    legal = {"authorization": f"Bearer {LEGAL_KEY}"}
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        slow = chat_body(content="[[fake:chunks=5,chunk_delay_ms=300]]", stream=True)
        first = asyncio.ensure_future(http.post("/v1/chat/completions", json=slow, headers=AUTH))
        await until(lambda: len(fake.requests) == 1, "the first stream to reach the upstream")
        second = await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert second.status_code == 429, second.text
        assert second.headers["retry-after"] == "1"
        assert "SLUICE_MAX_CONCURRENCY_PER_KEY" in second.json()["error"]["message"]
        other_key = await http.post("/v1/chat/completions", json=chat_body("llama-local"), headers=legal)
        assert other_key.status_code == 200, other_key.text  # another key is not affected
        assert (await first).status_code == 200
        # An error after the claim frees the slot too.
        assert (await http.post("/v1/chat/completions", content=b"{", headers=AUTH)).status_code == 400
        assert (await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)).status_code == 200
    assert app.state.sluice.key_slots.held("demo") == 0


async def test_too_many_or_too_large_headers_get_431(demo_settings: Settings, fake: FakeUpstream) -> None:
    app = create_app(demo_settings, audit=MemoryAuditSink())
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        many = {f"x-h{i}": "v" for i in range(150)}
        huge = {"x-big": "a" * (100 * 1024)}
        for extra, path in (
            (many, "/v1/chat/completions"),
            (huge, "/v1/chat/completions"),
            (huge, "/v1/models"),
        ):
            response = await http.post(path, json=chat_body(), headers={**AUTH, **extra})
            assert response.status_code == 431, path
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("invalid_request_error", "headers_too_large")
            assert "a" * 100 not in response.text
        ok = await http.post("/v1/chat/completions", json=chat_body(), headers={**AUTH, "x-big": "a" * 1024})
        assert ok.status_code == 200
    assert len(fake.requests) == 1


async def test_client_gone_while_sending_its_body_is_not_an_error(
    demo_settings: Settings, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    audit = MemoryAuditSink()
    app = create_app(demo_settings, audit=audit)
    async with served(app) as url:
        port = int(url.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-sluice-demo\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"model": "gpt-4o-mini"'
        )
        await writer.drain()
        writer.close()  # hangs up 977 bytes short
        await writer.wait_closed()
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            after = await http.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert after.status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(audit.events) == 1  # only the request that was decided
