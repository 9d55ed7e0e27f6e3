"""The client-facing endpoints of DESIGN.md on the demo config: models, health, privacy JSON, badges.

The `client` fixture runs the demo app in front of the fake upstream, so what the provider received
is checked through `fake.requests`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.settings import Settings
from tests.conftest import AUTH, DEMO_CONFIG, DEMO_KEY, LEGAL_KEY, chat_body, shared_design
from tests.gateway.support import (
    BADGE_HEADERS,
    LITELLM_WARNINGS,
    assert_badge_headers,
    bearer,
    build_app,
    error_of,
    key_hash,
    serving,
    split_list,
    sse_events,
    sse_json,
)

pytestmark = list(LITELLM_WARNINGS)

DEMO_MODELS = {
    "gpt-4o-mini",
    "claude-sonnet",
    "gemini-flash",
    "gemini-flash-free",
    "deepseek-chat",
    "llama-local",
    "text-embedding-3-small",
}
COMPLIANT_UNDER_DEFAULT = {
    "gpt-4o-mini",
    "claude-sonnet",
    "gemini-flash",
    "llama-local",
    "text-embedding-3-small",
}
BUILTIN_POLICIES = {
    "api-channel-only",
    "no-training-only",
    "zero-retention",
    "no-human-review",
    "self-hosted-only",
    "eu-residency",
}
BADGE_FIELDS = {"id", "label", "level", "description", "source"}
SLASHED = "meta-llama/Llama-3.1-8B-Instruct"
SLASHED_KEY = "sk-client-slashed-8Uv3"
PNG_1PX = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def assert_badge_object(badge: dict[str, Any]) -> None:
    assert set(badge) == BADGE_FIELDS, badge
    assert badge["id"] and badge["label"] and badge["description"]
    assert badge["level"] in ("good", "caution", "bad")
    assert badge["source"] is None or isinstance(badge["source"], str)


def assert_privacy_object(privacy: dict[str, Any], headers: httpx.Headers) -> None:
    """The body's `privacy` object carries the same facts as the headers, plus full badge objects."""
    for badge in privacy["badges"]:
        assert_badge_object(badge)
    assert [b["id"] for b in privacy["badges"]] == split_list(headers["X-Privacy-Badges"])
    assert privacy["provider"] == headers["X-Privacy-Provider"]
    assert privacy["channel"] == headers["X-Privacy-Channel"]
    assert privacy["training"] == headers["X-Privacy-Training"]
    assert privacy["retention_days"] == headers["X-Privacy-Retention-Days"]
    assert privacy["decision"] == headers["X-Privacy-Decision"]
    assert privacy["request_id"] == headers["X-Request-Id"]
    assert privacy["policy"] == split_list(headers["X-Privacy-Policy"])
    assert privacy["source"] == headers["X-Privacy-Source"]
    assert privacy["as_of"] == headers["X-Privacy-As-Of"]


