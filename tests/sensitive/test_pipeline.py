"""Content-aware tightening through the app: findings join the effective policy before routing.

On the demo config (rule `secrets` -> `zero-retention`; gpt-4o-mini's only deployment keeps data
30 days and reroutes to llama-local) and on small configs of their own (report mode, per-key
rules, `custom`). What reached the provider is read from the fake upstream, what was recorded
from the in-memory audit sink.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.observability.audit import MemoryAuditSink
from tests.conftest import AUTH, LEGAL_KEY, chat_body
from tests.gateway.support import LITELLM_WARNINGS, bearer, build_app, error_of, key_hash, serving, split_list

pytestmark = list(LITELLM_WARNINGS)

FAKE_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example access key id
PROMPT = f"my deploy fails, here is the config: aws_access_key_id={FAKE_KEY}"


def messages_with(where: str) -> list[dict[str, Any]]:
    """A conversation with the fake key in one place only."""
    calls = [{"id": "c1", "type": "function", "function": {"name": "deploy", "arguments": "{}"}}]
    convo: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "deploy please"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
    ]
    if where == "system":
        convo[0]["content"] += " " + PROMPT
    elif where == "tool-arguments":
        calls[0]["function"]["arguments"] = json.dumps({"env": PROMPT})
    elif where == "tool-result":
        convo[3]["content"] = PROMPT
    elif where == "text-part":
        convo[4]["content"].append({"type": "text", "text": PROMPT})
    return convo


async def test_a_credential_reroutes_to_the_self_hosted_model(
    client: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(content=PROMPT), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["X-Privacy-Sensitive"] == "secrets"
    assert response.headers["X-Privacy-Decision"] == "rerouted"
    assert response.headers["X-Privacy-Rerouted-From"] == "gpt-4o-mini"
    assert response.headers["X-Privacy-Channel"] == "self_hosted.vllm"
    assert "zero-retention" in split_list(response.headers["X-Privacy-Policy"])
    privacy = response.json()["privacy"]
    assert privacy["sensitive"] == ["secrets"]
    assert privacy["model"] == "llama-local"
    assert len(fake.requests) == 1
    (event,) = audit.events
    assert event.decision == "rerouted"
    assert event.extra == {"sensitive": ["secrets"]}
    assert "zero-retention" in event.policy


async def test_the_same_prompt_without_the_key_is_allowed(
    client: httpx.AsyncClient, audit: MemoryAuditSink
) -> None:
    clean = PROMPT.replace(FAKE_KEY, "(redacted)")
    response = await client.post("/v1/chat/completions", json=chat_body(content=clean), headers=AUTH)
    assert response.status_code == 200, response.text
    assert "X-Privacy-Sensitive" not in response.headers
    assert response.headers["X-Privacy-Decision"] == "allowed"
    assert response.headers["X-Privacy-Channel"] == "openai.api"
    assert "sensitive" not in response.json()["privacy"]
    assert audit.events[0].extra == {}


async def test_blocked_names_the_detector(
    client: httpx.AsyncClient, fake: FakeUpstream, audit: MemoryAuditSink
) -> None:
    body = chat_body(content=PROMPT, privacy={"on_violation": "block"})
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    error = error_of(response, 403, "no_compliant_deployment")
    assert response.headers["X-Privacy-Sensitive"] == "secrets"
    assert "secrets" in error["message"]
    assert FAKE_KEY not in response.text
    assert error["privacy"]["sensitive"] == ["secrets"]
    assert "zero-retention" in error["privacy"]["policy"]
    assert fake.requests == []
    (event,) = audit.events
    assert (event.decision, event.extra) == ("blocked", {"sensitive": ["secrets"]})


@pytest.mark.parametrize("where", ["system", "tool-arguments", "tool-result", "text-part"])
async def test_every_text_part_is_scanned(client: httpx.AsyncClient, where: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": messages_with(where), "privacy": {"on_violation": "block"}}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    error_of(response, 403, "no_compliant_deployment")
    assert response.headers["X-Privacy-Sensitive"] == "secrets"


async def test_the_conversation_without_the_key_passes(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o-mini", "messages": messages_with("nowhere")}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert "X-Privacy-Sensitive" not in response.headers


async def test_a_stream_says_it_too(client: httpx.AsyncClient) -> None:
    body = chat_body(content=PROMPT, stream=True)
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response:
        text = (await response.aread()).decode()
    assert response.status_code == 200
    assert response.headers["X-Privacy-Sensitive"] == "secrets"
    assert response.headers["X-Privacy-Decision"] == "rerouted"
    first = json.loads(text.split("\n\n")[0].removeprefix("data: "))
    assert first["privacy"]["sensitive"] == ["secrets"]


async def test_embeddings_are_scanned(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    body = {"model": "text-embedding-3-small", "input": ["fine", PROMPT]}
    response = await client.post("/v1/embeddings", json=body, headers=AUTH)
    error_of(response, 403, "no_compliant_deployment")  # no reroute_to: blocked
    assert response.headers["X-Privacy-Sensitive"] == "secrets"
    assert fake.requests == []
    clean = await client.post("/v1/embeddings", json={**body, "input": ["fine"]}, headers=AUTH)
    assert clean.status_code == 200, clean.text


async def test_the_legal_key_is_blocked_with_the_detector_named(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body(model="llama-local", content=PROMPT), headers=bearer(LEGAL_KEY)
    )
    assert response.status_code == 200, response.text  # self-hosted keeps nothing: zero-retention holds
    assert response.headers["X-Privacy-Sensitive"] == "secrets"
    blocked = await client.post(
        "/v1/chat/completions", json=chat_body(content=PROMPT), headers=bearer(LEGAL_KEY)
    )
    assert "secrets" in error_of(blocked, 403, "no_compliant_deployment")["message"]


CLIENT_KEY = "sk-sensitive-test-client"
OTHER_KEY = "sk-sensitive-test-other"


def small_config(fake_url: str, sensitive: str, key_rules: str = "") -> str:
    return f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: hosted
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_base: "https://api.openai.com/v1",
          api_key_env: SENSITIVE_TEST_KEY}}
  - name: local
    deployments:
      - {{provider: self_hosted, channel: self_hosted.vllm, model: hosted_vllm/llama,
          api_base: "{fake_url}/v1"}}
{sensitive}
keys:
  - {{name: team, key_hash: "{key_hash(CLIENT_KEY)}"{key_rules}}}
  - {{name: other, key_hash: "{key_hash(OTHER_KEY)}"}}
"""


