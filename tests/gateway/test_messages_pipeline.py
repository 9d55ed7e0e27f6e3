"""`POST /v1/messages` through the one pipeline: the decisions chat has, on Anthropic's wire.

Sluice runs in-process in front of the real fake upstream (loopback sockets). `claude` has two
compliant deployments: Anthropic's API (simulated: pass-through to the fake) and a self-hosted
vLLM on the same fake (translated), which only a failover reaches. Asserted: failover before the
first byte and never after it, a stream that breaks ends with an Anthropic `error` event, the
client's faults are 400s that fail over nowhere, one ledger record per request, the body cap,
content-aware tightening on Messages text, and errors in Anthropic's envelope with badge headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.errors import ANTHROPIC_TYPES, PolicyViolation, RequestTooLarge, UpstreamFailure, anthropic_body
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.upstream.base import UpstreamTarget
from gateway.upstream.litellm_adapter import (
    TRANSLATED_CHAT_FIELDS,
    LiteLLMAdapter,
    MessagesTranslation,
    load_litellm,
)
from tests.gateway.support import LITELLM_WARNINGS, build_app, key_hash, serving

pytestmark = list(LITELLM_WARNINGS)

KEY = "sk-client-messages-7Hq2"
AWS_EXAMPLE = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key
LOCAL_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module", autouse=True)
def litellm_imported() -> None:
    load_litellm()


def config(local_url: str) -> str:
    local = (
        f'{{provider: self_hosted, channel: self_hosted.vllm, model: "hosted_vllm/{LOCAL_MODEL}", '
        f'api_base: "{local_url}/v1"}}'
    )
    return f"""
demo: true
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: claude
    deployments:
      - {{provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5, simulate: true}}
      - {local}
sensitive:
  rules:
    - {{detectors: [secrets], require: [self-hosted-only]}}
keys:
  - {{name: messages, key_hash: "{key_hash(KEY)}"}}
