"""What clients are told about retrying (gateway/core/retry_after.py), and what a failed attempt logs.

The official openai SDK, with its defaults (2 retries, honouring `Retry-After`), talks to the app
in-process over ASGI. A dead upstream is a bound loopback port that never listens (connections
are refused at once). Attempts are counted in the audit trail and the headers the SDK received;
no test asserts elapsed time. `asyncio.timeout` only stops a regression (an SDK sleeping through
a long `Retry-After`) from hanging the suite.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from openai import AsyncOpenAI

from gateway.app import create_app
from gateway.config import parse_config
from gateway.core.resilience import Resilience
from gateway.core.retry_after import rate_limited_headers, unavailable_headers
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.gateway.support import TEST_HOST, key_hash, mocked_internet, serving

KEY = "sk-client-retry-after-8Kq2"
UPSTREAM_KEY = "sk-upstream-openai-Z9y8x7"
PROMPT = "a prompt that must never be logged"
GUARD = 20.0  # seconds; far above what the fixed behaviour needs, far below the old 2 x 30-120 s


def test_unavailable_is_capped_at_two_seconds() -> None:
    assert unavailable_headers(0.0) == {"retry-after": "1"}  # the floor: RFC 9110 wants an integer
    assert unavailable_headers(1.2) == {"retry-after": "2"}
    assert unavailable_headers(116.0) == {"retry-after": "2"}  # an open circuit's cool-down


def test_rate_limited_says_the_real_wait_and_stops_sdk_loops_past_a_minute() -> None:
    assert rate_limited_headers(20.0) == {"retry-after": "20"}
    assert rate_limited_headers(60.0) == {"retry-after": "60"}
    assert rate_limited_headers(61.0) == {"retry-after": "61", "x-should-retry": "false"}
    assert rate_limited_headers(3600.0) == {"retry-after": "300", "x-should-retry": "false"}


@pytest.fixture
def dead_ports() -> Iterator[list[int]]:
    """Two loopback ports, bound but never listening: a connect is refused at once."""
    socks = [socket.socket() for _ in range(2)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        yield [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def vllm(port: int) -> str:
    return (
        "{provider: self_hosted, channel: self_hosted.vllm, model: hosted_vllm/llama, "
        f"api_base: 'http://127.0.0.1:{port}/v1'}}"
    )


def config(ports: list[int]) -> str:
    return f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: dead
    deployments: [{vllm(ports[0])}]
  - name: dead-pair
    deployments: [{vllm(ports[0])}, {vllm(ports[1])}]
  - name: solo
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: RETRY_OPENAI_KEY}}
keys:
  - {{name: retry-key, key_hash: "{key_hash(KEY)}"}}
"""


def app_for(ports: list[int], audit: MemoryAuditSink, **resilience: Any) -> FastAPI:
    return create_app(
        Settings(),
        config=parse_config(config(ports), origin="test-config"),
        audit=audit,
        resilience=Resilience(**resilience),
    )


@pytest.fixture
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_OPENAI_KEY", UPSTREAM_KEY)


class Seen:
    """The response headers the SDK received, one entry per attempt."""

    def __init__(self) -> None:
        self.headers: list[httpx.Headers] = []

    async def __call__(self, response: httpx.Response) -> None:
        self.headers.append(response.headers)

    def values(self, name: str) -> list[str | None]:
        return [h.get(name) for h in self.headers]


@pytest.fixture
async def sdk(
    dead_ports: list[int], upstream_key: None
) -> AsyncIterator[tuple[AsyncOpenAI, MemoryAuditSink, Seen]]:
    """The openai SDK with its default retries, over ASGI to an app whose breaker opens at once."""
    audit, seen = MemoryAuditSink(), Seen()
    app = app_for(dead_ports, audit, breaker_failures=1)
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=f"http://{TEST_HOST}/v1",
            event_hooks={"response": [seen]},
        )
        async with (
            http,
            AsyncOpenAI(base_url=f"http://{TEST_HOST}/v1", api_key=KEY, http_client=http) as client,
        ):
            assert client.max_retries == 2  # the SDK's default, as users run it
            yield client, audit, seen


async def ask(client: AsyncOpenAI, model: str) -> None:
    async with asyncio.timeout(GUARD):
        await client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])


