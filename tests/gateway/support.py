"""Helpers shared by the gateway tests: test-made configs, an app client, envelope and header checks.

Names on the wire are spelled out here as DESIGN.md writes them (not imported from
`gateway.names`), so a renamed header or code fails a test instead of silently following along.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.config import parse_config
from gateway.core.auth import hash_key
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings

# Every badge header DESIGN.md lists for a response once a decision exists (Rerouted-From only
# when rerouted).
BADGE_HEADERS = (
    "X-Privacy-Badges",
    "X-Privacy-Training",
    "X-Privacy-Retention-Days",
    "X-Privacy-Provider",
    "X-Privacy-Channel",
    "X-Privacy-Policy",
    "X-Privacy-Decision",
    "X-Privacy-Source",
    "X-Privacy-As-Of",
    "X-Request-Id",
)
TEST_HOST = "sluice.test"
REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_VALUES = frozenset({"never", "opt_in", "opt_out", "always", "unknown"})
ENVELOPE_KEYS = frozenset({"message", "type", "param", "code"})
# Fields of the OpenAI Chat Completions request Sluice may pass upstream (gateway/api/openai_protocol.py's
# allowlist, restated): anything else in an upstream body is a leak of a client field.
UPSTREAM_CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "presence_penalty",
        "response_format",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "moderation",
        "functions",
        "function_call",
        "modalities",
        "audio",
        "prediction",
        "reasoning_effort",
        "service_tier",
        "verbosity",
        "web_search_options",
        "store",
        "metadata",
    }
)


# Warnings raised inside litellm 1.110 itself. Under `filterwarnings = error` they become exceptions
# inside `acompletion`, which Sluice (rightly) reports as a failed upstream call, so tests that go
# through litellm ignore exactly these two: pydantic schemas built lazily for TypedDicts that use
# `ReadOnly`, and attribute access pydantic deprecates, both in litellm's own types.
LITELLM_WARNINGS = (
    pytest.mark.filterwarnings("ignore:.*`ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings(
        "ignore:Accessing the '[a-z_]+' attribute on the instance is deprecated:DeprecationWarning"
    ),
)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def key_hash(key: str) -> str:
    return hash_key(key)


def build_app(
    config_yaml: str,
    *,
    settings: Settings | None = None,
    audit: MemoryAuditSink | None = None,
) -> FastAPI:
    """`create_app` on a config parsed from YAML text (the production path; only the config is ours)."""
    return create_app(
        settings or Settings(),
        config=parse_config(config_yaml, origin="test-config"),
        audit=audit if audit is not None else MemoryAuditSink(),
    )


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an httpx client speaking to it over ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{TEST_HOST}", timeout=30) as http:
            yield http


@dataclass
class App:
    """An app served in process, with its fake upstream and audit sink (module-scoped fixtures)."""

    http: httpx.AsyncClient
    fake: FakeUpstream
    audit: MemoryAuditSink


@asynccontextmanager
async def demo_app(config: Path, tmp: Path) -> AsyncIterator[App]:
    """The demo config served in process against its own fake upstream, its database in `tmp`."""
    config_yaml = _text_of(config)
    audit = MemoryAuditSink()
    async with FakeUpstream() as fake:
        settings = Settings(
            config=config,
            allow_simulate=True,
            fake_upstream_url=fake.url,
            database_url=f"sqlite+aiosqlite:///{tmp / 'sluice.db'}",
            audit_spool=tmp / "audit.spool",
        )
        app = build_app(config_yaml, settings=settings, audit=audit)
        async with serving(app) as http:
            yield App(http, fake, audit)


def _text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the OpenAI error envelope with `status` (and `code`); return `body["error"]`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.status_code not in (422, 500)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert "detail" not in body, body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) >= ENVELOPE_KEYS, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["param"] is None or isinstance(error["param"], str)
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def assert_badge_headers(headers: Mapping[str, str], decision: str) -> None:
    for name in BADGE_HEADERS:
        assert headers.get(name), f"missing header {name}: {dict(headers)}"
    assert headers["X-Privacy-Decision"] == decision
    assert headers["X-Privacy-Training"] in TRAINING_VALUES
    retention = headers["X-Privacy-Retention-Days"]
    assert retention == "unknown" or retention.isdigit(), retention
    assert headers["X-Privacy-Source"].startswith("https://")
    assert headers["X-Privacy-Channel"].startswith(headers["X-Privacy-Provider"] + ".")
    assert "api-channel-only" in split_list(headers["X-Privacy-Policy"])
    if decision == "rerouted":
        assert headers.get("X-Privacy-Rerouted-From")
    else:
        assert "X-Privacy-Rerouted-From" not in headers


def split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[len("data:") :].strip() for line in text.splitlines() if line.startswith("data:")]


def sse_json(text: str) -> list[dict[str, Any]]:
    return [json.loads(e) for e in sse_events(text) if e != "[DONE]"]


def openai_completion(content: str = "Hello from upstream", model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def openai_stream(pieces: Iterable[str] = ("Hel", "lo"), model: str = "gpt-4o-mini") -> bytes:
    frames = []
    for piece in pieces:
        chunk = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
        frames.append(f"data: {json.dumps(chunk)}\n\n")
    final = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    frames.append(f"data: {json.dumps(final)}\n\n")
    frames.append("data: [DONE]\n\n")
    return "".join(frames).encode()


def anthropic_message(text: str = "Hello from Claude") -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }


def gemini_response(text: str = "Hello from Gemini") -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash",
    }


# -- real processes -----------------------------------------------------------------------------
def read_line_matching(stream: IO[str], needle: str, *, timeout: float = 60.0) -> str:
    """The first line of `stream` containing `needle`; bounded wait, fails if the process went quiet."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if not ready:
            continue
        line = stream.readline()
        if not line:  # EOF: the process exited
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no line containing {needle!r}; got: {''.join(seen)[-2000:]}")


