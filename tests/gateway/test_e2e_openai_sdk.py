"""End to end: the official `openai` SDK against a real `sluice demo` process.

The process (`python -m gateway.cli.main demo --port N`) starts its own fake upstream in a thread,
so nothing leaves 127.0.0.1. Models: gpt-4o-mini (OpenAI wire, pass-through), claude-sonnet
(Anthropic via litellm), gemini-flash (Gemini via litellm), gemini-flash-free (blocked),
deepseek-chat (rerouted to llama-local).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.conftest import DEMO_KEY, LEGAL_KEY
from tests.gateway.support import free_port, split_list, start_demo, stop_process, wait_healthy

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT_MODELS = {
    "gpt-4o-mini": ("gpt-4o-mini", "openai.api"),
    "claude-sonnet": ("claude-sonnet-4-5", "anthropic.api"),
    "gemini-flash": ("gemini-2.5-flash", "google.gemini_api_paid"),
}
USER: list[Any] = [{"role": "user", "content": "Hello there"}]


class Demo:
    def __init__(self, proc: subprocess.Popen[str], base_url: str, log: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log = log
        self.clients: list[OpenAI] = []

    def client(self, key: str = DEMO_KEY) -> OpenAI:
        client = OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=60)
        self.clients.append(client)  # closed at teardown: an unclosed socket is a ResourceWarning
        return client

    def async_client(self, key: str = DEMO_KEY) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("sluice-demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "LITELLM"))}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(tmp / "audit.spool"),
    }
    log = tmp / "demo.log"
    with log.open("w") as sink:
        proc = start_demo(port, sink, env=env)
    root = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, root, log)
        assert f"{root}/v1" in log.read_text(), "the demo prints its URL on stderr"
        demo = Demo(proc, f"{root}/v1", log)
        yield demo
        for client in demo.clients:
            client.close()
    finally:
        code = stop_process(proc)
    # uvicorn re-raises SIGTERM after its graceful shutdown, so -SIGTERM is a clean exit too.
    assert code in (0, -signal.SIGTERM), f"sluice demo exited with {code}: {log.read_text()[-3000:]}"
    assert "Application shutdown complete" in log.read_text()


# -- sync -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(CHAT_MODELS))
def test_non_stream(demo: Demo, model: str) -> None:
    served, channel = CHAT_MODELS[model]
    completion = demo.client().chat.completions.create(model=model, messages=USER)
    assert completion.choices[0].message.content == f"Simulated reply from {served}."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    privacy = (completion.model_extra or {})["privacy"]
    assert privacy["channel"] == channel
    assert privacy["decision"] == "allowed"
    assert {"id", "label", "level", "description", "source"} <= set(privacy["badges"][0])


@pytest.mark.parametrize("model", list(CHAT_MODELS))
def test_stream(demo: Demo, model: str) -> None:
    served, channel = CHAT_MODELS[model]
    stream = demo.client().chat.completions.create(model=model, messages=USER, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Simulated reply from {served}."
    assert (chunks[0].model_extra or {})["privacy"]["channel"] == channel
    assert all("privacy" not in (c.model_extra or {}) for c in chunks[1:])
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]


@pytest.mark.parametrize("model", list(CHAT_MODELS))
def test_raw_response_headers(demo: Demo, model: str) -> None:
    _, channel = CHAT_MODELS[model]
    raw = demo.client().chat.completions.with_raw_response.create(model=model, messages=USER)
    assert raw.status_code == 200
    headers = raw.headers
    assert split_list(headers["x-privacy-badges"])[0] in ("api-channel", "self-hosted")
    assert headers["x-privacy-decision"] == "allowed"
    assert headers["x-privacy-channel"] == channel
    assert headers["x-privacy-simulated"] == "true"
    assert len(headers["x-request-id"]) >= 16
    completion = raw.parse()
    assert (completion.model_extra or {})["privacy"]["request_id"] == headers["x-request-id"]


def test_raw_response_headers_on_a_stream(demo: Demo) -> None:
    with demo.client().chat.completions.with_streaming_response.create(
        model="claude-sonnet", messages=USER, stream=True
    ) as response:
        assert response.headers["x-privacy-decision"] == "allowed"
        assert response.headers["x-privacy-channel"] == "anthropic.api"
        assert response.headers["x-request-id"]
        chunks = list(response.parse())
    assert chunks


def test_blocked_model_is_permission_denied(demo: Demo) -> None:
    with pytest.raises(openai.PermissionDeniedError) as raised:
        demo.client().chat.completions.create(model="gemini-flash-free", messages=USER)
    error = raised.value
    assert error.status_code == 403
    assert error.code == "no_compliant_deployment"
    body = error.body
    assert isinstance(body, dict)
    privacy = body["privacy"]
    assert privacy["decision"] == "blocked"
    assert privacy["considered"][0]["channel"] == "google.gemini_api_free"
    assert privacy["considered"][0]["reasons"]
    assert error.response.headers["x-privacy-decision"] == "blocked"


def test_legal_key_is_blocked_on_gpt_4o_mini(demo: Demo) -> None:
    with pytest.raises(openai.PermissionDeniedError) as raised:
        demo.client(LEGAL_KEY).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert "zero-retention" in split_list(raised.value.response.headers["x-privacy-policy"])
    allowed = demo.client(LEGAL_KEY).chat.completions.create(model="llama-local", messages=USER)
    assert allowed.choices[0].message.content


def test_rerouted_model(demo: Demo) -> None:
    raw = demo.client().chat.completions.with_raw_response.create(model="deepseek-chat", messages=USER)
    assert raw.headers["x-privacy-decision"] == "rerouted"
    assert raw.headers["x-privacy-rerouted-from"] == "deepseek-chat"
    assert raw.headers["x-privacy-channel"] == "self_hosted.vllm"
    completion = raw.parse()
    assert completion.choices[0].message.content == "Simulated reply from meta-llama/Llama-3.1-8B-Instruct."


def test_embeddings(demo: Demo) -> None:
    raw = demo.client().embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["hello", "world"]
    )
    assert raw.headers["x-privacy-decision"] == "allowed"
    assert raw.headers["x-privacy-channel"] == "openai.api"
    result = raw.parse()
    assert len(result.data) == 2
    assert len(result.data[0].embedding) > 0


def test_models_list(demo: Demo) -> None:
    ids = {m.id for m in demo.client().models.list()}
    assert {"gpt-4o-mini", "claude-sonnet", "gemini-flash", "gemini-flash-free", "deepseek-chat"} <= ids
    model = demo.client().models.retrieve("claude-sonnet")
    assert (model.model_extra or {})["privacy"]["complies"] is True


def test_wrong_key_is_authentication_error(demo: Demo) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        demo.client("sk-not-a-key-000000").chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_forbidden_parameter_is_bad_request(demo: Demo) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        demo.client().chat.completions.create(
            model="gpt-4o-mini", messages=USER, extra_body={"api_base": "http://169.254.169.254/"}
        )
    assert raised.value.code == "forbidden_parameter"


def test_mid_stream_failure_is_an_error_event(demo: Demo) -> None:
    stream = demo.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi [[fake:reset_after=3]]"}],
        stream=True,
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_failure_before_first_chunk_is_a_status(demo: Demo) -> None:
    with pytest.raises(openai.InternalServerError) as raised:
        demo.client().chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "Hi [[fake:status=503]]"}],
            stream=True,
        )
    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-privacy-channel"] == "anthropic.api"


# -- async ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(CHAT_MODELS))
async def test_async_non_stream_and_stream(demo: Demo, model: str) -> None:
    served, channel = CHAT_MODELS[model]
    async with demo.async_client() as client:
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=USER)
        assert raw.headers["x-privacy-channel"] == channel
        completion = raw.parse()
        assert completion.choices[0].message.content == f"Simulated reply from {served}."
        stream = await client.chat.completions.create(model=model, messages=USER, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces) == f"Simulated reply from {served}."


async def test_async_blocked(demo: Demo) -> None:
    async with demo.async_client() as client:
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="gemini-flash-free", messages=USER)
