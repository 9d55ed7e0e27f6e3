"""Canaries: a prompt, a client key and an upstream credential never reach logs, audit records or errors.

Each canary is a unique string. The prompt canary rides in every request; the client key canary is
part of a valid client key (and of a wrong one); the credential canary is the upstream API key read
from the environment. Upstreams: a self-hosted OpenAI-wire deployment on the fake upstream (which,
with `leak`, echoes the key and the prompt in its error messages, as real providers do), and
Anthropic through litellm, mocked by respx. Logging runs at DEBUG with a capturing handler on the
root logger and on every logger that exists (litellm's and httpx's included), plus `caplog`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.gateway.support import (
    LITELLM_WARNINGS,
    bearer,
    build_app,
    free_port,
    key_hash,
    mocked_internet,
    serving,
    sse_json,
    start_demo,
    stop_process,
    wait_healthy,
)
from tests.helpers import served, until

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


@pytest.fixture(params=["auto", "litellm"], ids=["transform", "acompletion"])
async def http(
    request: pytest.FixtureRequest,
    fake: FakeUpstream,
    upstream: respx.MockRouter,
    logs: Everything,
    monkeypatch: pytest.MonkeyPatch,
    audit: MemoryAuditSink,
) -> AsyncIterator[httpx.AsyncClient]:
    """Both translation paths (`SLUICE_TRANSLATION`): litellm's transformations on Sluice's transport,
    and `litellm.acompletion`."""
    monkeypatch.setenv("CANARY_UPSTREAM_KEY", UPSTREAM_KEY)
    settings = Settings(read_timeout=10.0, translation=request.param)
    app = build_app(config(fake.url), settings=settings, audit=audit)
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


# -- P1: timeouts and cancellations -----------------------------------------------------------------
QUICK = 0.5  # seconds: the read and stream-idle timeouts of the apps below


def padded_prompt(marker: str) -> list[dict[str, Any]]:
    """The canary first, then padding: with `echo`, the first stream chunk carries the whole canary."""
    return [{"role": "user", "content": f"{PROMPT_CANARY} {marker} " + "." * 300}]


@contextlib.asynccontextmanager
async def observed(app: FastAPI, logs: Everything) -> AsyncIterator[httpx.AsyncClient]:
    loggers = attach_everywhere(logs)
    try:
        async with serving(app) as client:
            yield client
    finally:
        for logger in loggers:
            logger.removeHandler(logs)


@pytest.fixture
async def quick(
    fake: FakeUpstream,
    upstream: respx.MockRouter,
    logs: Everything,
    monkeypatch: pytest.MonkeyPatch,
    audit: MemoryAuditSink,
) -> AsyncIterator[httpx.AsyncClient]:
    """Like `http`, with read and stream-idle timeouts of half a second."""
    monkeypatch.setenv("CANARY_UPSTREAM_KEY", UPSTREAM_KEY)
    settings = Settings(read_timeout=QUICK, stream_idle_timeout=QUICK)
    async with observed(build_app(config(fake.url), settings=settings, audit=audit), logs) as client:
        yield client


TIMEOUT_CASES: list[tuple[str, dict[str, Any], int]] = [
    ("local-read-timeout", {"model": "local", "messages": prompt("[[fake:delay_ms=5000]]")}, 504),
    (
        "local-stream-read-timeout",
        {"model": "local", "messages": prompt("[[fake:delay_ms=5000]]"), "stream": True},
        504,
    ),
    (
        "local-stream-stall",
        {"model": "local", "messages": padded_prompt("[[fake:echo,chunks=4,stall_after=2]]"), "stream": True},
        200,
    ),
    ("claude-read-timeout", {"model": "claude", "messages": prompt()}, 504),
    ("claude-stream-read-timeout", {"model": "claude", "messages": prompt(), "stream": True}, 504),
]


@pytest.mark.parametrize(
    ("body", "status"), [c[1:] for c in TIMEOUT_CASES], ids=[c[0] for c in TIMEOUT_CASES]
)
async def test_p1_upstream_timeouts_keep_canaries_out_of_logs_errors_and_ledger(
    quick: httpx.AsyncClient,
    fake: FakeUpstream,
    upstream: respx.MockRouter,
    logs: Everything,
    caplog: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
    body: dict[str, Any],
    status: int,
) -> None:
    route = upstream.post(ANTHROPIC_URL).mock(side_effect=httpx.ReadTimeout("read timed out"))
    response = await quick.post("/v1/chat/completions", json=body, headers=bearer(CLIENT_KEY))
    assert response.status_code == status, response.text
    if status == 504:
        assert response.json()["error"]["code"] == "upstream_timeout"
    else:  # a stall mid-stream ends the stream with an error event
        assert "error" in sse_json(response.text)[-1]
        assert PROMPT_CANARY in response.text  # the completion really carried the canary
    await until(lambda: len(audit.events) == 1, "the ledger entry")
    assert_clean(logs, caplog, audit, error_text(response), str(response.headers))
    if body["model"] == "claude":
        assert route.calls.last.request.headers["x-api-key"] == UPSTREAM_KEY
    else:
        await until(lambda: fake.requests[0].client_closed_at is not None, "Sluice to close the upstream")


CANCEL_CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "mid-stream",
        {
            "model": "local",
            "messages": padded_prompt("[[fake:echo,chunks=4,chunk_delay_ms=2000]]"),
            "stream": True,
        },
    ),
    (
        "stream-before-first-token",
        {"model": "local", "messages": prompt("[[fake:delay_ms=20000]]"), "stream": True},
    ),
    ("non-stream", {"model": "local", "messages": prompt("[[fake:delay_ms=20000]]")}),
]


@pytest.mark.parametrize("body", [c[1] for c in CANCEL_CASES], ids=[c[0] for c in CANCEL_CASES])
async def test_p1_client_cancellation_keeps_canaries_out_of_logs_and_ledger(
    fake: FakeUpstream,
    upstream: respx.MockRouter,
    logs: Everything,
    caplog: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
) -> None:
    monkeypatch.setenv("CANARY_UPSTREAM_KEY", UPSTREAM_KEY)
    app = build_app(config(fake.url), settings=Settings(read_timeout=30.0), audit=audit)
    loggers = attach_everywhere(logs)
    try:
        async with (
            served(app, uvicorn_logging=False) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            seen: list[str] = []

            async def call() -> None:
                async with client.stream(
                    "POST", "/v1/chat/completions", json=body, headers=bearer(CLIENT_KEY)
                ) as response:
                    async for line in response.aiter_lines():
                        seen.append(line)

            task = asyncio.ensure_future(call())
            if body.get("stream") and "echo" in str(body):  # hang up after the first content chunk
                await until(lambda: any(PROMPT_CANARY in line for line in seen), "the first chunk")
            else:
                await until(lambda: len(fake.requests) == 1, "the upstream call to start")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await until(lambda: fake.requests[0].client_closed_at is not None, "the upstream call to close")
            await until(lambda: len(audit.events) == 1, "the ledger entry")
    finally:
        for logger in loggers:
            logger.removeHandler(logs)
    [event] = audit.events
    assert event.client_cancelled is True
    assert_clean(logs, caplog, audit)


# -- P4: litellm's own debugging turned on ----------------------------------------------------------
def anthropic_reply(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }


@contextlib.contextmanager
def litellm_debugging(monkeypatch: pytest.MonkeyPatch, handler: Everything) -> Iterator[ModuleType]:
    """What an operator (or a plugin) might do: LITELLM_LOG=DEBUG, litellm's `_turn_on_debug()`, its
    loggers at DEBUG with a handler of their own. After Sluice loaded litellm (loading resets them)."""
    from gateway.upstream.litellm_adapter import LITELLM_LOGGERS, load_litellm

    monkeypatch.setenv("LITELLM_LOG", "DEBUG")
    litellm = load_litellm()
    loggers = [logging.getLogger(name) for name in LITELLM_LOGGERS]
    levels = [logger.level for logger in loggers]
    litellm._turn_on_debug()
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield litellm
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
            logger.removeHandler(handler)


async def test_p4_litellm_debug_logging_turned_on_logs_no_canary(
    request: pytest.FixtureRequest,
    http: httpx.AsyncClient,
    upstream: respx.MockRouter,
    logs: Everything,
    caplog: pytest.LogCaptureFixture,
    audit: MemoryAuditSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """litellm at DEBUG logs each request as a curl command and each raw response: prompts and
    completions. Sluice's log-record factory withholds every record of litellm's loggers."""
    route = upstream.post(ANTHROPIC_URL)
    route.mock(return_value=httpx.Response(200, json=anthropic_reply(f"You said {PROMPT_CANARY}")))
    warm = {"model": "claude", "messages": [{"role": "user", "content": "warm up"}]}
    assert (await http.post("/v1/chat/completions", json=warm, headers=bearer(CLIENT_KEY))).status_code == 200
    with litellm_debugging(monkeypatch, logs):
        ok = await http.post(
            "/v1/chat/completions", json={"model": "claude", "messages": prompt()}, headers=bearer(CLIENT_KEY)
        )
        route.mock(return_value=leaky_anthropic(500))
        failed = await http.post(
            "/v1/chat/completions", json={"model": "claude", "messages": prompt()}, headers=bearer(CLIENT_KEY)
        )
    assert ok.status_code == 200 and PROMPT_CANARY in ok.text  # the completion carried the canary
    assert failed.status_code == 502
    debug = [t for t in logs.texts if t.startswith("LiteLLM DEBUG")]
    # The transformation path runs little of litellm's debug-logging code (no call machinery); the
    # records it still makes must be there, or the test proves nothing.
    least = 10 if "acompletion" in request.node.name else 2
    assert len(debug) > least, "litellm's debug records were not observed: the test proves nothing"
    assert_clean(logs, caplog, audit, failed.text)


async def test_p4_litellm_set_verbose_prints_no_canary(
    http: httpx.AsyncClient,
    upstream: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    upstream.post(ANTHROPIC_URL).mock(return_value=httpx.Response(200, json=anthropic_reply("Noted.")))
    warm = {"model": "claude", "messages": [{"role": "user", "content": "warm up"}]}
    assert (await http.post("/v1/chat/completions", json=warm, headers=bearer(CLIENT_KEY))).status_code == 200
    with litellm_debugging(monkeypatch, Everything()) as litellm:
        monkeypatch.setattr(litellm, "set_verbose", True)
        capfd.readouterr()
        response = await http.post(
            "/v1/chat/completions", json={"model": "claude", "messages": prompt()}, headers=bearer(CLIENT_KEY)
        )
        printed = capfd.readouterr()
    assert response.status_code == 200
    assert PROMPT_CANARY not in printed.out + printed.err


# -- P1 + P4: a real process's stdout and stderr ------------------------------------------------------
DEMO_KEY = "sk-sluice-demo"
DEMO_CASES: list[tuple[dict[str, Any], str, int]] = [
    ({"model": "gpt-4o-mini", "messages": padded_prompt("[[fake:echo]]")}, DEMO_KEY, 200),
    ({"model": "claude-sonnet", "messages": padded_prompt("[[fake:echo]]")}, DEMO_KEY, 200),
    ({"model": "gemini-flash", "messages": padded_prompt("[[fake:echo]]"), "stream": True}, DEMO_KEY, 200),
    ({"model": "gpt-4o-mini", "messages": padded_prompt("[[fake:echo]]"), "stream": True}, DEMO_KEY, 200),
    ({"model": "gpt-4o-mini", "messages": prompt("[[fake:status=500,leak]]")}, DEMO_KEY, 502),
    ({"model": "claude-sonnet", "messages": prompt("[[fake:status=500,leak]]")}, DEMO_KEY, 502),
    ({"model": "gpt-4o-mini", "messages": prompt("[[fake:delay_ms=8000]]")}, DEMO_KEY, 504),
    ({"model": "gemini-flash-free", "messages": prompt()}, DEMO_KEY, 403),
    (
        {"model": "gpt-4o-mini", "messages": prompt(), "api_base": f"http://{PROMPT_CANARY}.test"},
        DEMO_KEY,
        400,
    ),
    ({"model": "gpt-4o-mini", "messages": prompt(), "temperature": 7}, DEMO_KEY, 400),
    ({"model": "gpt-4o-mini", "messages": prompt()}, WRONG_KEY, 401),
]


async def test_p1_a_demo_process_at_debug_writes_no_canary_to_stdout_or_stderr(tmp_path: Path) -> None:
    """`sluice demo` with every log at DEBUG (Sluice's, uvicorn's access log) and LITELLM_LOG=DEBUG in its
    environment: after successes, errors, a read timeout and client hang-ups, all of it carrying canaries
    (prompt, completion, client key), its whole output holds none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "LITELLM"))}
    env |= {
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(tmp_path / "audit.spool"),
        "SLUICE_LOG_LEVEL": "DEBUG",
        "SLUICE_ACCESS_LOG": "true",
        "SLUICE_READ_TIMEOUT": "3",
        "LITELLM_LOG": "DEBUG",
        "PYTHONUNBUFFERED": "1",
    }
    port, log = free_port(), tmp_path / "demo.log"
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=env, upstream=fake.url)
        try:
            root = f"http://127.0.0.1:{port}"
            wait_healthy(proc, root, log)
            async with httpx.AsyncClient(base_url=root, timeout=30) as client:

                async def send(body: dict[str, Any], key: str) -> httpx.Response:
                    return await client.post("/v1/chat/completions", json=body, headers=bearer(key))

                answers = await asyncio.gather(*(send(body, key) for body, key, _ in DEMO_CASES))
                assert [a.status_code for a in answers] == [c[2] for c in DEMO_CASES]
                assert PROMPT_CANARY in answers[0].text  # the completions carried the canary
                malformed = f'{{"model": "gpt-4o-mini", "messages": [{{"content": "{PROMPT_CANARY}'
                bad = await client.post(
                    "/v1/chat/completions",
                    content=malformed.encode(),
                    headers={**bearer(DEMO_KEY), "content-type": "application/json"},
                )
                assert bad.status_code == 400
                fake.reset()

                async def hang_up(model: str) -> None:  # leave after the first chunk
                    marker = "[[fake:echo,chunks=4,chunk_delay_ms=500]]"
                    body = {"model": model, "messages": padded_prompt(marker), "stream": True}
                    async with client.stream(
                        "POST", "/v1/chat/completions", json=body, headers=bearer(DEMO_KEY)
                    ) as response:
                        async for line in response.aiter_lines():
                            if PROMPT_CANARY in line:
                                break

                async def give_up() -> None:  # stop waiting for a slow answer
                    body = {"model": "gpt-4o-mini", "messages": prompt("[[fake:delay_ms=20000]]")}
                    with contextlib.suppress(httpx.ReadTimeout):
                        await client.post(
                            "/v1/chat/completions", json=body, headers=bearer(DEMO_KEY), timeout=0.5
                        )

                await asyncio.gather(hang_up("gpt-4o-mini"), hang_up("claude-sonnet"), give_up())
                await until(
                    lambda: (
                        len(fake.requests) == 3
                        and all(r.client_closed_at and not r.completed for r in fake.requests)
                    ),
                    "Sluice to close the abandoned upstream calls",
                )
        finally:
            stop_process(proc)
    output = log.read_text()
    assert " DEBUG " in output and "POST /v1/chat/completions" in output, output[-2000:]
    for canary in (PROMPT_CANARY, CLIENT_CANARY):
        assert canary not in output, output[output.find(canary) - 500 : output.find(canary) + 200]
