"""Circuit breaker and retry budget: unit tests on a fake clock, then through the app with respx.

No sleeps and no wall clock: every `Resilience` here runs on `FakeClock`, advanced by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import parse_config
from gateway.core.resilience import BreakerState, CircuitBreaker, Holds, Resilience, RetryBudget, trips
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.upstream.base import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    retry_after,
)
from tests.conftest import chat_body
from tests.gateway.support import (
    DEPLOYMENTS,
    bearer,
    build_app,
    error_of,
    key_hash,
    mocked_internet,
    openai_completion,
    openai_stream,
    outbound,
    serving,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- CircuitBreaker -------------------------------------------------------------------------------
def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown=30.0, clock=clock)
    for _ in range(2):
        assert breaker.available("d")
        breaker.begin("d")
        breaker.failure("d")
    assert breaker.state("d") is BreakerState.CLOSED
    breaker.failure("d")
    assert breaker.state("d") is BreakerState.OPEN
    assert not breaker.available("d")
    assert breaker.remaining("d") == 30.0
    clock.advance(29.9)
    assert not breaker.available("d")
    clock.advance(0.1)
    assert breaker.state("d") is BreakerState.HALF_OPEN
    assert breaker.available("d")
    breaker.begin("d")  # the one trial
    assert not breaker.available("d")  # a second request does not get a trial too
    breaker.success("d")
    assert breaker.state("d") is BreakerState.CLOSED
    assert breaker.available("d")


def test_breaker_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(failures=3, clock=FakeClock())
    for _ in range(2):
        breaker.failure("d")
    breaker.success("d")
    for _ in range(2):
        breaker.failure("d")
    assert breaker.state("d") is BreakerState.CLOSED


def test_breaker_cooldown_doubles_per_reopen_up_to_the_cap() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown=30.0, max_cooldown=300.0, clock=clock)
    breaker.failure("d")
    seen = []
    for _ in range(6):
        seen.append(breaker.remaining("d"))
        clock.advance(breaker.remaining("d"))
        assert breaker.available("d")
        breaker.begin("d")
        breaker.failure("d")  # the trial fails: re-open at once, longer
    assert seen == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    clock.advance(300.0)
    breaker.begin("d")
    breaker.success("d")
    breaker.failure("d")  # after a success the cool-down starts over
    assert breaker.remaining("d") == 30.0


def test_breaker_abandoned_trial_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown=5.0, clock=clock)
    breaker.failure("d")
    clock.advance(5.0)
    breaker.begin("d")
    assert not breaker.available("d")
    breaker.abandon("d")  # the client went away mid-trial
    assert breaker.available("d")


def test_breakers_are_per_deployment() -> None:
    breaker = CircuitBreaker(failures=1, clock=FakeClock())
    breaker.failure("a")
    assert not breaker.available("a")
    assert breaker.available("b")


def test_which_errors_trip() -> None:
    assert trips(UpstreamConnectError("refused"))
    assert trips(UpstreamTimeout("slow"))
    assert trips(UpstreamProtocolError("html"))
    for status in (500, 502, 503, 504, 529):
        assert trips(UpstreamStatusError(status))
    for status in (400, 401, 404, 413, 422, 429):
        assert not trips(UpstreamStatusError(status))


def test_breaker_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0)
    with pytest.raises(ValueError):
        RetryBudget(ratio=1.5)


# -- RetryBudget ----------------------------------------------------------------------------------
def test_budget_floor_allows_a_few_retries() -> None:
    budget = RetryBudget(ratio=0.2, min_retries=3, clock=FakeClock())
    budget.request()
    assert [budget.acquire() for _ in range(4)] == [True, True, True, False]


def test_budget_ratio_under_sustained_failure() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=3, clock=clock)
    requests = attempts = 0
    for _ in range(1000):  # 100 requests per second for 10 windows; every attempt fails
        clock.advance(0.01)
        budget.request()
        requests += 1
        attempts += 1
        while budget.acquire():  # an unbounded candidate list: only the budget stops it
            attempts += 1
    assert attempts / requests <= 1.2 + 3 / 1000


def test_budget_window_slides() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=0, clock=clock)
    for _ in range(10):
        budget.request()
    assert [budget.acquire() for _ in range(3)] == [True, True, False]
    clock.advance(10.0)  # every request and retry has left the window
    assert not budget.acquire()
    for _ in range(5):
        budget.request()
    assert budget.acquire()


# -- Retry-After and holds -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # the finer one wins (OpenAI sends both)
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": "Sun, 29 Nov 2026 09:00:30 GMT"}, 30.0),  # an HTTP date, 30 s after `now`
        ({"retry-after": "Sun, 29 Nov 2026 08:59:00 GMT"}, 0.0),  # in the past: go now
        ({"retry-after": "-3"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_seconds_milliseconds_and_dates(
    headers: dict[str, str], expected: float | None
) -> None:
    now = 1_795_942_800.0  # 2026-11-29 09:00:00 UTC
    assert retry_after(headers, now=now) == expected


def test_only_answers_that_ask_to_wait_hold_a_deployment() -> None:
    clock = FakeClock()
    holds = Holds(max_hold=60, clock=clock)
    holds.observe("a", UpstreamStatusError(429, retry_after=7))
    holds.observe("b", UpstreamStatusError(429))  # no Retry-After: nothing to honour
    holds.observe("c", UpstreamStatusError(500, retry_after=7))  # not an "I did not start" answer
    holds.observe("d", UpstreamStatusError(503, retry_after=3600))  # capped at max_hold
    holds.observe("e", UpstreamConnectError("refused"))
    assert [holds.remaining(k) for k in "abcde"] == [7, 0, 0, 60, 0]
    holds.observe("a", UpstreamStatusError(529, retry_after=2))  # a shorter wait never shortens a hold
    clock.advance(6.5)
    assert holds.remaining("a") == 0.5
    clock.advance(0.5)
    assert holds.remaining("a") == 0


def test_which_answers_fail_over() -> None:
    assert [UpstreamStatusError(s).retryable for s in (429, 503, 529)] == [True] * 3
    assert not any(UpstreamStatusError(s).retryable for s in (400, 401, 404, 500, 502, 504))
    for code in ("insufficient_quota", "enforced_spend_limit_reached", "billing_hard_limit_reached"):
        assert not UpstreamStatusError(429, code=code).retryable
    assert UpstreamConnectError("refused").retryable
    assert not UpstreamTimeout("slow").retryable
    assert not UpstreamProtocolError("html").retryable


# -- through the app ------------------------------------------------------------------------------
KEY = "sk-client-resilience-4Rt7"
OPENAI, OPENAI_EU, DEEPSEEK = (DEPLOYMENTS[name] for name in ("openai", "openai_eu", "deepseek"))
CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: solo
    deployments: [{OPENAI}]
  - name: pair
    deployments: [{OPENAI_EU}, {OPENAI}]
  - name: guarded
    deployments: [{DEEPSEEK}, {OPENAI}]
keys:
  - {{name: resilience-key, key_hash: "{key_hash(KEY)}"}}
"""
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
OPENAI_EU_URL = "https://eu.api.openai.com/v1/chat/completions"
DEEPSEEK_HOST = "api.deepseek.com"


