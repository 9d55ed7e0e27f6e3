"""Canaries: a prompt, a client key and an upstream credential never reach logs, audit records or errors.

Each canary is a unique string. The prompt canary rides in every request; the client key canary is
part of a valid client key (and of a wrong one); the credential canary is the upstream API key read
from the environment. Upstreams: a self-hosted OpenAI-wire deployment on the fake upstream (which,
with `leak`, echoes the key and the prompt in its error messages, as real providers do), and
Anthropic through litellm, mocked by respx. Logging runs at DEBUG with a capturing handler on the
root logger and on every logger that exists (litellm's and httpx's included), plus `caplog`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from gateway.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.testing.fake_upstream import FakeUpstream
from tests.gateway.support import (
    LITELLM_WARNINGS,
    bearer,
    build_app,
    key_hash,
    mocked_internet,
    serving,
    sse_json,
)

pytestmark = list(LITELLM_WARNINGS)

PROMPT_CANARY = "PROMPTCANARY7f3a91e2"
CLIENT_CANARY = "CLIENTCANARY2b8d44c6"
CRED_CANARY = "CREDCANARY9e1c07fa"
CLIENT_KEY = f"sk-client-{CLIENT_CANARY}-ok"
WRONG_KEY = f"sk-client-{CLIENT_CANARY}-wrong"
UPSTREAM_KEY = f"sk-upstream-{CRED_CANARY}"
CANARIES = (PROMPT_CANARY, CLIENT_CANARY, CRED_CANARY)
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"


def config(fake_url: str) -> str:
    return f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: local
    deployments:
      - provider: self_hosted
        channel: self_hosted.vllm
        model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
        api_base: "{fake_url}/v1"
        api_key_env: CANARY_UPSTREAM_KEY
  - name: claude
    deployments:
      - {{provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5,
          api_key_env: CANARY_UPSTREAM_KEY}}
  - name: trainer
    deployments:
      - {{provider: deepseek, channel: deepseek.api, model: deepseek/deepseek-chat,
          api_key_env: CANARY_UPSTREAM_KEY}}
keys:
  - {{name: canary-team, key_hash: "{key_hash(CLIENT_KEY)}"}}
"""


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []
        self.formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        parts = [self.format(record), repr(record.args), str(record.msg)]
        parts += [repr(v) for k, v in vars(record).items() if k not in ("args", "msg")]
        self.texts.append("\n".join(parts))


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Everything]:
    """Root at DEBUG with a capturing handler on it and on every logger that exists when requests run."""
    caplog.set_level(logging.DEBUG)
    handler = Everything()
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def attach_everywhere(handler: Everything) -> list[logging.Logger]:
    """Also catch loggers that do not propagate (litellm's); their levels stay as Sluice set them."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for name in ("httpx", "httpcore", "litellm", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        loggers.append(logging.getLogger(name))
    for logger in loggers:
        logger.addHandler(handler)
    return loggers


@pytest.fixture
def upstream(litellm_over_httpx: None) -> Iterator[respx.MockRouter]:
    with mocked_internet() as mock:
        mock.route(name="loopback", host="127.0.0.1").pass_through()
        yield mock


@pytest.fixture
async def http(
    fake: FakeUpstream,
    upstream: respx.MockRouter,
    logs: Everything,
    monkeypatch: pytest.MonkeyPatch,
    audit: MemoryAuditSink,
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("CANARY_UPSTREAM_KEY", UPSTREAM_KEY)
    app = build_app(config(fake.url), settings=Settings(read_timeout=10.0), audit=audit)
    loggers = attach_everywhere(logs)
    try:
        async with serving(app) as client:
            yield client
    finally:
        for logger in loggers:
            logger.removeHandler(logs)


def prompt(marker: str = "") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"My secret is {PROMPT_CANARY}. {marker}".strip()}]


def leaky_anthropic(status: int) -> httpx.Response:
    message = f"Incorrect API key provided: {UPSTREAM_KEY}. Prompt was: My secret is {PROMPT_CANARY}"
    kind = {400: "invalid_request_error", 401: "authentication_error"}.get(status, "api_error")
    return httpx.Response(status, json={"type": "error", "error": {"type": kind, "message": message}})


def assert_clean(
    logs: Everything, caplog: pytest.LogCaptureFixture, audit: MemoryAuditSink, *texts: str
) -> None:
    assert logs.texts, "the capturing handler saw nothing: the test is not observing logs"
    everything = "\n".join([*logs.texts, caplog.text, *(str(e.as_dict()) for e in audit.events), *texts])
    for canary in CANARIES:
        assert canary not in everything, canary


def error_text(response: httpx.Response) -> str:
    """What a client is told about a failure: the whole body of an error, or a stream's error events."""
    if response.status_code != 200:
        return response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        return "\n".join(str(c) for c in sse_json(response.text) if "error" in c)
    return ""


