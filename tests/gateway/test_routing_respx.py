"""Policy routing, failover, request-added policies and upstream hygiene, with respx at the HTTP seam.

Deployments are real (no `simulate`): api.openai.com, api.deepseek.com, api.perplexity.ai over the
OpenAI-wire pass-through (httpx), api.anthropic.com and generativelanguage.googleapis.com through
litellm with its aiohttp transport switched off, so respx sees every upstream request. Keys come
from the environment. The `loopback_only` guard (conftest) fails any request respx did not catch.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from gateway.observability.audit import MemoryAuditSink
from tests.conftest import chat_body
from tests.gateway.support import (
    DEPLOYMENTS,
    GEMINI_PAID_ATTESTATION,
    LITELLM_WARNINGS,
    UPSTREAM_CHAT_FIELDS,
    anthropic_message,
    assert_badge_headers,
    bearer,
    build_app,
    error_of,
    gemini_response,
    key_hash,
    mocked_internet,
    openai_completion,
    openai_stream,
    outbound,
    serving,
    split_list,
    sse_json,
)

pytestmark = list(LITELLM_WARNINGS)

BLOCK_KEY = "sk-client-block-7Qx2"
REROUTE_KEY = "sk-client-reroute-9Wd4"
LOOSE_KEY = "sk-client-loose-3Kp8"
OPENAI, OPENAI_EU, ANTHROPIC, GEMINI_PAID, DEEPSEEK, PERPLEXITY = (
    DEPLOYMENTS[name]
    for name in ("openai", "openai_eu", "anthropic", "gemini_paid", "deepseek", "perplexity")
)

CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: gpt
    deployments: [{OPENAI}]
  - name: claude
    deployments: [{ANTHROPIC}]
  - name: chain
    deployments: [{ANTHROPIC}, {GEMINI_PAID}, {OPENAI}]
  - name: first-compliant
    deployments: [{DEEPSEEK}, {OPENAI}, {ANTHROPIC}]
  - name: guarded
    deployments: [{DEEPSEEK}, {OPENAI}]
  - name: guarded-rev
    deployments: [{OPENAI}, {DEEPSEEK}]
  - name: openai-then-claude
    deployments: [{OPENAI}, {ANTHROPIC}]
  - name: claude-then-openai
    deployments: [{ANTHROPIC}, {OPENAI}]
  - name: openai-two-regions
    deployments: [{OPENAI_EU}, {OPENAI}]
  - name: gemini-then-openai
    deployments: [{GEMINI_PAID}, {OPENAI}]
  - name: trainer
    deployments: [{DEEPSEEK}]
    reroute_to: [claude]
  - name: mixed
    deployments: [{OPENAI}, {PERPLEXITY}]
attestations:
  - {GEMINI_PAID_ATTESTATION}
keys:
  - {{name: block-key, key_hash: "{key_hash(BLOCK_KEY)}"}}
  - {{name: reroute-key, key_hash: "{key_hash(REROUTE_KEY)}", on_violation: reroute}}
  - {{name: loose-key, key_hash: "{key_hash(LOOSE_KEY)}", policy: [api-channel-only]}}
"""

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
OPENAI_EU_URL = "https://eu.api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
DEEPSEEK_HOST = "api.deepseek.com"
GEMINI_HOST = "generativelanguage.googleapis.com"
PERPLEXITY_HOST = "api.perplexity.ai"
CANARY = "CANARY-upstream-echo-5b1e9"
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