def failing(status: int = 503, code: str | None = None, **headers: str) -> httpx.Response:
    body = {"error": {"message": "down", "type": "server_error", "code": code}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def upstream(respx_keys: dict[str, str]) -> Iterator[respx.MockRouter]:
    with mocked_internet(assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


def app_with(resilience: Resilience, audit: MemoryAuditSink) -> FastAPI:
    return create_app(
        Settings(), config=parse_config(CONFIG, origin="test-config"), audit=audit, resilience=resilience
    )


@pytest.fixture
async def http(
    clock: FakeClock, audit: MemoryAuditSink, upstream: respx.MockRouter
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app_with(Resilience(clock=clock), audit)) as client:
        yield client


async def ask(http: httpx.AsyncClient, model: str, **extra: Any) -> httpx.Response:
    return await http.post("/v1/chat/completions", json=chat_body(model, **extra), headers=bearer(KEY))


async def test_breaker_opens_fails_fast_then_trials(
    http: httpx.AsyncClient, upstream: respx.MockRouter, clock: FakeClock, audit: MemoryAuditSink
) -> None:
    route = upstream.post(OPENAI_URL).mock(return_value=failing(503))
    for _ in range(5):
        error_of(await ask(http, "solo"), 502, "upstream_unavailable")
    assert route.call_count == 5

    response = await ask(http, "solo")  # circuit open: no upstream call at all
    error = error_of(response, 502, "upstream_unavailable")
    assert "circuit open" in error["message"]
    # 30 s of cool-down left, but SDKs sleep what we say, twice: capped (gateway/core/retry_after.py).
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-request-id"]
    assert route.call_count == 5
    assert audit.events[-1].status == 502 and audit.events[-1].attempts == 0

    clock.advance(10)
    assert (await ask(http, "solo")).headers["retry-after"] == "2"
    assert route.call_count == 5

    clock.advance(20)  # cool-down over: one trial goes through, and succeeds
    route.mock(return_value=httpx.Response(200, json=openai_completion("back")))
    response = await ask(http, "solo")
    assert response.status_code == 200, response.text
    assert route.call_count == 6
    assert (await ask(http, "solo")).status_code == 200  # closed again
    assert route.call_count == 7


async def test_failed_trial_reopens_for_longer(
    http: httpx.AsyncClient, upstream: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream.post(OPENAI_URL).mock(return_value=failing(529))
    for _ in range(5):
        await ask(http, "solo")
    clock.advance(30)
    error_of(await ask(http, "solo"), 502)  # the trial fails
    assert route.call_count == 6
    clock.advance(59)
    response = await ask(http, "solo")  # re-opened for 60 s, not 30
    assert response.headers["retry-after"] == "1"
    assert route.call_count == 6
    clock.advance(1)
    error_of(await ask(http, "solo"), 502)  # the next trial
    assert route.call_count == 7


async def test_client_errors_and_rate_limits_do_not_trip(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    route = upstream.post(OPENAI_URL).mock(return_value=failing(429))
    for _ in range(8):
        error_of(await ask(http, "solo"), 429, "rate_limited")
    route.mock(return_value=failing(400))
    for _ in range(8):
        error_of(await ask(http, "solo"), 400)
    assert route.call_count == 16


async def test_retry_budget_stops_failover(
    upstream: respx.MockRouter, clock: FakeClock, audit: MemoryAuditSink
) -> None:
    eu = upstream.post(OPENAI_EU_URL).mock(return_value=failing(503))
    us = upstream.post(OPENAI_URL).mock(return_value=httpx.Response(200, json=openai_completion()))
    resilience = Resilience(breaker_failures=10**6, min_retries=3, clock=clock)  # budget alone
    async with serving(app_with(resilience, audit)) as http:
        statuses = [(await ask(http, "pair")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 502]  # 4 requests in the window: the floor of 3 retries
    assert (eu.call_count, us.call_count) == (4, 3)


async def test_default_budget_lets_a_single_failing_deployment_fail_over_until_its_circuit_opens(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    eu = upstream.post(OPENAI_EU_URL).mock(return_value=failing(503))
    us = upstream.post(OPENAI_URL).mock(return_value=httpx.Response(200, json=openai_completion()))
    statuses = [(await ask(http, "pair")).status_code for _ in range(12)]
    assert statuses == [200] * 12  # 5 failovers (within the floor of 10), then eu's circuit is open
    assert (eu.call_count, us.call_count) == (5, 12)


async def test_open_circuit_skips_to_the_next_compliant_deployment(
    http: httpx.AsyncClient, upstream: respx.MockRouter, clock: FakeClock
) -> None:
    eu = upstream.post(OPENAI_EU_URL).mock(return_value=failing(503))
    us = upstream.post(OPENAI_URL).mock(return_value=httpx.Response(200, json=openai_completion()))
    for _ in range(5):
        clock.advance(11)  # a fresh retry-budget window each time
        assert (await ask(http, "pair")).status_code == 200
    assert (eu.call_count, us.call_count) == (5, 5)
    for _ in range(5):  # eu's circuit is open: straight to us, no retry spent
        assert (await ask(http, "pair")).status_code == 200
    assert (eu.call_count, us.call_count) == (5, 10)


async def test_open_circuit_never_adds_a_non_compliant_deployment(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    ok = httpx.Response(200, json=openai_completion())
    deepseek = upstream.route(host=DEEPSEEK_HOST).mock(return_value=ok)
    route = upstream.post(OPENAI_URL).mock(return_value=failing(503))
    for _ in range(5):
        error_of(await ask(http, "guarded"), 502, "upstream_unavailable")
    error = error_of(await ask(http, "guarded"), 502, "upstream_unavailable")
    assert "circuit open" in error["message"]
    assert deepseek.call_count == 0
    assert route.call_count == 5


async def test_stream_respects_an_open_circuit(
    http: httpx.AsyncClient, upstream: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream.post(OPENAI_URL).mock(return_value=failing(503))
    for _ in range(5):
        error_of(await ask(http, "solo", stream=True), 502)
    response = await ask(http, "solo", stream=True)
    error_of(response, 502, "upstream_unavailable")
    assert response.headers["retry-after"] == "2"
    assert route.call_count == 5
    clock.advance(30)
    sse = {"content-type": "text/event-stream"}
    route.mock(return_value=httpx.Response(200, headers=sse, content=openai_stream()))
    response = await ask(http, "solo", stream=True)
    assert response.status_code == 200
    assert route.call_count == 6


@pytest.mark.parametrize("breaker_failures", [10**6, 5], ids=["budget-only", "with-breaker"])
async def test_attempts_per_request_under_total_failure(
    upstream: respx.MockRouter, clock: FakeClock, audit: MemoryAuditSink, breaker_failures: int
) -> None:
    eu = upstream.post(OPENAI_EU_URL).mock(return_value=failing(503))
    us = upstream.post(OPENAI_URL).mock(return_value=failing(503))
    resilience = Resilience(breaker_failures=breaker_failures, clock=clock)
    requests = 100
    async with serving(app_with(resilience, audit)) as http:
        for _ in range(requests):
            clock.advance(0.01)
            error_of(await ask(http, "pair"), 502, "upstream_unavailable")
    attempts = eu.call_count + us.call_count
    assert attempts == len(outbound(upstream))
    ratio = attempts / requests
    print(f"attempts/requests = {attempts}/{requests} = {ratio:.2f} (breaker_failures={breaker_failures})")
    assert ratio <= 1.2
    assert eu.call_count >= 5  # every request tried the first deployment until its circuit opened


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_holds_the_deployment_and_failover_serves_meanwhile(
    http: httpx.AsyncClient, upstream: respx.MockRouter, clock: FakeClock, status: int
) -> None:
    eu = upstream.post(OPENAI_EU_URL).mock(return_value=failing(status, **{"retry-after": "7"}))
    us = upstream.post(OPENAI_URL).mock(return_value=httpx.Response(200, json=openai_completion()))
    assert (await ask(http, "pair")).status_code == 200  # eu asked for 7 s; us served
    for _ in range(3):
        clock.advance(2)
        assert (await ask(http, "pair")).status_code == 200
    assert (eu.call_count, us.call_count) == (1, 4)  # nothing went to eu before its 7 s were up
    clock.advance(1)
    eu.mock(return_value=httpx.Response(200, json=openai_completion("eu again")))
    response = await ask(http, "pair")
    assert response.json()["choices"][0]["message"]["content"] == "eu again"
    assert (eu.call_count, us.call_count) == (2, 4)


async def test_a_held_only_deployment_is_answered_with_429_and_no_upstream_call(
    http: httpx.AsyncClient, upstream: respx.MockRouter, clock: FakeClock, audit: MemoryAuditSink
) -> None:
    route = upstream.post(OPENAI_URL).mock(return_value=failing(429, **{"retry-after": "20"}))
    response = await ask(http, "solo")
    error_of(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "20"
    clock.advance(5)
    response = await ask(http, "solo")
    error = error_of(response, 429, "rate_limited")
    assert "asked to wait" in error["message"]
    assert response.headers["retry-after"] == "15"
    assert route.call_count == 1
    assert (audit.events[-1].status, audit.events[-1].attempts) == (429, 0)
    clock.advance(15)
    route.mock(return_value=httpx.Response(200, json=openai_completion()))
    assert (await ask(http, "solo")).status_code == 200
    assert route.call_count == 2


async def test_quota_429_is_not_retried_anywhere(http: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    eu = upstream.post(OPENAI_EU_URL).mock(return_value=failing(429, code="insufficient_quota"))
    us = upstream.post(OPENAI_URL).mock(return_value=httpx.Response(200, json=openai_completion()))
    error = error_of(await ask(http, "pair"), 429, "rate_limited")
    assert "quota" in error["message"]
    assert (eu.call_count, us.call_count) == (1, 0)


@pytest.mark.parametrize("status", [500, 502])
async def test_a_failure_after_the_provider_may_have_started_trips_the_breaker_but_is_not_retried(
    http: httpx.AsyncClient, upstream: respx.MockRouter, status: int
) -> None:
    eu = upstream.post(OPENAI_EU_URL).mock(return_value=failing(status))
    us = upstream.post(OPENAI_URL).mock(return_value=httpx.Response(200, json=openai_completion()))
    for _ in range(5):
        error_of(await ask(http, "pair"), 502, "upstream_unavailable")
    assert (eu.call_count, us.call_count) == (5, 0)
    assert (await ask(http, "pair")).status_code == 200  # eu's circuit is open: us, with no retry spent
    assert (eu.call_count, us.call_count) == (5, 1)


def test_build_app_default_resilience_uses_settings() -> None:
    settings = Settings(breaker_failures=2, breaker_cooldown=7.5, retry_budget_ratio=0.1)
    app = build_app(CONFIG, settings=settings)
    resilience = app.state.sluice.chat._resilience
    assert resilience.breaker.threshold == 2
    assert resilience.breaker.cooldown == 7.5
    assert resilience.budget.ratio == 0.1