def demo_env(tmp: Path, **settings: str) -> dict[str, str]:
    """The environment for a `sluice demo` process: this checkout importable, a database and spool of
    its own under `tmp`, no stray `SLUICE_*`/`LITELLM*` variables from the shell, plus `settings`
    (`read_timeout="2"` becomes `SLUICE_READ_TIMEOUT=2`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "LITELLM"))}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(tmp / "audit.spool"),
    }
    return env | {f"SLUICE_{name.upper()}": value for name, value in settings.items()}


def start_demo(
    port: int,
    sink: IO[str],
    *,
    env: Mapping[str, str],
    upstream: str | None = None,
    config: Path | None = None,
) -> subprocess.Popen[str]:
    """`sluice demo` on 127.0.0.1:`port` as a real process (its own fake upstream unless `upstream`;
    config/demo.yaml unless `config`)."""
    command = [sys.executable, "-m", "gateway.cli.main", "demo", "--host", "127.0.0.1", "--port", str(port)]
    if upstream is not None:
        command += ["--upstream", upstream]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=dict(env), stdout=sink, stderr=subprocess.STDOUT, text=True
    )


def wait_healthy(proc: subprocess.Popen[str], root: str, log: Path) -> None:
    """Bounded poll of /healthz; fails early if the process exits."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sluice demo exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{root}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"sluice demo never became healthy: {log.read_text()[-3000:]}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[str], *, timeout: float = 20.0) -> int:
    """SIGTERM, then wait (bounded); SIGKILL only if it did not stop. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode


# -- respx ----------------------------------------------------------------------------------------
# Upstream keys the respx tests put in the environment (the `respx_keys` fixture), and deployments
# at the providers' real hosts that read them: the config snippets every respx module shares.
RESPX_KEYS = {
    "RESPX_OPENAI_KEY": "sk-upstream-openai-A1b2",
    "RESPX_ANTHROPIC_KEY": "sk-ant-upstream-C3d4",
    "RESPX_GEMINI_KEY": "gemini-upstream-E5f6",
    "RESPX_DEEPSEEK_KEY": "sk-upstream-deepseek-G7h8",
    "RESPX_PERPLEXITY_KEY": "pplx-upstream-I9j0",
    "RESPX_AZURE_KEY": "azure-upstream-S2d4",
}
DEPLOYMENTS = {
    "openai": (
        "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: RESPX_OPENAI_KEY}"
    ),
    "openai_eu": (
        "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: RESPX_OPENAI_KEY, "
        "api_base: 'https://eu.api.openai.com/v1'}"
    ),
    "anthropic": (
        "{provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5, "
        "api_key_env: RESPX_ANTHROPIC_KEY}"
    ),
    # Compliant only with the operator's `paid_tier` attestation in the config.
    "gemini_paid": (
        "{provider: google, channel: google.gemini_api_paid, model: gemini/gemini-2.5-flash, "
        "api_key_env: RESPX_GEMINI_KEY}"
    ),
    # Not compliant under no-training-only (whether DeepSeek's API trains is unknown).
    "deepseek": (
        "{provider: deepseek, channel: deepseek.api, model: deepseek/deepseek-chat, "
        "api_key_env: RESPX_DEEPSEEK_KEY}"
    ),
    "perplexity": (
        "{provider: perplexity, channel: perplexity.api, model: perplexity/sonar, "
        "api_key_env: RESPX_PERPLEXITY_KEY}"
    ),
    "azure": (
        "{provider: microsoft, channel: microsoft.azure_openai, model: azure/gpt-4o-mini, "
        "api_base: 'https://contoso.openai.azure.com', api_version: '2024-10-21', "
        "api_key_env: RESPX_AZURE_KEY}"
    ),
}
GEMINI_PAID_ATTESTATION = (
    '{provider: google, channel: google.gemini_api_paid, fact: paid_tier, evidence: "billing account on"}'
)


@contextmanager
def mocked_internet(**kwargs: Any) -> Iterator[respx.MockRouter]:
    """respx over every httpx client, whatever its transport (Sluice's pass-through runs on its own
    FastTransport, which httpcore-level mocking would not see). The test client's own calls to the
    app (host `sluice.test`) go through the same mock and pass through; `outbound()` leaves them out.
    """
    with respx.mock(using="httpx", assert_all_called=False, **kwargs) as mock:
        mock.route(name="test-client", host=TEST_HOST).pass_through()
        yield mock


def outbound(mock: respx.MockRouter) -> list[Any]:
    """Calls that left Sluice (not the test client's own calls to the app)."""
    return [call for call in mock.calls if call.request.url.host != TEST_HOST]