@pytest.fixture
def env_keys(respx_keys: dict[str, str]) -> dict[str, str]:
    return respx_keys


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
def upstream(litellm_over_httpx: None) -> Iterator[respx.MockRouter]:
    """The mocked internet. Routes are added per test; anything unrouted is an error, not traffic."""
    with mocked_internet(assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
async def http(
    env_keys: dict[str, str], audit: MemoryAuditSink, upstream: respx.MockRouter
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(build_app(CONFIG, audit=audit)) as client:
        yield client


def routes(mock: respx.MockRouter, **status: int | Exception) -> dict[str, respx.Route]:
    """One route per upstream host; each answers 200 in its own wire format unless `status` says otherwise."""
    ok: dict[str, httpx.Response] = {
        "openai": httpx.Response(200, json=openai_completion("from openai")),
        "openai_eu": httpx.Response(200, json=openai_completion("from openai eu")),
        "anthropic": httpx.Response(200, json=anthropic_message("from anthropic")),
        "gemini": httpx.Response(200, json=gemini_response("from gemini")),
        "deepseek": httpx.Response(200, json=openai_completion("from deepseek")),
        "perplexity": httpx.Response(200, json=openai_completion("from perplexity")),
    }
    found = {
        "openai": mock.post(OPENAI_URL),
        "openai_eu": mock.post(OPENAI_EU_URL),
        "anthropic": mock.post(ANTHROPIC_URL),
        "gemini": mock.route(host=GEMINI_HOST),
        "deepseek": mock.route(host=DEEPSEEK_HOST),
        "perplexity": mock.route(host=PERPLEXITY_HOST),
    }
    for name, route in found.items():
        outcome = status.get(name)
        if isinstance(outcome, Exception):
            route.mock(side_effect=outcome)
        elif outcome is not None:
            route.mock(return_value=_error_response(name, outcome))
        else:
            route.mock(return_value=ok[name])
    return found


def _error_response(name: str, status: int) -> httpx.Response:
    headers = {"retry-after": "7"} if status == 429 else {}
    if name == "anthropic":
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": CANARY}}
    elif name == "gemini":
        body = {"error": {"code": status, "message": CANARY, "status": "UNAVAILABLE"}}
    else:
        body = {"error": {"message": CANARY, "type": "server_error", "code": "upstream_failed"}}
    return httpx.Response(status, json=body, headers=headers)


def called(found: dict[str, respx.Route]) -> dict[str, int]:
    return {name: route.call_count for name, route in found.items() if route.call_count}


def upstream_json(route: respx.Route) -> dict[str, Any]:
    body = json.loads(route.calls.last.request.content)
    assert isinstance(body, dict)
    return body


# -- routing to compliant deployments ---------------------------------------------------------------
async def test_routes_to_first_compliant_deployment(
    http: httpx.AsyncClient, upstream: respx.MockRouter, audit: MemoryAuditSink
) -> None:
    found = routes(upstream)
    response = await http.post(
        "/v1/chat/completions", json=chat_body("first-compliant"), headers=bearer(BLOCK_KEY)
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "from openai"
    assert_badge_headers(response.headers, "allowed")
    assert response.headers["X-Privacy-Provider"] == "openai"
    assert response.headers["X-Privacy-Channel"] == "openai.api"
    assert called(found) == {"openai": 1}  # deepseek (non-compliant) never saw the request
    [event] = audit.events
    assert (event.decision, event.deployment, event.status, event.attempts) == (
        "allowed",
        "first-compliant#1",
        200,
        1,
    )


@pytest.mark.parametrize(
    ("model", "provider", "content"),
    [
        ("gpt", "openai", "from openai"),
        ("claude", "anthropic", "from anthropic"),
    ],
)
async def test_each_wire_serves(
    http: httpx.AsyncClient, upstream: respx.MockRouter, model: str, provider: str, content: str
) -> None:
    found = routes(upstream)
    response = await http.post("/v1/chat/completions", json=chat_body(model), headers=bearer(BLOCK_KEY))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == content
    assert response.headers["X-Privacy-Provider"] == provider
    assert called(found) == {provider: 1}


# -- failover -------------------------------------------------------------------------------------
async def test_failover_order_on_503_then_429(
    http: httpx.AsyncClient, upstream: respx.MockRouter, audit: MemoryAuditSink
) -> None:
    found = routes(upstream, anthropic=503, gemini=429)
    response = await http.post("/v1/chat/completions", json=chat_body("chain"), headers=bearer(BLOCK_KEY))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "from openai"
    assert response.headers["X-Privacy-Provider"] == "openai"
    assert called(found) == {"anthropic": 1, "gemini": 1, "openai": 1}
    hosts = [call.request.url.host for call in outbound(upstream)]
    assert hosts == ["api.anthropic.com", GEMINI_HOST, "api.openai.com"]
    [event] = audit.events
    assert (event.attempts, event.deployment, event.status) == (3, "chain#2", 200)


async def test_failover_on_connect_error(http: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    found = routes(upstream, openai=httpx.ConnectError("connection refused"))
    response = await http.post(
        "/v1/chat/completions", json=chat_body("openai-then-claude"), headers=bearer(BLOCK_KEY)
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Privacy-Provider"] == "anthropic"
    assert called(found) == {"openai": 1, "anthropic": 1}


async def test_failover_on_connect_error_through_litellm(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    found = routes(upstream, anthropic=httpx.ConnectError("connection refused"))
    response = await http.post(
        "/v1/chat/completions", json=chat_body("claude-then-openai"), headers=bearer(BLOCK_KEY)
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Privacy-Provider"] == "openai"
    # litellm's HTTP handler reconnects once, to the same host, when a connect fails: not a failover
    # (the provider cannot have started work, and no policy boundary is crossed).
    assert found["anthropic"].call_count in (1, 2)
    assert {c.request.url.host for c in found["anthropic"].calls} == {"api.anthropic.com"}
    assert called(found).keys() == {"anthropic", "openai"}
    assert found["openai"].call_count == 1


@pytest.mark.parametrize("model", ["claude-then-openai", "gemini-then-openai"])
async def test_a_429_with_retry_after_through_litellm_holds_the_deployment(
    http: httpx.AsyncClient, upstream: respx.MockRouter, model: str
) -> None:
    first = "anthropic" if model.startswith("claude") else "gemini"
    found = routes(upstream, **{first: 429})  # with Retry-After: 7
    for _ in range(3):
        response = await http.post("/v1/chat/completions", json=chat_body(model), headers=bearer(BLOCK_KEY))
        assert response.headers["X-Privacy-Provider"] == "openai", response.text
    assert called(found) == {first: 1, "openai": 3}


@pytest.mark.parametrize("model", ["guarded", "guarded-rev"])
@pytest.mark.parametrize("stream", [False, True])
async def test_failover_never_reaches_a_non_compliant_deployment(
    http: httpx.AsyncClient, upstream: respx.MockRouter, audit: MemoryAuditSink, model: str, stream: bool
) -> None:
    found = routes(upstream, openai=503)
    response = await http.post(
        "/v1/chat/completions", json=chat_body(model, stream=stream), headers=bearer(BLOCK_KEY)
    )
    error = error_of(response, 502, "upstream_unavailable")
    assert error["type"] == "upstream_error"
    assert_badge_headers(response.headers, "allowed")
    assert response.headers["X-Privacy-Provider"] == "openai"
    assert found["deepseek"].call_count == 0
    assert called(found) == {"openai": 1}
    [event] = audit.events
    assert (event.status, event.channel) == (502, "openai.api")


async def test_stream_fails_over_before_the_first_byte(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    found = routes(upstream, openai_eu=503)
    found["openai"].mock(
        return_value=httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=openai_stream(("a", "b"))
        )
    )
    response = await http.post(
        "/v1/chat/completions", json=chat_body("openai-two-regions", stream=True), headers=bearer(BLOCK_KEY)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_json(response.text)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "ab"
    assert response.text.rstrip().endswith("data: [DONE]")
    assert called(found) == {"openai_eu": 1, "openai": 1}


@pytest.mark.parametrize("model", ["openai-then-claude", "claude-then-openai"])
async def test_no_failover_on_400(http: httpx.AsyncClient, upstream: respx.MockRouter, model: str) -> None:
    first = "openai" if model.startswith("openai") else "anthropic"
    found = routes(upstream, **{first: 400})
    response = await http.post("/v1/chat/completions", json=chat_body(model), headers=bearer(BLOCK_KEY))
    error = error_of(response, 400)
    assert error["type"] == "invalid_request_error"
    assert CANARY not in response.text
    assert called(found) == {first: 1}


@pytest.mark.parametrize("model", ["openai-then-claude", "claude-then-openai"])
async def test_no_failover_after_read_timeout(
    http: httpx.AsyncClient, upstream: respx.MockRouter, model: str
) -> None:
    first = "openai" if model.startswith("openai") else "anthropic"
    found = routes(upstream, **{first: httpx.ReadTimeout("no answer")})
    response = await http.post("/v1/chat/completions", json=chat_body(model), headers=bearer(BLOCK_KEY))
    error = error_of(response, 504, "upstream_timeout")
    assert error["type"] == "upstream_error"
    assert called(found) == {first: 1}


async def test_upstream_429_after_failover_ran_out(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    found = routes(upstream, openai=429)
    response = await http.post("/v1/chat/completions", json=chat_body("gpt"), headers=bearer(BLOCK_KEY))
    error = error_of(response, 429, "rate_limited")
    assert error["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "7"
    assert_badge_headers(response.headers, "allowed")
    assert called(found) == {"openai": 1}


async def test_every_compliant_deployment_failing_is_502(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    found = routes(upstream, anthropic=529, gemini=503, openai=503)
    response = await http.post("/v1/chat/completions", json=chat_body("chain"), headers=bearer(BLOCK_KEY))
    error_of(response, 502, "upstream_unavailable")
    assert CANARY not in response.text
    assert called(found) == {"anthropic": 1, "gemini": 1, "openai": 1}


@pytest.mark.parametrize("status", [500, 502, 504])
@pytest.mark.parametrize("first", ["anthropic", "gemini", "openai_eu"])
async def test_no_failover_when_the_provider_may_have_started(
    http: httpx.AsyncClient, upstream: respx.MockRouter, audit: MemoryAuditSink, first: str, status: int
) -> None:
    """A 500, 502 or 504 may come after the model ran (and billed): the call is not sent again."""
    model = {"anthropic": "chain", "gemini": "gemini-then-openai", "openai_eu": "openai-two-regions"}[first]
    found = routes(upstream, **{first: status})
    response = await http.post("/v1/chat/completions", json=chat_body(model), headers=bearer(BLOCK_KEY))
    assert called(found) == {first: 1}
    assert CANARY not in response.text
    if response.status_code == 504:  # litellm reads some providers' 504 as a timeout
        error_of(response, 504, "upstream_timeout")
    else:
        assert "may have started" in error_of(response, 502, "upstream_unavailable")["message"]
    [event] = audit.events
    assert (event.status, event.attempts) == (response.status_code, 1)


# -- block and reroute ----------------------------------------------------------------------------
async def test_block_makes_no_upstream_call(
    http: httpx.AsyncClient, upstream: respx.MockRouter, audit: MemoryAuditSink
) -> None:
    routes(upstream)
    response = await http.post("/v1/chat/completions", json=chat_body("trainer"), headers=bearer(BLOCK_KEY))
    error = error_of(response, 403, "no_compliant_deployment")
    assert error["type"] == "privacy_policy_violation"
    privacy = error["privacy"]
    assert privacy["decision"] == "blocked"
    assert privacy["requested_model"] == "trainer"
    assert privacy["policy"] == ["api-channel-only", "no-training-only"]
    [considered] = privacy["considered"]
    assert considered["deployment"] == "trainer#0"
    assert considered["channel"] == "deepseek.api"
    assert considered["complies"] is False
    assert considered["reasons"] and all(isinstance(r, str) and r for r in considered["reasons"])
    assert_badge_headers(response.headers, "blocked")
    assert response.headers["X-Privacy-Channel"] == "deepseek.api"
    assert response.headers["X-Request-Id"] == audit.events[0].request_id
    assert outbound(upstream) == []
    [event] = audit.events
    assert (event.decision, event.status, event.deployment) == ("blocked", 403, None)
    assert event.reasons


async def test_block_lists_every_deployment_considered(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    routes(upstream)
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("mixed"),
        headers={**bearer(BLOCK_KEY), "X-Privacy-Policy": "self-hosted-only"},
    )
    error = error_of(response, 403, "no_compliant_deployment")
    considered = error["privacy"]["considered"]
    assert [c["deployment"] for c in considered] == ["mixed#0", "mixed#1"]
    assert [c["channel"] for c in considered] == ["openai.api", "perplexity.api"]
    for entry in considered:
        assert entry["complies"] is False
        assert entry["reasons"]
        assert entry["badges"]
    assert outbound(upstream) == []


async def test_reroute_to_a_compliant_model(
    http: httpx.AsyncClient, upstream: respx.MockRouter, audit: MemoryAuditSink
) -> None:
    found = routes(upstream)
    response = await http.post("/v1/chat/completions", json=chat_body("trainer"), headers=bearer(REROUTE_KEY))
    assert response.status_code == 200, response.text
    assert_badge_headers(response.headers, "rerouted")
    assert response.headers["X-Privacy-Rerouted-From"] == "trainer"
    assert response.headers["X-Privacy-Provider"] == "anthropic"
    body = response.json()
    assert body["privacy"]["decision"] == "rerouted"
    assert body["privacy"]["rerouted_from"] == "trainer"
    assert called(found) == {"anthropic": 1}
    [event] = audit.events
    assert (event.decision, event.served_model, event.requested_model) == ("rerouted", "claude", "trainer")


# -- request-added policies -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "headers"),
    [
        ({}, {"X-Privacy-Policy": "zero-retention"}),
        ({"privacy": {"policy": ["zero-retention"]}}, {}),
        ({"privacy": {"policy": "zero-retention", "on_violation": "block"}}, {}),
        ({"provider": {"zdr": True}}, {}),
    ],
    ids=["header", "privacy-list", "privacy-string", "provider-zdr"],
)
async def test_request_policy_tightens_routing(
    http: httpx.AsyncClient, upstream: respx.MockRouter, extra: dict[str, Any], headers: dict[str, str]
) -> None:
    found = routes(upstream)
    # Without the ask, `mixed` goes to OpenAI (first compliant); zero-retention skips it.
    plain = await http.post("/v1/chat/completions", json=chat_body("mixed"), headers=bearer(BLOCK_KEY))
    assert plain.headers["X-Privacy-Provider"] == "openai"
    response = await http.post(
        "/v1/chat/completions", json=chat_body("mixed", **extra), headers={**bearer(BLOCK_KEY), **headers}
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Privacy-Provider"] == "perplexity"
    policy = split_list(response.headers["X-Privacy-Policy"])
    assert {"api-channel-only", "no-training-only", "zero-retention"} <= set(policy)
    assert response.json()["privacy"]["policy"] == policy
    assert called(found) == {"openai": 1, "perplexity": 1}
    sent = upstream_json(found["perplexity"])
    assert "privacy" not in sent and "provider" not in sent


async def test_provider_data_collection_deny_tightens(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    found = routes(upstream)
    # The loose key's own policy lets DeepSeek (training unknown) through ...
    loose = await http.post("/v1/chat/completions", json=chat_body("trainer"), headers=bearer(LOOSE_KEY))
    assert loose.status_code == 200, loose.text
    assert loose.headers["X-Privacy-Provider"] == "deepseek"
    assert called(found) == {"deepseek": 1}
    # ... and `data_collection: deny` adds no-training-only, which blocks it before any call.
    denied = await http.post(
        "/v1/chat/completions",
        json=chat_body("trainer", provider={"data_collection": "deny"}),
        headers=bearer(LOOSE_KEY),
    )
    error = error_of(denied, 403, "no_compliant_deployment")
    assert "no-training-only" in error["privacy"]["policy"]
    assert called(found) == {"deepseek": 1}


@pytest.mark.parametrize(
    ("extra", "headers"),
    [
        ({"provider": {"data_collection": "allow"}}, {}),
        ({"provider": {"data_collection": "allow", "zdr": False}}, {}),
        ({"privacy": {"on_violation": "reroute"}}, {}),
        ({"privacy": {"policy": ["api-channel-only"]}}, {}),
        ({}, {"X-Privacy-Policy": "api-channel-only"}),
    ],
    ids=[
        "data-collection-allow",
        "zdr-false",
        "ask-reroute",
        "privacy-weaker-policy",
        "header-weaker-policy",
    ],
)
async def test_request_cannot_loosen(
    http: httpx.AsyncClient, upstream: respx.MockRouter, extra: dict[str, Any], headers: dict[str, str]
) -> None:
    routes(upstream)
    response = await http.post(
        "/v1/chat/completions", json=chat_body("trainer", **extra), headers={**bearer(BLOCK_KEY), **headers}
    )
    error = error_of(response, 403, "no_compliant_deployment")
    assert "no-training-only" in error["privacy"]["policy"]
    assert response.headers["X-Privacy-Decision"] == "blocked"
    assert outbound(upstream) == []


@pytest.mark.parametrize(
    ("extra", "headers"),
    [
        ({"privacy": {"on_violation": "block"}}, {}),
        ({"privacy": {"policy": ["no-training-only"], "on_violation": "block"}}, {}),
    ],
)
async def test_request_block_overrides_key_reroute(
    http: httpx.AsyncClient, upstream: respx.MockRouter, extra: dict[str, Any], headers: dict[str, str]
) -> None:
    routes(upstream)
    response = await http.post(
        "/v1/chat/completions", json=chat_body("trainer", **extra), headers={**bearer(REROUTE_KEY), **headers}
    )
    error_of(response, 403, "no_compliant_deployment")
    assert response.headers["X-Privacy-Decision"] == "blocked"
    assert "X-Privacy-Rerouted-From" not in response.headers
    assert outbound(upstream) == []


@pytest.mark.parametrize(
    ("extra", "headers"),
    [
        ({}, {"X-Privacy-Policy": "no-such-policy"}),
        ({}, {"X-Privacy-Policy": "zero-retention, no-such-policy"}),
        ({"privacy": {"policy": ["no-such-policy"]}}, {}),
    ],
)
async def test_unknown_policy_is_400(
    http: httpx.AsyncClient,
    upstream: respx.MockRouter,
    audit: MemoryAuditSink,
    extra: dict[str, Any],
    headers: dict[str, str],
) -> None:
    routes(upstream)
    response = await http.post(
        "/v1/chat/completions", json=chat_body("gpt", **extra), headers={**bearer(BLOCK_KEY), **headers}
    )
    error = error_of(response, 400, "unknown_policy")
    assert error["type"] == "invalid_request_error"
    assert outbound(upstream) == []


# -- what goes upstream, what comes back ----------------------------------------------------------
async def test_upstream_body_is_allowlisted_with_config_model_and_key(
    http: httpx.AsyncClient, upstream: respx.MockRouter, env_keys: dict[str, str]
) -> None:
    found = routes(upstream)
    body = chat_body(
        "gpt",
        temperature=0.5,
        max_tokens=20,
        store=True,
        metadata={"team": "legal"},
        privacy={"policy": ["no-training-only"]},
        provider={"data_collection": "deny"},
        user="u-1",
    )
    response = await http.post(
        "/v1/chat/completions", json=body, headers={**bearer(BLOCK_KEY), "x-api-key": BLOCK_KEY}
    )
    assert response.status_code == 200, response.text
    request = found["openai"].calls.last.request
    sent = json.loads(request.content)
    assert set(sent) <= UPSTREAM_CHAT_FIELDS, set(sent) - UPSTREAM_CHAT_FIELDS
    for dropped in ("privacy", "provider"):
        assert dropped not in sent
    # Data paths are honoured where the policy allows, never dropped: OpenAI's API stores the
    # completion, which no-training-only permits (`X-Privacy-Features` says so).
    assert (sent["store"], sent["metadata"]) == (True, {"team": "legal"})
    assert response.headers["x-privacy-features"] == "stored_response"
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == body["messages"]
    assert (sent["temperature"], sent["max_tokens"], sent["user"]) == (0.5, 20, "u-1")
    assert request.headers["authorization"] == f"Bearer {env_keys['RESPX_OPENAI_KEY']}"
    assert "x-api-key" not in request.headers
    assert BLOCK_KEY not in str(request.headers) and BLOCK_KEY.encode() not in request.content


@pytest.mark.parametrize("field", ["safety_identifier", "prompt_cache_key"])
async def test_fields_openai_defines_since_reach_the_upstream(
    http: httpx.AsyncClient, upstream: respx.MockRouter, field: str
) -> None:
    """Spec-valid fields real clients send (Codex sends `prompt_cache_key`; `safety_identifier`
    replaces `user`) pass through to an OpenAI-wire upstream; litellm drops what a provider lacks."""
    found = routes(upstream)
    for model, name in (("gpt", "openai"), ("claude", "anthropic")):
        body = chat_body(model, **{field: "end-user-7f3a"})
        response = await http.post("/v1/chat/completions", json=body, headers=bearer(BLOCK_KEY))
        assert response.status_code == 200, response.text
        sent = json.loads(found[name].calls.last.request.content)
        assert model == "claude" or sent[field] == "end-user-7f3a"
    response = await http.post(
        "/v1/chat/completions", json=chat_body("gpt", **{field: 7}), headers=bearer(BLOCK_KEY)
    )
    assert error_of(response, 400)["param"] == field


async def test_litellm_upstream_gets_config_key_and_model(
    http: httpx.AsyncClient, upstream: respx.MockRouter, env_keys: dict[str, str]
) -> None:
    found = routes(upstream)
    body = chat_body("claude", metadata={"user_id": "x"}, privacy={"on_violation": "block"})
    response = await http.post("/v1/chat/completions", json=body, headers=bearer(BLOCK_KEY))
    assert response.status_code == 200, response.text
    request = found["anthropic"].calls.last.request
    sent = json.loads(request.content)
    assert sent["model"] == "claude-sonnet-4-5"
    assert "privacy" not in sent and "store" not in sent and sent["metadata"] == {"user_id": "x"}
    # Asking Anthropic's channel to store, whose catalog entry has no facts for it: refused, not dropped.
    calls = found["anthropic"].call_count
    response = await http.post(
        "/v1/chat/completions", json={**body, "store": True}, headers=bearer(BLOCK_KEY)
    )
    assert error_of(response, 403, "feature_not_allowed")["privacy"]["feature"] == "stored_response"
    assert found["anthropic"].call_count == calls
    assert request.headers["x-api-key"] == env_keys["RESPX_ANTHROPIC_KEY"]
    assert BLOCK_KEY not in str(request.headers) and BLOCK_KEY.encode() not in request.content


@pytest.mark.parametrize(("model", "name"), [("gpt", "openai"), ("claude", "anthropic")])
@pytest.mark.parametrize("status", [400, 401, 500])
async def test_upstream_error_messages_are_not_echoed(
    http: httpx.AsyncClient, upstream: respx.MockRouter, model: str, name: str, status: int
) -> None:
    found = routes(upstream, **{name: status})
    response = await http.post("/v1/chat/completions", json=chat_body(model), headers=bearer(BLOCK_KEY))
    assert 400 <= response.status_code < 600
    error_of(response, response.status_code)
    assert CANARY not in response.text
    assert CANARY not in str(response.headers)
    assert called(found) == {name: 1}


async def test_upstream_response_headers_are_not_passed_on(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    found = routes(upstream)
    leaky = {
        "set-cookie": "__cf_bm=upstream-cookie; path=/; HttpOnly",
        "openai-organization": "org-upstream-secret",
        "openai-project": "proj_upstream",
        "x-request-id": "req_upstream_123",
        "x-ratelimit-remaining-tokens": "9999",
    }
    found["openai"].mock(return_value=httpx.Response(200, json=openai_completion(), headers=leaky))
    for stream in (False, True):
        if stream:
            found["openai"].mock(
                return_value=httpx.Response(
                    200, content=openai_stream(), headers={**leaky, "content-type": "text/event-stream"}
                )
            )
        response = await http.post(
            "/v1/chat/completions", json=chat_body("gpt", stream=stream), headers=bearer(BLOCK_KEY)
        )
        assert response.status_code == 200, response.text
        for name in ("set-cookie", "openai-organization", "openai-project", "x-ratelimit-remaining-tokens"):
            assert name not in response.headers, name
        assert response.headers["x-request-id"] != "req_upstream_123"
        assert "org-upstream-secret" not in response.text
