"""Upstream error codes reach the client and the log only from a fixed vocabulary (issue 11 item 4).

A self-hosted upstream answering 400 with the prompt in `code` put the prompt into the client's
error message and a WARNING line. Here the canary stands in for the prompt, in every field of the
upstream's error body, on the pass-through (non-stream and stream, 4xx, 429 and 5xx) and through
litellm (Anthropic); the client's error, every log record at DEBUG and the audit records must not
carry it. A documented code still passes, so the client learns what went wrong.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import respx

from gateway.observability.audit import MemoryAuditSink
from gateway.upstream.base import UpstreamStatusError
from gateway.upstream.error_codes import KNOWN_CODES, known_code
from tests.gateway.support import (
    LITELLM_WARNINGS,
    bearer,
    build_app,
    error_of,
    key_hash,
    mocked_internet,
    serving,
)

pytestmark = list(LITELLM_WARNINGS)

CANARY = "ERRCODECANARY_c41d9e"
KEY = "sk-client-error-codes-7d1e"
LOCAL_URL = "http://127.0.0.1:8011/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: local
    deployments:
      - provider: self_hosted
        channel: self_hosted.vllm
        model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
        api_base: "http://127.0.0.1:8011/v1"
  - name: claude
    deployments:
      - {{provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5,
          api_key_env: ERROR_CODES_ANTHROPIC_KEY}}
keys:
  - {{name: error-codes, key_hash: "{key_hash(KEY)}"}}
"""


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, litellm_over_httpx: None) -> Iterator[respx.MockRouter]:
    monkeypatch.setenv("ERROR_CODES_ANTHROPIC_KEY", "sk-ant-upstream-error-codes")
    with mocked_internet(assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
async def http(upstream: respx.MockRouter, audit: MemoryAuditSink) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(build_app(CONFIG, audit=audit)) as client:
        yield client


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def ask(http: httpx.AsyncClient, model: str, *, stream: bool = False) -> object:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}
    return http.post("/v1/chat/completions", json=body, headers=bearer(KEY))


def leaks(records: list[logging.LogRecord], audit: MemoryAuditSink) -> list[str]:
    texts = [f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in records]
    texts += [repr(event) for event in audit.events]
    return [text for text in texts if CANARY in text]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("status", [400, 404, 422, 429, 500, 503])
async def test_a_pass_through_error_body_carrying_the_prompt_reaches_no_client_or_log(
    http: httpx.AsyncClient,
    upstream: respx.MockRouter,
    logs: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
    status: int,
    stream: bool,
) -> None:
    error = {"message": CANARY, "type": CANARY, "code": f"{CANARY} [[prompt]]", "param": CANARY}
    upstream.post(LOCAL_URL).mock(return_value=httpx.Response(status, json={"error": error}))
    response = await ask(http, "local", stream=stream)
    assert isinstance(response, httpx.Response)
    assert response.status_code in (400, 429, 502), response.text
    assert CANARY not in response.text and "prompt" not in response.text
    message = error_of(response, response.status_code)["message"]
    assert "code other" in message or response.status_code == 429, message  # a 429 names no code
    assert leaks(logs.records, audit) == []
    assert any("code other" in r.getMessage() for r in logs.records)  # the log line exists, sanitised


async def test_a_documented_code_still_tells_the_client_what_went_wrong(
    http: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    body = {"error": {"message": CANARY, "type": CANARY, "code": "context_length_exceeded"}}
    upstream.post(LOCAL_URL).mock(return_value=httpx.Response(400, json=body))
    error = error_of(await ask(http, "local"), 400)  # type: ignore[arg-type]
    assert "code context_length_exceeded" in error["message"] and CANARY not in str(error)

    body = {"error": {"message": CANARY, "type": "invalid_request_error", "code": CANARY}}
    upstream.post(LOCAL_URL).mock(return_value=httpx.Response(400, json=body))
    error = error_of(await ask(http, "local"), 400)  # type: ignore[arg-type]
    assert "code invalid_request_error" in error["message"] and CANARY not in str(error)


@pytest.mark.parametrize("status", [400, 429, 500, 529])
async def test_an_anthropic_error_carrying_the_prompt_reaches_no_client_or_log(
    http: httpx.AsyncClient,
    upstream: respx.MockRouter,
    logs: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
    status: int,
) -> None:
    body = {"type": "error", "error": {"type": CANARY, "message": CANARY}}
    upstream.post(ANTHROPIC_URL).mock(return_value=httpx.Response(status, json=body))
    response = await ask(http, "claude")
    assert isinstance(response, httpx.Response)
    assert response.status_code in (400, 429, 502), response.text
    assert CANARY not in response.text
    assert leaks(logs.records, audit) == []


def test_the_vocabulary_lets_only_its_own_values_through() -> None:
    assert known_code(None) is None and known_code("") is None
    for code in ("invalid_request_error", "overloaded_error", "insufficient_quota", "INVALID_ARGUMENT"):
        assert code in KNOWN_CODES and known_code(code) == code
    for value in (CANARY, "Invalid_Request_Error", "invalid_request_error ", 400, ["x"], "a" * 64):
        assert known_code(value) == "other"
    assert all(code.replace("_", "").isalpha() for code in KNOWN_CODES)
    # The quota verdict is read from the raw code; the code kept is the vocabulary's.
    quota = UpstreamStatusError(429, code=f"{CANARY}_spend_limit")
    assert quota.quota and not quota.retryable and quota.code == "other" and CANARY not in quota.message