async def test_openai_sdk_gives_up_in_seconds_on_a_dead_upstream(
    sdk: tuple[AsyncOpenAI, MemoryAuditSink, Seen],
) -> None:
    client, audit, seen = sdk
    with pytest.raises(openai.InternalServerError) as raised:
        await ask(client, "dead")
    assert raised.value.status_code == 502
    # One call and the SDK's two retries. The first found the port refused (a retry is safe: 1 s);
    # the circuit was then open for 30 s, which the answers do not make the SDK sleep through.
    assert [e.status for e in audit.events] == [502, 502, 502]
    assert [e.attempts for e in audit.events] == [1, 0, 0]  # the retries never reached the upstream
    assert seen.values("retry-after") == ["1", "2", "2"]


async def test_openai_sdk_does_not_retry_into_a_long_upstream_rate_limit(
    sdk: tuple[AsyncOpenAI, MemoryAuditSink, Seen],
) -> None:
    body = {"error": {"message": "slow down", "type": "rate_limit_error", "code": None}}
    with mocked_internet(assert_all_mocked=True) as internet:
        route = internet.post("https://api.openai.com/v1/chat/completions").mock(
            return_value=httpx.Response(429, json=body, headers={"retry-after": "100"})
        )
        client, audit, seen = sdk
        with pytest.raises(openai.RateLimitError):
            await ask(client, "solo")
    # 100 s is within what the openai SDK honours (120 s) and would be slept twice; the answer
    # says the real wait and `x-should-retry: false`, so the SDK raises after one attempt.
    assert route.call_count == 1
    assert [e.status for e in audit.events] == [429]
    assert seen.values("retry-after") == ["100"]
    assert seen.values("x-should-retry") == ["false"]


# -- the log line of a failed attempt -----------------------------------------------------------
async def post(http: httpx.AsyncClient, model: str) -> httpx.Response:
    return await http.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": PROMPT}]},
        headers={"authorization": f"Bearer {KEY}"},
    )


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage().split(" ", 1)[1] for r in caplog.records if r.name == "sluice.request"]


async def test_log_says_failing_over_only_when_another_deployment_is_tried(
    dead_ports: list[int], upstream_key: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice")
    a, b = dead_ports
    async with serving(app_for(dead_ports, MemoryAuditSink())) as http:
        assert (await post(http, "dead-pair")).status_code == 502
        assert failures(caplog) == [
            f"dead-pair#0 at 127.0.0.1:{a} failed: connection refused; "
            f"failing over to dead-pair#1 at 127.0.0.1:{b}",
            f"dead-pair#1 at 127.0.0.1:{b} failed: connection refused; no other compliant deployment",
        ]
        caplog.clear()
        assert (await post(http, "dead")).status_code == 502
    assert failures(caplog) == [
        f"dead#0 at 127.0.0.1:{a} failed: connection refused; no other compliant deployment"
    ]
    assert "failing over" not in caplog.text


async def test_log_names_the_host_and_the_cause_and_nothing_secret(
    dead_ports: list[int], upstream_key: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice")
    unresolved = httpx.ConnectError("[Errno -2] Name or service not known")
    unresolved.__cause__ = socket.gaierror(-2, "Name or service not known")
    with mocked_internet(assert_all_mocked=True) as internet:
        internet.post("https://api.openai.com/v1/chat/completions").mock(side_effect=unresolved)
        async with serving(app_for(dead_ports, MemoryAuditSink())) as http:
            response = await post(http, "solo")
    assert response.status_code == 502
    assert "name resolution failed" in response.json()["error"]["message"]
    assert failures(caplog) == [
        "solo#0 at api.openai.com failed: name resolution failed; no other compliant deployment"
    ]
    for secret in (UPSTREAM_KEY, KEY, PROMPT):
        assert secret not in caplog.text


async def test_log_of_a_timeout_and_of_an_open_circuit(
    dead_ports: list[int], upstream_key: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice")
    app = app_for(dead_ports, MemoryAuditSink(), breaker_failures=1)
    with mocked_internet(assert_all_mocked=True) as internet:
        internet.post("https://api.openai.com/v1/chat/completions").mock(
            side_effect=httpx.ReadTimeout("slow")
        )
        internet.route(host="127.0.0.1").pass_through()  # the dead ports, for real
        async with serving(app) as http:
            assert (await post(http, "solo")).status_code == 504
            assert (await post(http, "dead")).status_code == 502
            assert (await post(http, "dead")).status_code == 502  # circuit open: no call
    lines = failures(caplog)
    assert lines[0] == (
        "solo#0 at api.openai.com failed: read timeout; "
        "not sent elsewhere: the provider may have started the work"
    )
    assert lines[-1].startswith("no call made: every compliant deployment of dead is failing (circuit open)")
    assert lines[-1].endswith(f"(dead#0 at 127.0.0.1:{dead_ports[0]})")