# -- /v1/models -----------------------------------------------------------------------------------
async def test_models_list_with_privacy_extension(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == DEMO_MODELS
    for model_id, model in by_id.items():
        assert model["object"] == "model"
        privacy = model["privacy"]
        assert privacy["policy"] == ["api-channel-only", "no-training-only"]
        assert privacy["complies"] is (model_id in COMPLIANT_UNDER_DEFAULT), model_id
        assert privacy["deployments"]
        for dep in privacy["deployments"]:
            assert dep["badges"], dep
            for badge in dep["badges"]:
                assert_badge_object(badge)
            assert isinstance(dep["complies"], bool)
            assert dep["complies"] or dep["reasons"]
            assert dep["simulated"] is True
    free = by_id["gemini-flash-free"]["privacy"]["deployments"][0]
    assert free["channel"] == "google.gemini_api_free"
    assert "trains-on-data" in [b["id"] for b in free["badges"]]


async def test_models_reflect_the_callers_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", headers=bearer(LEGAL_KEY))
    assert response.status_code == 200
    by_id = {m["id"]: m for m in response.json()["data"]}
    assert by_id["llama-local"]["privacy"]["complies"] is True
    assert by_id["gpt-4o-mini"]["privacy"]["complies"] is False
    assert "zero-retention" in by_id["gpt-4o-mini"]["privacy"]["policy"]


async def test_model_by_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models/claude-sonnet", headers=AUTH)
    assert response.status_code == 200, response.text
    model = response.json()
    assert model["id"] == "claude-sonnet"
    [dep] = model["privacy"]["deployments"]
    assert (dep["provider"], dep["channel"], dep["complies"]) == ("anthropic", "anthropic.api", True)


async def test_unknown_model_by_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models/no-such-model", headers=AUTH)
    error_of(response, 404, "model_not_found")


@pytest.fixture
async def slashed(demo_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The demo plus a model whose id contains `/`, and a key limited to it."""
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    config["models"].append(
        {
            "name": SLASHED,
            "deployments": [
                {
                    "provider": "self_hosted",
                    "channel": "self_hosted.vllm",
                    "model": f"hosted_vllm/{SLASHED}",
                    "api_base": "http://127.0.0.1:8000/v1",
                    "simulate": True,
                }
            ],
        }
    )
    config["keys"].append({"name": "slashed", "key_hash": key_hash(SLASHED_KEY), "models": [SLASHED]})
    async with serving(build_app(yaml.safe_dump(config), settings=demo_settings)) as http:
        yield http


async def test_model_id_containing_slash(slashed: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await slashed.get(f"/v1/models/{SLASHED}", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == SLASHED
    chat = await slashed.post("/v1/chat/completions", json=chat_body(SLASHED), headers=bearer(SLASHED_KEY))
    assert chat.status_code == 200, chat.text
    assert fake.requests[-1].json["model"] == SLASHED


async def test_models_only_those_the_key_may_use(slashed: httpx.AsyncClient) -> None:
    listed = await slashed.get("/v1/models", headers=bearer(SLASHED_KEY))
    assert [m["id"] for m in listed.json()["data"]] == [SLASHED]
    hidden = await slashed.get("/v1/models/gpt-4o-mini", headers=bearer(SLASHED_KEY))
    error_of(hidden, 404, "model_not_found")


# -- health and public JSON -----------------------------------------------------------------------
async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["catalog"]["channels"] == 45
    assert body["config"]["models"] == len(DEMO_MODELS)
    text = response.text
    for secret in (DEMO_KEY, fake.url, "sk-simulated", "gpt-4o-mini"):
        assert secret not in text


async def test_privacy_catalog(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/privacy/catalog")
    assert response.status_code == 200
    channels = response.json()["channels"]
    assert len(channels) == 45
    ids = {c["id"] for c in channels}
    assert {
        "openai.chatgpt",
        "openai.api",
        "anthropic.api",
        "google.gemini_api_free",
        "self_hosted.vllm",
    } <= ids
    kinds = {c["kind"] for c in channels}
    assert kinds == {"consumer", "api", "self_hosted"}
    for channel in channels:
        assert channel["sources"], channel["id"]
        for badge in channel["badges"]:
            assert_badge_object(badge)
    only_openai = await client.get("/v1/privacy/catalog", params={"provider": "openai"})
    assert {c["provider"] for c in only_openai.json()["channels"]} == {"openai"}


async def test_privacy_policies(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/privacy/policies")
    assert response.status_code == 200
    body = response.json()
    assert {p["name"] for p in body["data"]} >= BUILTIN_POLICIES
    assert body["default"] == ["no-training-only"]


# -- badges on every kind of response -------------------------------------------------------------
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet", "gemini-flash", "llama-local"])
async def test_badges_and_privacy_object_on_success(
    client: httpx.AsyncClient, fake: FakeUpstream, model: str
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(model), headers=AUTH)
    assert response.status_code == 200, response.text
    assert_badge_headers(response.headers, "allowed")
    assert response.headers["X-Privacy-Simulated"] == "true"
    body = response.json()
    assert body["choices"][0]["message"]["content"]
    assert_privacy_object(body["privacy"], response.headers)
    assert body["privacy"]["model"] == model
    assert body["privacy"]["simulated"] is True
    assert len(fake.requests) == 1


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet", "gemini-flash"])
async def test_badges_before_the_first_stream_byte(client: httpx.AsyncClient, model: str) -> None:
    async with client.stream(
        "POST", "/v1/chat/completions", json=chat_body(model, stream=True), headers=AUTH
    ) as response:
        # Headers are complete before any of the body is read.
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert_badge_headers(response.headers, "allowed")
        assert response.headers["X-Privacy-Simulated"] == "true"
        headers = response.headers
        text = (await response.aread()).decode()
    chunks = sse_json(text)
    assert_privacy_object(chunks[0]["privacy"], headers)
    assert all("privacy" not in c for c in chunks[1:])
    assert sse_events(text)[-1] == "[DONE]"


async def test_badges_on_a_block(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body("gemini-flash-free"), headers=AUTH)
    error = error_of(response, 403, "no_compliant_deployment")
    assert_badge_headers(response.headers, "blocked")
    assert response.headers["X-Privacy-Simulated"] == "true"
    assert response.headers["X-Privacy-Channel"] == "google.gemini_api_free"
    assert error["privacy"]["considered"][0]["channel"] == "google.gemini_api_free"
    assert fake.requests == []


async def test_badges_on_a_streamed_block(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body("gemini-flash-free", stream=True), headers=AUTH
    )
    error_of(response, 403, "no_compliant_deployment")
    assert_badge_headers(response.headers, "blocked")
    assert fake.requests == []


async def test_reroute_in_the_demo(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body("deepseek-chat"), headers=AUTH)
    assert response.status_code == 200, response.text
    assert_badge_headers(response.headers, "rerouted")
    assert response.headers["X-Privacy-Rerouted-From"] == "deepseek-chat"
    assert response.headers["X-Privacy-Channel"] == "self_hosted.vllm"
    assert response.json()["privacy"]["rerouted_from"] == "deepseek-chat"
    [record] = fake.requests
    assert record.json["model"] == SLASHED


# -- pass-through of tools, JSON mode, images -----------------------------------------------------
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
async def test_tools_pass_through(client: httpx.AsyncClient, fake: FakeUpstream, model: str) -> None:
    body = chat_body(model, content="Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="auto")
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    [record] = fake.requests
    if model == "gpt-4o-mini":
        assert record.json["tools"] == [WEATHER_TOOL]
        assert record.json["tool_choice"] == "auto"
    else:  # litellm translated it to Anthropic's tool shape
        [tool] = record.json["tools"]
        assert tool["name"] == "get_weather"
        assert tool["input_schema"]["properties"] == {"city": {"type": "string"}}


async def test_tool_result_round_trip_passes_through(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    body = {"model": "gpt-4o-mini", "messages": messages, "tools": [WEATHER_TOOL]}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert fake.requests[0].json["messages"] == messages


async def test_json_mode_passes_through(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    body = chat_body(content="Reply in JSON", response_format={"type": "json_object"})
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    json.loads(response.json()["choices"][0]["message"]["content"])
    assert fake.requests[0].json["response_format"] == {"type": "json_object"}


async def test_json_schema_passes_through(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "api_key": {"type": "string"}},
        "required": ["city"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}
    response = await client.post(
        "/v1/chat/completions", json=chat_body(response_format=response_format), headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert fake.requests[0].json["response_format"] == response_format


async def test_image_content_part_passes_through(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}", "detail": "low"}},
    ]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert fake.requests[0].json["messages"] == [{"role": "user", "content": content}]


async def test_image_content_part_through_litellm(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}},
    ]
    body = {"model": "claude-sonnet", "messages": [{"role": "user", "content": content}]}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    sent = fake.requests[0].json["messages"][0]["content"]
    images = [part for part in sent if part["type"] == "image"]
    assert images and images[0]["source"]["data"] == PNG_1PX


# -- embeddings -----------------------------------------------------------------------------------
async def test_embeddings_with_badges(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    body = {"model": "text-embedding-3-small", "input": ["hello", "world"]}
    response = await client.post("/v1/embeddings", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert_badge_headers(response.headers, "allowed")
    payload = response.json()
    assert len(payload["data"]) == 2
    assert all(isinstance(x, float) for x in payload["data"][0]["embedding"])
    assert_privacy_object(payload["privacy"], response.headers)
    [record] = fake.requests
    assert record.path.endswith("/embeddings")
    assert record.json == {"input": ["hello", "world"], "model": "text-embedding-3-small"}


# -- the legal key --------------------------------------------------------------------------------
async def test_legal_key_blocked_on_gpt_4o_mini(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body("gpt-4o-mini"), headers=bearer(LEGAL_KEY)
    )
    error = error_of(response, 403, "no_compliant_deployment")
    assert "zero-retention" in error["privacy"]["policy"]
    assert "zero-retention" in split_list(response.headers["X-Privacy-Policy"])
    assert response.headers["X-Privacy-Decision"] == "blocked"
    assert fake.requests == []


async def test_legal_key_allowed_on_llama_local(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body("llama-local"), headers=bearer(LEGAL_KEY)
    )
    assert response.status_code == 200, response.text
    assert_badge_headers(response.headers, "allowed")
    assert "zero-retention" in split_list(response.headers["X-Privacy-Policy"])
    assert response.headers["X-Privacy-Retention-Days"] == "0"
    assert len(fake.requests) == 1


def test_badge_header_names_match_design() -> None:
    """The header names these tests check are the ones DESIGN.md lists (a rename breaks the contract)."""
    text = shared_design().read_text(encoding="utf-8")
    for name in (*BADGE_HEADERS, "X-Privacy-Rerouted-From"):
        for part in name.split(" / "):
            assert f"`{part}`" in text, part
