"""`POST /v1/responses` fails over like chat: only before the first byte, only when the provider
cannot have started the work, and only among compliant deployments (DESIGN.md step 5).

In process over ASGI, in front of a `FakeUpstream` that speaks the Responses wire: the model
`flaky` is an OpenAI API deployment (simulated) followed by a self-hosted vLLM, both answering
Responses requests; faults are scripted for the next upstream request only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.gateway.support import bearer, build_app, error_of, key_hash, serving

KEY = "sk-client-responses-failover-7Qx"
LOCAL_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def config(local_url: str) -> str:
    return f"""
demo: true
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: flaky
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, simulate: true}}
      - provider: self_hosted
        channel: self_hosted.vllm
        model: "hosted_vllm/{LOCAL_MODEL}"
        api_base: "{local_url}/v1"
keys:
  - {{name: failover, key_hash: "{key_hash(KEY)}"}}
"""


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
async def http(fake: FakeUpstream, audit: MemoryAuditSink) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(allow_simulate=True, fake_upstream_url=fake.url, read_timeout=10.0)
    async with serving(build_app(config(fake.url), settings=settings, audit=audit)) as client:
        yield client


async def ask(http: httpx.AsyncClient, **extra: object) -> httpx.Response:
    body = {"model": "flaky", "input": "Hello", **extra}
    return await http.post("/v1/responses", json=body, headers=bearer(KEY))


async def test_a_503_fails_over_to_the_next_compliant_deployment(
    http: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink
) -> None:
    fake.script("status=503")
    response = await ask(http)
    assert response.status_code == 200, response.text
    assert response.headers["X-Privacy-Channel"] == "self_hosted.vllm"
    assert response.json()["model"] == LOCAL_MODEL
    assert response.json()["privacy"]["deployment"] == "flaky#1"
    assert [(r.path, r.json["model"]) for r in fake.requests] == [
        ("/v1/responses", "gpt-4o-mini"),
        ("/v1/responses", LOCAL_MODEL),
    ]
    [event] = audit.events
    assert (event.endpoint, event.deployment, event.attempts, event.status) == (
        "responses",
        "flaky#1",
        2,
        200,
    )


async def test_a_stream_fails_over_before_its_first_event(
    http: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink
) -> None:
    fake.script("status=429,retry_after=0")
    async with http.stream("POST", "/v1/responses", json={"model": "flaky", "input": "Hi", "stream": True},
                           headers=bearer(KEY)) as response:  # fmt: skip
        text = (await response.aread()).decode()
    assert response.headers["X-Privacy-Channel"] == "self_hosted.vllm"
    first = json.loads(text.split("\n\n")[0].split("\n")[1].removeprefix("data: "))
    assert first["response"]["privacy"]["deployment"] == "flaky#1"
    assert "event: response.completed" in text
    assert len(fake.requests) == 2
    assert audit.events[0].attempts == 2


async def test_a_500_is_not_sent_elsewhere(
    http: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink
) -> None:
    """A 500 may come after the provider started (and billed) the work: never tried again."""
    fake.script("status=500")
    response = await ask(http)
    error = error_of(response, 502, "upstream_unavailable")
    assert "Simulated" not in error["message"]
    assert len(fake.requests) == 1
    assert audit.events[0].status == 502


async def test_a_request_the_provider_refuses_is_the_clients_400(
    http: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink
) -> None:
    fake.script("status=400")
    response = await ask(http)
    error_of(response, 400)
    assert len(fake.requests) == 1
