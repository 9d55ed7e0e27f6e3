"""Every litellm-owned keyword, at the top level or nested, is refused before litellm is called."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.api.openai_protocol import LITELLM_ONLY
from gateway.settings import Settings
from gateway.upstream.litellm_adapter import load_litellm
from gateway.upstream.litellm_params import LITELLM_PARAMS
from tests.conftest import AUTH, chat_body

SPOT = [
    "api_base",
    "custom_llm_provider",
    "mock_response",
    "fallbacks",
    "no-log",
    "proxy_server_request",
]


def test_the_list_covers_the_installed_litellm() -> None:
    load_litellm()  # offline first: a bare `import litellm` would fetch its cost map from GitHub
    from litellm.types.utils import all_litellm_params

    missing = sorted(set(all_litellm_params) - LITELLM_PARAMS)
    assert not missing, f"regenerate gateway/upstream/litellm_params.py; litellm now also knows {missing}"
    assert set(SPOT) <= LITELLM_ONLY


@pytest.fixture
def demo_settings(demo_settings: Settings) -> Settings:
    """`litellm.acompletion`'s path (`SLUICE_TRANSLATION=litellm`), where the spy below sees every
    keyword argument litellm gets. (The refusals are the parser's, the same on either path; the
    transformation path hands litellm no keyword of the body but its OpenAI fields, through
    `get_optional_params`: `gateway/upstream/litellm_transform.py`.)"""
    return demo_settings.model_copy(update={"translation": "litellm"})


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    litellm = load_litellm()
    calls: list[dict[str, Any]] = []
    real = litellm.acompletion

    async def recording(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", recording)
    yield calls


async def test_every_litellm_keyword_is_refused_top_level_and_nested(
    client: httpx.AsyncClient, spy: list[dict[str, Any]]
) -> None:
    names = sorted(LITELLM_ONLY)
    for name in names:
        for body in (
            chat_body("claude-sonnet", **{name: "x"}),
            chat_body("claude-sonnet", stream_options={name: "x"}, stream=True),
            {
                **chat_body("claude-sonnet"),
                "messages": [{"role": "user", "content": [{"type": "text", name: "x"}]}],
            },
        ):
            response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            assert response.status_code == 400, (name, response.text)
            assert response.json()["error"]["code"] == "forbidden_parameter", name
    assert spy == []  # not one reached litellm
    ok = await client.post(
        "/v1/chat/completions", json=chat_body("claude-sonnet", temperature=0.5), headers=AUTH
    )
    assert ok.status_code == 200
    [call] = spy
    assert set(call) & LITELLM_ONLY <= {
        "api_base",
        "api_key",
        "timeout",
        "num_retries",
        "max_retries",
        "drop_params",
        "client",
    }  # only what Sluice itself sets from config
    assert call["temperature"] == 0.5
    assert len(names) > 350


async def test_metadata_keys_are_the_clients_own(client: httpx.AsyncClient) -> None:
    body = chat_body("gpt-4o-mini", metadata={"tags": "team-a", "order": "1"})  # litellm names, but dropped
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200
