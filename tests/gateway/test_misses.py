"""Helpful misses (gateway/core/misses.py): a 404 names the endpoints Sluice serves and the one probably
meant; an unknown model names the closest aliases, only among those the caller's key may use."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.core.misses import closest_models, endpoint_hint
from tests.conftest import chat_body
from tests.gateway.support import bearer, build_app, error_of, key_hash, serving

OPEN_KEY = "sk-client-misses-open-1Aa"
NARROW_KEY = "sk-client-misses-narrow-2Bb"
DEPLOYMENT = "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: MISSES_KEY}"
CONFIG = f"""
models:
  - name: gpt-4o-mini
    deployments: [{DEPLOYMENT}]
  - name: gpt-4o-mini-eu
    deployments: [{DEPLOYMENT}]
  - name: claude-sonnet
    deployments: [{DEPLOYMENT}]
keys:
  - {{name: open, key_hash: "{key_hash(OPEN_KEY)}"}}
  - {{name: narrow, key_hash: "{key_hash(NARROW_KEY)}", models: [claude-sonnet]}}
"""
SERVED = (
    "Sluice serves: POST /v1/chat/completions, POST /v1/embeddings, POST /v1/responses, "
    "POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models, "
    "GET /v1/models/{model_id}, GET /v1/privacy/catalog, GET /v1/privacy/policies, GET /healthz, GET /readyz"
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with serving(build_app(CONFIG)) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "meant"),
    [
        (
            "POST",
            "/v1/completions",
            "did you mean POST /v1/chat/completions? (Sluice serves the Chat Completions",
        ),
        (
            "POST",
            "/chat/completions",
            "did you mean POST /v1/chat/completions? (a client's base URL ends in /v1",
        ),
        ("GET", "/models", "did you mean GET /v1/models? (a client's base URL ends in /v1"),
        ("POST", "/v1/v1/chat/completions", "did you mean POST /v1/chat/completions?"),
        ("POST", "/v1/chat/completion", "did you mean POST /v1/chat/completions?"),
        ("GET", "/v1/engines", "did you mean GET /v1/models?"),
        ("GET", "/nothing/like/it", ""),
    ],
)
async def test_an_unknown_path_names_what_sluice_serves(
    http: httpx.AsyncClient, method: str, path: str, meant: str
) -> None:
    error = error_of(await http.request(method, path, headers=bearer(OPEN_KEY)), 404, "not_found")
    assert error["message"].startswith(f"no such endpoint; {meant}")
    assert error["message"].endswith(SERVED)
    assert "/admin" not in error["message"] and "/metrics" not in error["message"]


async def test_the_404_needs_no_key_and_echoes_nothing(http: httpx.AsyncClient) -> None:
    error = error_of(await http.get("/v1/sk-leaked-in-a-path-123"), 404, "not_found")
    assert "sk-leaked" not in error["message"]


def test_the_hint_is_bounded_for_a_huge_path() -> None:
    hint = endpoint_hint("GET", "/v1/" + "x" * 1_000_000, [("GET", "/v1/models")])
    assert hint == "Sluice serves: GET /v1/models"


async def test_an_unknown_model_suggests_the_closest_aliases(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await http.post("/v1/chat/completions", json=chat_body("gpt4o-mini"), headers=bearer(OPEN_KEY))
    error = error_of(response, 404, "model_not_found")
    assert "did you mean 'gpt-4o-mini' or 'gpt-4o-mini-eu'?" in error["message"]
    assert error["message"].endswith("GET /v1/models lists the models this key may use")
    response = await http.get("/v1/models/claude", headers=bearer(OPEN_KEY))
    assert "did you mean 'claude-sonnet'?" in error_of(response, 404, "model_not_found")["message"]


async def test_suggestions_never_name_a_model_the_key_may_not_use(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions", json=chat_body("gpt4o-mini"), headers=bearer(NARROW_KEY)
    )
    error = error_of(response, 403, "model_not_allowed")
    assert "did you mean" not in error["message"] and "gpt-4o-mini'" not in error["message"]
    response = await http.post(
        "/v1/chat/completions", json=chat_body("claude-sonet"), headers=bearer(NARROW_KEY)
    )
    assert "did you mean 'claude-sonnet'?" in error_of(response, 403, "model_not_allowed")["message"]
    response = await http.get("/v1/models/gpt-4o-mini", headers=bearer(NARROW_KEY))
    error = error_of(response, 404, "model_not_found")
    assert "did you mean" not in error["message"]


def test_closest_models() -> None:
    aliases = ["gpt-4o-mini", "claude-sonnet", "llama-local"]
    assert closest_models("claude", aliases) == "; did you mean 'claude-sonnet'?"  # a prefix
    assert closest_models("llama_local", aliases) == "; did you mean 'llama-local'?"
    assert closest_models("mistral-large", aliases) == ""
    assert closest_models("gpt-4o-mini-2024-07-18", aliases) == "; did you mean 'gpt-4o-mini'?"
    assert closest_models("x" * 1_000_000, aliases) == ""  # bounded: only the first 128 characters