async def post(
    config: str, key: str, content: str, audit: MemoryAuditSink, model: str = "local"
) -> httpx.Response:
    async with serving(build_app(config, audit=audit)) as http:
        return await http.post(
            "/v1/chat/completions", json=chat_body(model=model, content=content), headers=bearer(key)
        )


async def test_report_mode_records_but_does_not_tighten(fake: FakeUpstream) -> None:
    audit = MemoryAuditSink()
    sensitive = "sensitive: {mode: report, rules: [{detectors: [secrets, pii], require: [self-hosted-only]}]}"
    config = small_config(fake.url, sensitive)
    response = await post(config, CLIENT_KEY, f"{PROMPT} and mail jane.doe@example.com", audit)
    assert response.status_code == 200, response.text
    assert "X-Privacy-Sensitive" not in response.headers
    assert "self-hosted-only" not in split_list(response.headers["X-Privacy-Policy"])
    assert audit.events[0].extra == {"sensitive_report": ["pii", "secrets"]}


async def test_per_key_rules_apply_to_that_key_only(fake: FakeUpstream) -> None:
    rules = ", sensitive: [{detectors: [pii], require: [self-hosted-only]}]"
    config = small_config(fake.url, "", rules)
    audit = MemoryAuditSink()
    mine = await post(config, CLIENT_KEY, "reply to jane.doe@example.com", audit)
    assert mine.headers["X-Privacy-Sensitive"] == "pii"
    assert "self-hosted-only" in split_list(mine.headers["X-Privacy-Policy"])
    theirs = await post(config, OTHER_KEY, "reply to jane.doe@example.com", audit)
    assert theirs.status_code == 200
    assert "X-Privacy-Sensitive" not in theirs.headers
    assert [e.extra for e in audit.events] == [{"sensitive": ["pii"]}, {}]