CASES: list[tuple[str, dict[str, Any], dict[str, str], int]] = [
    ("local-ok", {"model": "local", "messages": prompt()}, {}, 200),
    ("local-stream-ok", {"model": "local", "messages": prompt(), "stream": True}, {}, 200),
    ("local-500-leak", {"model": "local", "messages": prompt("[[fake:status=500,leak]]")}, {}, 502),
    ("local-400-leak", {"model": "local", "messages": prompt("[[fake:status=400,leak]]")}, {}, 400),
    ("local-401-leak", {"model": "local", "messages": prompt("[[fake:status=401,leak]]")}, {}, 502),
    (
        "local-stream-503-leak",
        {"model": "local", "messages": prompt("[[fake:status=503,leak]]"), "stream": True},
        {},
        502,
    ),
    ("local-error200-leak", {"model": "local", "messages": prompt("[[fake:error200,leak]]")}, {}, 502),
    (
        "local-reset-mid-stream",
        {"model": "local", "messages": prompt("[[fake:reset_after=3]]"), "stream": True},
        {},
        200,
    ),
    ("local-reset", {"model": "local", "messages": prompt("[[fake:reset]]")}, {}, 502),
    ("invalid-field", {"model": "local", "messages": prompt(), "frobnicate": 1}, {}, 400),
    ("invalid-number", {"model": "local", "messages": prompt(), "temperature": 9}, {}, 400),
    (
        "forbidden-param",
        {"model": "local", "messages": prompt(), "api_base": f"http://{PROMPT_CANARY}.example"},
        {},
        400,
    ),
    ("request-debug", {"model": "local", "messages": prompt(), "litellm_request_debug": True}, {}, 400),
    ("unknown-model", {"model": "no-such-model", "messages": prompt()}, {}, 404),
    ("unknown-policy", {"model": "local", "messages": prompt()}, {"X-Privacy-Policy": "no-such-policy"}, 400),
    ("blocked", {"model": "trainer", "messages": prompt()}, {}, 403),
    ("wrong-key", {"model": "local", "messages": prompt()}, {"authorization": f"Bearer {WRONG_KEY}"}, 401),
    (
        "two-keys",
        {"model": "local", "messages": prompt()},
        {"api-key": WRONG_KEY},
        401,
    ),
]


@pytest.mark.parametrize(("body", "headers", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_canaries_stay_out_of_logs_and_errors(
    http: httpx.AsyncClient,
    fake: FakeUpstream,
    logs: Everything,
    caplog: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
) -> None:
    response = await http.post("/v1/chat/completions", json=body, headers={**bearer(CLIENT_KEY), **headers})
    assert response.status_code == status, response.text
    assert_clean(logs, caplog, audit, error_text(response), str(response.headers))
    for record in fake.requests:  # the upstream did get the real credential (the canary is real)
        assert record.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


@pytest.mark.parametrize("status", [400, 401, 500, 503])
@pytest.mark.parametrize("stream", [False, True])
async def test_canaries_through_litellm_errors(
    http: httpx.AsyncClient,
    upstream: respx.MockRouter,
    logs: Everything,
    caplog: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
    status: int,
    stream: bool,
) -> None:
    route = upstream.post(ANTHROPIC_URL).mock(return_value=leaky_anthropic(status))
    body = {"model": "claude", "messages": prompt(), "stream": stream}
    response = await http.post("/v1/chat/completions", json=body, headers=bearer(CLIENT_KEY))
    assert response.status_code >= 400, response.text
    assert route.call_count >= 1
    assert route.calls.last.request.headers["x-api-key"] == UPSTREAM_KEY
    assert_clean(logs, caplog, audit, response.text, str(response.headers))


async def test_canaries_through_litellm_success(
    http: httpx.AsyncClient,
    upstream: respx.MockRouter,
    logs: Everything,
    caplog: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
) -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Noted."}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    upstream.post(ANTHROPIC_URL).mock(return_value=httpx.Response(200, json=message))
    response = await http.post(
        "/v1/chat/completions", json={"model": "claude", "messages": prompt()}, headers=bearer(CLIENT_KEY)
    )
    assert response.status_code == 200, response.text
    assert_clean(logs, caplog, audit, str(response.headers))


async def test_canary_in_a_malformed_body(
    http: httpx.AsyncClient, logs: Everything, caplog: pytest.LogCaptureFixture, audit: MemoryAuditSink
) -> None:
    raw = f'{{"model": "local", "messages": [{{"role": "user", "content": "{PROMPT_CANARY}'.encode()
    response = await http.post(
        "/v1/chat/completions",
        content=raw,
        headers={**bearer(CLIENT_KEY), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert_clean(logs, caplog, audit, response.text)


async def test_upstream_error_event_mid_stream_is_not_relayed(
    http: httpx.AsyncClient,
    fake: FakeUpstream,
    upstream: respx.MockRouter,
    logs: Everything,
    caplog: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
) -> None:
    """An OpenAI-wire upstream that fails mid-stream with an in-band error event echoing key and prompt."""
    echo = f"Incorrect API key provided: {UPSTREAM_KEY}. Prompt was: {PROMPT_CANARY}"
    frames = [
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}',
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}',
        'data: {"error":{"message":"' + echo + '","type":"server_error","param":null,"code":null}}',
    ]
    raw = ("\n\n".join(frames) + "\n\n").encode()
    loopback = upstream.routes["loopback"]
    loopback.pass_through(False)
    loopback.mock(
        return_value=httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)
    )
    body = {"model": "local", "messages": prompt(), "stream": True}
    response = await http.post("/v1/chat/completions", json=body, headers=bearer(CLIENT_KEY))
    assert response.status_code == 200
    chunks = sse_json(response.text)
    assert "error" in chunks[-1]
    assert response.text.rstrip().endswith("data: [DONE]")
    assert_clean(logs, caplog, audit, response.text)


async def test_the_fake_really_leaks(fake: FakeUpstream) -> None:
    """Precondition of the cases above: with `leak`, the fake's error echoes the key and the prompt."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{fake.url}/v1/chat/completions",
            json={"model": "m", "messages": prompt("[[fake:status=500,leak]]")},
            headers={"authorization": f"Bearer {UPSTREAM_KEY}"},
        )
    assert response.status_code == 500
    assert PROMPT_CANARY in response.text and CRED_CANARY in response.text
