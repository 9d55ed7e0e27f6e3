"""Fuzzing the gateway's own request handling: odd requests never make a 5xx, a non-envelope error or a leak.

Hypothesis (derandomized, a few hundred examples in all) builds requests with `tests.gateway.fuzzing`:
arbitrary JSON bodies, chat and embeddings bodies with mutated fields, raw bytes, odd headers. Each
goes through `create_app` on the demo config (lifespan run) in front of the fake upstream, and
must answer below 500; an error must be exactly the OpenAI envelope; the canary it carries must
not come back in headers or in an error; and a request refused as invalid must not have reached
the upstream. `scripts/fuzz.py` runs the same generators at scale.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.gateway.fuzzing import (
    FuzzRequest,
    arbitrary_requests,
    chat_requests,
    client_mistake_requests,
    embedding_requests,
    known_issues,
    problems,
    raw_requests,
    send,
)
from tests.gateway.support import LITELLM_WARNINGS

pytestmark = list(LITELLM_WARNINGS)

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=75,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
async def fuzz_client(demo_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The demo app (lifespan run); app exceptions come back as responses, so a crash shows as a 500."""
    app = create_app(demo_settings, audit=MemoryAuditSink())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test", timeout=30) as http:
            yield http


async def check(http: httpx.AsyncClient, fake: FakeUpstream, request: FuzzRequest) -> None:
    outcome = await send(http, request, lambda: len(fake.requests))
    found = problems(outcome)
    assert not found, (found, outcome.status, outcome.body[:500], request.describe())


@FUZZ
@given(request=chat_requests())
async def test_chat_bodies(fuzz_client: httpx.AsyncClient, fake: FakeUpstream, request: FuzzRequest) -> None:
    await check(fuzz_client, fake, request)


@FUZZ
@given(request=arbitrary_requests())
async def test_arbitrary_json(
    fuzz_client: httpx.AsyncClient, fake: FakeUpstream, request: FuzzRequest
) -> None:
    await check(fuzz_client, fake, request)


@FUZZ
@given(request=raw_requests())
async def test_raw_bytes_and_headers(
    fuzz_client: httpx.AsyncClient, fake: FakeUpstream, request: FuzzRequest
) -> None:
    await check(fuzz_client, fake, request)


@FUZZ
@given(request=client_mistake_requests())
async def test_client_mistakes(
    fuzz_client: httpx.AsyncClient, fake: FakeUpstream, request: FuzzRequest
) -> None:
    """Shapes a translation refuses are 400s that never open a breaker: a 502 `circuit open` after
    a few of them would show here as a 5xx (issue 11)."""
    await check(fuzz_client, fake, request)


@FUZZ
@given(request=embedding_requests())
async def test_embeddings(fuzz_client: httpx.AsyncClient, fake: FakeUpstream, request: FuzzRequest) -> None:
    await check(fuzz_client, fake, request)


@pytest.mark.parametrize("index", range(len(known_issues())))
async def test_deep_nesting_is_refused_not_a_500(
    fuzz_client: httpx.AsyncClient, fake: FakeUpstream, index: int
) -> None:
    """Once a 500 (docs/reliability.md): bodies nested past what can be serialised upstream."""
    request = known_issues()[index]
    await check(fuzz_client, fake, request)
    response = await fuzz_client.request(
        request.method, request.path, content=request.content, headers=list(request.headers)
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