"""


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
async def http(fake: FakeUpstream, audit: MemoryAuditSink) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        allow_simulate=True, fake_upstream_url=fake.url, read_timeout=10.0, max_body_bytes=64 * 1024
    )
    async with serving(build_app(config(fake.url), settings=settings, audit=audit)) as client:
        yield client


def body(content: Any = "Hello", **extra: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": content}], **extra}


async def ask(http: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    return await http.post("/v1/messages", json=payload, headers={"x-api-key": KEY})


def anthropic_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    parsed = response.json()
    assert parsed["type"] == "error" and set(parsed) == {"type", "error"}
    assert parsed["error"]["type"] == ANTHROPIC_TYPES[status].value
    assert parsed["error"]["code"] == code
    error: dict[str, Any] = parsed["error"]
    return error


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((lines["event"], orjson.loads(lines["data"])))
    return found


def test_the_status_table_is_designs() -> None:
    assert {status: kind.value for status, kind in ANTHROPIC_TYPES.items()} == {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        502: "api_error",
        504: "api_error",
        529: "overloaded_error",
    }
    blocked = anthropic_body(PolicyViolation("blocked", extra={"privacy": {"considered": []}}))
    assert blocked == {
        "type": "error",
        "error": {
            "type": "permission_error",
            "message": "blocked",
            "code": "no_compliant_deployment",
            "privacy": {"considered": []},
        },
    }
    assert anthropic_body(UpstreamFailure("down", timeout=True))["error"]["type"] == "api_error"
    assert anthropic_body(RequestTooLarge("big"))["error"]["type"] == "request_too_large"


async def test_one_ledger_record_with_tokens(
    http: httpx.AsyncClient, audit: MemoryAuditSink, fake: FakeUpstream
) -> None:
    response = await ask(http, body())
    assert response.status_code == 200
    assert response.headers["x-privacy-channel"] == "anthropic.api"
    [event] = audit.events
    assert event.endpoint == "messages" and event.deployment == "claude#0" and event.status == 200
    assert event.prompt_tokens == response.json()["usage"]["input_tokens"]
    assert event.completion_tokens == response.json()["usage"]["output_tokens"]
    [sent] = fake.requests
    assert sent.path == "/v1/messages"


async def test_stream_ledger_counts_both_sides(http: httpx.AsyncClient, audit: MemoryAuditSink) -> None:
    response = await ask(http, body(stream=True))
    found = events(response.text)
    assert found[0][0] == "message_start" and found[-1][0] == "message_stop"
    assert found[0][1]["message"]["privacy"]["channel"] == "anthropic.api"
    [event] = audit.events
    assert event.stream and event.status == 200
    assert event.prompt_tokens == found[0][1]["message"]["usage"]["input_tokens"]
    assert (
        event.completion_tokens == next(d for n, d in found if n == "message_delta")["usage"]["output_tokens"]
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_failover_before_the_first_byte(
    http: httpx.AsyncClient, audit: MemoryAuditSink, fake: FakeUpstream, stream: bool
) -> None:
    fake.script("status=529")  # Anthropic: overloaded, the work was not started
    response = await ask(http, body(stream=stream))
    assert response.status_code == 200, response.text
    assert response.headers["x-privacy-channel"] == "self_hosted.vllm"
    assert [r.path for r in fake.requests] == ["/v1/messages", "/v1/chat/completions"]
    if stream:
        assert events(response.text)[0][1]["message"]["privacy"]["deployment"] == "claude#1"
    else:
        assert response.json()["type"] == "message" and response.json()["content"][0]["type"] == "text"
    [event] = audit.events
    assert event.deployment == "claude#1" and event.attempts == 2


async def test_a_broken_stream_ends_with_an_anthropic_error_event(
    http: httpx.AsyncClient, audit: MemoryAuditSink, fake: FakeUpstream
) -> None:
    fake.script("error_after=4,leak")
    response = await ask(http, body(stream=True))
    found = events(response.text)
    assert found[0][0] == "message_start"
    name, data = found[-1]
    assert name == "error" and data["error"]["type"] == "api_error"
    assert data["error"]["code"] == "upstream_unavailable"
    assert KEY not in response.text and "sk-simulated" not in response.text
    assert len(fake.requests) == 1  # never switched provider mid-stream
    [event] = audit.events
    assert event.status == 502 and event.error_code == "upstream_unavailable"


async def test_an_invalid_request_is_the_clients_400_and_fails_over_nowhere(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    fake.script("status=400")
    error = anthropic_error(await ask(http, body()), 400, "invalid_value")
    assert "HTTP 400" in error["message"]
    assert len(fake.requests) == 1


async def test_bad_input_in_anthropics_envelope(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    anthropic_error(await ask(http, {"model": "claude", "messages": []}), 400, "missing_field")
    anthropic_error(await ask(http, body(temperature=1.5)), 400, "invalid_value")
    anthropic_error(await ask(http, body([{"text": "no type"}])), 400, "invalid_value")
    anthropic_error(await ask(http, body(unknown_field=1)), 400, "invalid_value")
    forbidden = body(
        messages=[{"role": "user", "content": [{"type": "text", "text": "x", "extra_headers": {}}]}]
    )
    assert anthropic_error(await ask(http, forbidden), 400, "forbidden_parameter")["param"] == (
        "messages[].content[].extra_headers"
    )
    anthropic_error(await ask(http, body(fallbacks=[{"model": "x"}])), 400, "forbidden_parameter")
    bad_beta = await http.post(
        "/v1/messages", json=body(), headers={"x-api-key": KEY, "anthropic-beta": "ok-1, x\x7fy"}
    )
    anthropic_error(bad_beta, 400, "invalid_value")
    tools = [{"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(513)]
    anthropic_error(await ask(http, body(tools=tools)), 400, "invalid_value")
    too_large = await ask(http, body("x" * (80 * 1024)))
    anthropic_error(too_large, 413, "request_too_large")
    unauthenticated = await http.post("/v1/messages", json=body())
    anthropic_error(unauthenticated, 401, "invalid_api_key")
    assert fake.requests == []


async def test_tool_inputs_and_cache_ttl_are_the_users_own_json(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    content = [
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "Bash",
            "input": {"command": "ls", "timeout": 5, "api_key": "x"},
        }
    ]
    turn = body(
        messages=[
            {"role": "user", "content": "run ls"},
            {"role": "assistant", "content": content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "a.txt",
                        "cache_control": {"type": "ephemeral", "ttl": "5m"},
                    }
                ],
            },
        ]
    )
    response = await ask(http, turn)
    assert response.status_code == 200, response.text
    assert fake.requests[0].json["messages"][1]["content"][0]["input"]["timeout"] == 5


@pytest.mark.parametrize(
    "where",
    [
        {"system": [{"type": "text", "text": f"deploy with {AWS_EXAMPLE}"}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": AWS_EXAMPLE},
                        }
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": AWS_EXAMPLE}],
                }
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t", "name": "sh", "input": {"env": [AWS_EXAMPLE]}}
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
            ]
        },
    ],
)
async def test_sensitive_content_in_messages_text_tightens_the_policy(
    http: httpx.AsyncClient, audit: MemoryAuditSink, fake: FakeUpstream, where: dict[str, Any]
) -> None:
    response = await ask(http, body(**where))
    assert response.status_code == 200, response.text
    assert response.headers["x-privacy-sensitive"] == "secrets"
    assert response.headers["x-privacy-channel"] == "self_hosted.vllm"  # self-hosted-only was added
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"]
    assert AWS_EXAMPLE not in repr(audit.events)


async def test_count_tokens_is_one_decision_and_one_record(
    http: httpx.AsyncClient, audit: MemoryAuditSink, fake: FakeUpstream
) -> None:
    payload = {"model": "claude", "messages": [{"role": "user", "content": "Hello"}]}
    response = await http.post("/v1/messages/count_tokens", json=payload, headers={"x-api-key": KEY})
    assert response.status_code == 200
    assert response.json()["input_tokens"] > 0 and response.json()["privacy"]["decision"] == "allowed"
    assert [r.path for r in fake.requests] == ["/v1/messages/count_tokens"]
    [event] = audit.events
    assert event.endpoint == "count_tokens"


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("openai/gpt-4o-mini", False),
        ("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", False),
        ("openai/o3-mini", True),
    ],
)
async def test_thinking_reaches_only_models_that_reason(model: str, reasoning: bool) -> None:
    """`thinking` translates to `reasoning_effort`, which a model without reasoning refuses: the
    OpenAI-wire pass-through would send it as it is, so the translation drops it there."""
    adapter = LiteLLMAdapter()
    target = UpstreamTarget(model=model, upstream_model=model.partition("/")[2], api_base=None)
    thinking = {"type": "enabled", "budget_tokens": 2048}
    chat, _ = await MessagesTranslation(adapter).request(target, body(thinking=thinking))
    assert ("reasoning_effort" in chat) is reasoning
    assert chat["max_completion_tokens" if reasoning else "max_tokens"] == 64
    assert set(chat) <= TRANSLATED_CHAT_FIELDS
    await adapter.aclose()


async def test_a_broken_translated_stream_ends_with_an_anthropic_error_event(
    http: httpx.AsyncClient, audit: MemoryAuditSink, fake: FakeUpstream
) -> None:
    # The secret sends the request to the self-hosted deployment (translated); the marker breaks its stream.
    response = await ask(http, body(f"{AWS_EXAMPLE} [[fake:error_after=3,leak]]", stream=True))
    found = events(response.text)
    assert found[0][0] == "message_start"
    assert found[0][1]["message"]["privacy"]["channel"] == "self_hosted.vllm"
    name, data = found[-1]
    assert name == "error" and data["error"]["code"] == "upstream_unavailable"
    assert "message_stop" not in [n for n, _ in found]
    assert AWS_EXAMPLE not in response.text and "sk-simulated" not in response.text
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"]
    [event] = audit.events
    assert event.status == 502


async def test_a_data_path_no_deployment_may_serve_is_refused_in_anthropics_envelope(
    http: httpx.AsyncClient, audit: MemoryAuditSink, fake: FakeUpstream
) -> None:
    """`mcp_servers` naming a host the config does not list (`tool_hosts`): the provider would
    connect to it, so no deployment may serve the request and nothing is sent."""
    servers = [{"type": "url", "url": "https://mcp.attacker.example/sse", "name": "x"}]
    response = await ask(http, body(mcp_servers=servers))
    error = anthropic_error(response, 403, "feature_not_allowed")
    assert "remote_mcp" in str(error["privacy"])
    assert response.headers["x-privacy-decision"] == "blocked"
    assert fake.requests == []
    [event] = audit.events
    assert event.decision == "blocked"
