"""The forbidden-key walk never refuses a property path the specification defines.

Every property path of the vendored Chat Completions, Embeddings, Responses and Messages request
schemas is sent to the demo app (in front of the fake upstream), nested as the path says, inside an
otherwise valid body.
Its leaf value need not be valid (a 400 for a bad value is fine): what may never come back is
`forbidden_parameter` (the walk mistook a provider's field for a steering keyword, as it once did
with `prompt_cache_options.ttl`) or `unrecognized request argument` for a field the table accepts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.api.fields import Api, Disposition, top_level
from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.conftest import AUTH, DEMO_KEY
from tests.gateway.support import LITELLM_WARNINGS
from tests.spec.specs import property_paths

pytestmark = list(LITELLM_WARNINGS)

BASES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
    ),
    "embeddings": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello"}),
    "responses": ("/v1/responses", {"model": "gpt-4o-mini", "input": "hello"}),
    "messages": (
        "/v1/messages",
        {"model": "claude-sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]},
    ),
}
API = {"chat": Api.CHAT, "embeddings": Api.EMBEDDINGS, "responses": Api.RESPONSES, "messages": Api.MESSAGES}
HEADERS = {
    "messages": {"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"},
}


def nest(path: str, leaf: Any) -> tuple[str, Any]:
    """`a[].b.c` with `leaf` -> ("a", [{"b": {"c": leaf}}])."""
    steps: list[str] = []
    for part in path.split("."):
        name = part.removesuffix("[]")
        steps.append(name)
        steps.extend("[]" for _ in range((len(part) - len(name)) // 2))
    value = leaf
    for step in reversed(steps[1:]):
        value = [value] if step == "[]" else {step: value}
    return steps[0], value


def body_with(api: str, path: str) -> dict[str, Any]:
    body = dict(BASES[api][1])
    top, value = nest(path, "x")
    if top == "messages" and isinstance(value, list) and value and isinstance(value[0], dict):
        value = [{"role": "user", "content": "hello", **value[0]}]
    elif top in ("tools", "input", "context_management") and isinstance(value, list) and value:
        # an item with a type, so that the count and shape checks let the walk reach the leaf
        value = [{"type": "function", **value[0]}] if isinstance(value[0], dict) else value
    body[top] = value
    return body


@pytest.fixture
async def client(demo_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(demo_settings, audit=MemoryAuditSink())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test", timeout=30) as http:
            yield http


def test_nest_builds_the_path() -> None:
    assert nest("a[].b.c", 1) == ("a", [{"b": {"c": 1}}])
    assert nest("prompt_cache_options.ttl", "x") == ("prompt_cache_options", {"ttl": "x"})


@pytest.mark.parametrize("api", sorted(BASES))
async def test_no_spec_path_is_refused_as_forbidden(
    client: httpx.AsyncClient, fake: FakeUpstream, api: str
) -> None:
    paths = sorted(property_paths(api))
    assert len(paths) >= (5 if api == "embeddings" else 100)
    refused_fields = top_level(API[api], Disposition.REFUSED)
    wrong: list[tuple[str, int, str]] = []
    for path in paths:
        response = await client.post(BASES[api][0], json=body_with(api, path), headers=HEADERS.get(api, AUTH))
        assert response.status_code < 500, (path, response.text)
        if response.status_code == 400:
            error = response.json()["error"]
            unrecognized = "unrecognized request argument" in error["message"]
            if error["code"] == "forbidden_parameter" or (
                unrecognized and path.split(".")[0].removesuffix("[]") not in refused_fields
            ):
                wrong.append((path, response.status_code, error["message"]))
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("prompt_cache_options.api_base", "prompt_cache_options.api_base"),
        ("messages[].content[].ttl", "messages[].content[].ttl"),
        ("web_search_options.user_location.num_retries", "web_search_options.user_location.num_retries"),
    ],
)
async def test_a_steering_key_beside_a_spec_path_is_still_refused(
    client: httpx.AsyncClient, fake: FakeUpstream, path: str, param: str
) -> None:
    """Admitting `prompt_cache_options.ttl` admits that path only: the same names elsewhere, and
    steering names beside it, are refused as before, and nothing reaches the upstream."""
    body = body_with("chat", path)
    if path.startswith("messages"):
        body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "hi", "ttl": 60}]}]
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "forbidden_parameter"
    assert response.json()["error"]["param"] == param
    assert fake.requests == []


async def test_prompt_cache_options_ttl_is_judged_as_a_data_path_not_refused_as_forbidden(
    client: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """`prompt_cache_options.ttl` is OpenAI's field, not litellm's `ttl` keyword: the walk lets it
    through, and the policy judges it as the `extended_cache` data path (under the demo's
    `no-training-only`, OpenAI's extended-cache facts are stale, so it is refused as a feature)."""
    body = {**BASES["chat"][1], "prompt_cache_options": {"ttl": "30m"}, "safety_identifier": "user-1"}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["code"], error["privacy"]["feature"]) == ("feature_not_allowed", "extended_cache")
    assert fake.requests == []