async def test_rules_only_tighten(fake: FakeUpstream) -> None:
    """A rule that requires less than the key's policy leaves the key's policy whole."""
    rules = "sensitive: {rules: [{detectors: [secrets], require: [api-channel-only]}]}"
    config = small_config(fake.url, rules).replace(
        f'key_hash: "{key_hash(CLIENT_KEY)}"', f'key_hash: "{key_hash(CLIENT_KEY)}", policy: [zero-retention]'
    )
    response = await post(config, CLIENT_KEY, PROMPT, MemoryAuditSink())
    assert response.status_code == 200, response.text
    policies = split_list(response.headers["X-Privacy-Policy"])
    assert {"zero-retention", "api-channel-only"} <= set(policies)


async def test_custom_keywords_and_patterns(fake: FakeUpstream) -> None:
    sensitive = (
        "sensitive:\n  rules: [{detectors: [custom], require: [self-hosted-only]}]\n"
        "  custom: {keywords: [Bluebird], patterns: ['PRJ-[0-9]{4}']}"
    )
    config = small_config(fake.url, sensitive)
    audit = MemoryAuditSink()
    for text, tightened in (
        ("status of project bluebird?", True),
        ("ticket PRJ-0042 is late", True),
        ("bluebirds sing", False),
        ("ticket PRJ-42", False),
    ):
        response = await post(config, CLIENT_KEY, text, audit, model="hosted")
        if tightened:
            error = error_of(response, 403, "no_compliant_deployment")
            assert response.headers["X-Privacy-Sensitive"] == "custom"
            assert "custom" in error["message"]
        else:
            assert response.status_code != 403 and "X-Privacy-Sensitive" not in response.headers, text


async def test_a_large_prompt_is_scanned_whole(client: httpx.AsyncClient) -> None:
    """Past one scan window (64 KB) detection runs in a worker thread: the key at the end still counts."""
    filler = "The pool is exhausted again; the logs follow.\n" * 3000
    response = await client.post(
        "/v1/chat/completions", json=chat_body(content=filler + PROMPT), headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Privacy-Sensitive"] == "secrets"
    assert response.headers["X-Privacy-Decision"] == "rerouted"


def responses_input_with(where: str) -> dict[str, Any]:
    """A Responses request with the fake key in one place only (`nowhere`: not at all)."""
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "instructions": "You are a helpful assistant.",
        "input": [
            {"role": "user", "content": "deploy please"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}]},
            {"type": "function_call", "call_id": "c1", "name": "deploy", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
            {"role": "user", "content": [{"type": "input_text", "text": "thanks"}]},
        ],
        "privacy": {"on_violation": "block"},
    }
    items = body["input"]
    if where == "instructions":
        body["instructions"] += " " + PROMPT
    elif where == "string-input":
        body["input"] = PROMPT
    elif where == "text-part":
        items[4]["content"].append({"type": "input_text", "text": PROMPT})
    elif where == "tool-arguments":
        items[2]["arguments"] = json.dumps({"env": PROMPT})
    elif where == "tool-output":
        items[3]["output"] = [{"type": "input_text", "text": PROMPT}]
    elif where == "reasoning-summary":
        items[1]["summary"][0]["text"] = PROMPT
    return body


@pytest.mark.parametrize(
    "where",
    ["instructions", "string-input", "text-part", "tool-arguments", "tool-output", "reasoning-summary"],
)
async def test_every_text_part_of_a_responses_request_is_scanned(
    client: httpx.AsyncClient, fake: FakeUpstream, where: str
) -> None:
    response = await client.post("/v1/responses", json=responses_input_with(where), headers=AUTH)
    error_of(response, 403, "no_compliant_deployment")
    assert response.headers["X-Privacy-Sensitive"] == "secrets"
    assert fake.requests == []


async def test_a_responses_conversation_without_the_key_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/responses", json=responses_input_with("nowhere"), headers=AUTH)
    assert response.status_code == 200, response.text
    assert "X-Privacy-Sensitive" not in response.headers


async def test_a_responses_stream_says_it_in_response_created(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o-mini", "input": PROMPT, "stream": True}
    async with client.stream("POST", "/v1/responses", json=body, headers=AUTH) as response:
        text = (await response.aread()).decode()
    assert response.headers["X-Privacy-Decision"] == "rerouted"
    event, data = text.split("\n\n")[0].split("\n")
    assert event == "event: response.created"
    privacy = json.loads(data.removeprefix("data: "))["response"]["privacy"]
    assert (privacy["sensitive"], privacy["model"]) == (["secrets"], "llama-local")