async def test_prompt_cache_options_and_moderation_reach_the_upstream(
    client: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    body = {
        **BASES["chat"][1],
        "prompt_cache_options": {"mode": "implicit"},
        "moderation": {"model": "omni-moderation-latest"},
        "safety_identifier": "user-1",
    }
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].json
    assert sent["prompt_cache_options"] == {"mode": "implicit"}
    assert sent["moderation"] == {"model": "omni-moderation-latest"}


@pytest.mark.parametrize("model", ["claude-sonnet", "gemini-flash"])
async def test_fields_litellm_does_not_know_are_dropped_in_translation(
    client: httpx.AsyncClient, fake: FakeUpstream, model: str
) -> None:
    """`moderation` and `prompt_cache_options` are OpenAI's; litellm does not know them and would
    put them into an Anthropic or Gemini body as unknown keys (a 400 there). Translated, they are
    dropped like every field a provider lacks; spec-valid requests are answered."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "moderation": {"model": "omni-moderation-latest"},
        "prompt_cache_options": {"mode": "implicit"},
    }
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].json
    assert "moderation" not in json.dumps(sent) and "prompt_cache_options" not in json.dumps(sent)


async def test_responses_fields_the_table_accepts_reach_the_upstream(
    client: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """`moderation`, `context_management` and `prompt_cache_options` were once refused as unrecognized
    on /v1/responses, and `metadata` dropped silently: the table accepts them, so they are sent."""
    extra = {
        "moderation": {"model": "omni-moderation-latest"},
        "context_management": [{"type": "compaction", "compact_threshold": 2000}],
        "prompt_cache_options": {"mode": "implicit"},
        "metadata": {"ticket": "t-1"},
    }
    response = await client.post("/v1/responses", json={**BASES["responses"][1], **extra}, headers=AUTH)
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].json
    assert {key: sent.get(key) for key in extra} == extra


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("background", True, "background responses are not supported"),
        ("conversation", "conv_1", "conversation is not supported"),
    ],
)
async def test_responses_refusals_are_the_tables(
    client: httpx.AsyncClient, fake: FakeUpstream, field: str, value: Any, says: str
) -> None:
    """The two fields the Responses table refuses are refused with their reason, not as unknown."""
    assert field in top_level(Api.RESPONSES, Disposition.REFUSED)
    body = {**BASES["responses"][1], field: value}
    response = await client.post("/v1/responses", json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(says)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("extra", "input_value"),
    [
        ({"conversation": None, "background": None}, "hello"),  # `null` is the specification's "none"
        ({}, [{"id": "msg_1"}, {"role": "user", "content": "hello"}]),  # an item reference without type
    ],
)
async def test_spec_valid_responses_the_property_run_found_refused_are_answered(
    client: httpx.AsyncClient, fake: FakeUpstream, extra: dict[str, Any], input_value: Any
) -> None:
    body = {**BASES["responses"][1], **extra, "input": input_value}
    response = await client.post("/v1/responses", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].json
    assert sent["input"] == input_value and "conversation" not in sent


async def test_a_system_turn_in_messages_is_accepted(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    """The anthropic SDK's `MessageParam.role` includes `system` (tests/spec/anthropic.json)."""
    turns = [{"role": "user", "content": "hello"}, {"role": "system", "content": "be brief"}]
    body = {**BASES["messages"][1], "messages": turns}
    response = await client.post("/v1/messages", json=body, headers=HEADERS["messages"])
    assert response.status_code == 200, response.text
    assert fake.requests[-1].json["messages"] == turns


@pytest.mark.parametrize(
    ("api", "field", "says"),
    [
        ("messages", "max_tokens", "max_tokens must be between 1 and 10000000"),
        ("responses", "max_output_tokens", "max_output_tokens must be between 1 and 10000000"),
        ("chat", "max_tokens", "max_tokens must be between 1 and 10000000"),
    ],
)
async def test_bounds_are_written_as_numbers_a_client_reads(
    client: httpx.AsyncClient, fake: FakeUpstream, api: str, field: str, says: str
) -> None:
    """Not `1e+07`."""
    body = {**BASES[api][1], field: 10_000_001}
    response = await client.post(BASES[api][0], json=body, headers=HEADERS.get(api, AUTH))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == says


async def test_json_schemas_inside_responses_items_are_the_clients_own(
    client: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """A tool list inside an input item (`tool_search_output`) carries the client's JSON schemas,
    where a key may be named like a litellm keyword (`tags`); so may a function tool's
    `output_schema`. The walk once refused `input[].tools[].input_schema.tags`."""
    schema = {"type": "object", "tags": ["a"], "metadata": {"x": 1}}
    body = {
        **BASES["responses"][1],
        "input": [{"type": "tool_search_output", "tools": [{"type": "custom", "input_schema": schema}]}],
        "tools": [{"type": "function", "name": "f", "parameters": schema, "output_schema": schema}],
    }
    response = await client.post("/v1/responses", json=body, headers=AUTH)
    assert (response.json().get("error") or {}).get("code") != "forbidden_parameter", response.text
    assert response.status_code == 200, response.text
    beside = {**body, "input": [{"type": "tool_search_output", "tools": [{"type": "custom", "tags": ["a"]}]}]}
    response = await client.post("/v1/responses", json=beside, headers=AUTH)
    assert response.status_code == 400 and response.json()["error"]["code"] == "forbidden_parameter"
