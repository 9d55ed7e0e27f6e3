"""Who may call what, and who chooses the upstream: security checklist A1, A2, A4, A5, A6, S1, Q2, I7.

Three harnesses, each where it sees the most:

- in process: the demo app (`create_app`, lifespan run) over httpx's ASGI transport, in front of
  the real fake upstream, which records every request that reached it;
- respx: real (not simulated) deployments on the OpenAI wire and through litellm (Anthropic,
  Gemini), so the exact outbound headers, URL and body can be read;
- a real `sluice demo` process (the uvicorn protocol production runs) spoken to over raw sockets,
  for what httpx refuses to send: NUL, CR/LF and raw bytes in header values, absolute-form request
  targets, unnormalised paths. Its fake upstream runs in this process, so its records are ours.

Every "refused" case also checks that nothing reached an upstream, and each group has a control
case (the same request with a good key is served), so a refusal is not an artefact of the harness.
Raw bytes the HTTP parser itself rejects (NUL, a bare CR or LF in a header) get uvicorn's plain
400; everything that reaches the app gets the OpenAI envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sluice_fakes.fake_upstream import FakeUpstream
from starlette.routing import Route

from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.server.edge import Guarded
from gateway.settings import Settings
from gateway.upstream.litellm_adapter import load_litellm
from tests.conftest import AUTH, DEMO_CONFIG, DEMO_KEY, LEGAL_KEY, chat_body
from tests.gateway.support import (
    LITELLM_WARNINGS,
    anthropic_message,
    bearer,
    build_app,
    demo_env,
    error_of,
    free_port,
    gemini_response,
    key_hash,
    mocked_internet,
    openai_completion,
    openai_stream,
    outbound,
    serving,
    start_demo,
    stop_process,
    wait_healthy,
)
from tests.storage import conftest as storage_fixtures

pytestmark = list(LITELLM_WARNINGS)

# PostgreSQL for the A2 key-store case: a throwaway database per test (skips locally without
# PostgreSQL; SLUICE_TEST_REQUIRE_SERVICES=1 turns the skip into a failure).
pg_url = storage_fixtures.pg_url

CHAT = "/v1/chat/completions"
MASTER_KEY = "sk-sluice-master-auth-routes-0123456789"
MASTER = bearer(MASTER_KEY)
SQL_SLEEP = "x' OR (SELECT pg_sleep(8))--"
RAW_TIMEOUT = 10.0  # seconds: a bound on one raw exchange ("never a hang"), not an expectation
# Seconds a client waits for a refusal: less than the pg_sleep(8) an injected query would run, so
# a query that ran fails on the client's own timeout (a bound, never a measurement).
SLEEP_PATIENCE = 4.0


def demo_with_master(demo_settings: Settings, **update: Any) -> Settings:
    return Settings.model_validate({**demo_settings.model_dump(), "master_key": MASTER_KEY, **update})


@pytest.fixture
async def http(demo_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The demo app with a master key (so `/admin` and `/metrics` are live), in front of `fake`."""
    async with serving(create_app(demo_with_master(demo_settings), audit=MemoryAuditSink())) as client:
        yield client


def no_upstream(fake: FakeUpstream) -> None:
    assert fake.requests == [], [r.path for r in fake.requests]


# =================================================================================================
# A real `sluice demo` process and a raw HTTP/1.1 client
# =================================================================================================
@dataclass
class Server:
    port: int
    fake: FakeUpstream


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("auth-routes")
    port = free_port()
    env = demo_env(tmp, master_key=MASTER_KEY)
    log = tmp / "demo.log"
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=env, upstream=fake.url)
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}", log)
            yield Server(port, fake)
        finally:
            stop_process(proc)


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes
    # Responses that followed on the same connection (a client that injected a second request).
    more: list[Raw] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


CHAT_BODY = json.dumps(chat_body()).encode()


def parse_responses(answer: bytes) -> Raw:
    """The responses in `answer`, in order (each sized by its Content-Length, else to EOF)."""
    found: list[Raw] = []
    while answer:
        top, _, rest = answer.partition(b"\r\n\r\n")
        status_line, *header_lines = top.split(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 "), answer[:300]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        size = int(headers.get("content-length", len(rest)))
        found.append(Raw(int(status_line.split()[1]), headers, rest[:size]))
        answer = rest[size:]
    assert found, "no response at all"
    first, *others = found
    first.more = others
    return first


def raw_request(
    port: int,
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    host: bytes | None = b"127.0.0.1",
    timeout: float = RAW_TIMEOUT,
) -> Raw:
    """One request on a fresh connection, bytes exactly as given; every answer, read to EOF."""
    head = [method + b" " + target + b" HTTP/1.1"]
    if host is not None:
        head.append(b"Host: " + host)
    head += [name + b": " + value for name, value in headers]
    if body or method == b"POST":
        head += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    head.append(b"Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return parse_responses(b"".join(chunks))


def assert_refused(raw: Raw, *, allowed: tuple[int, ...] = (400, 401)) -> None:
    """A refusal: one of `allowed`; a 401 is the OpenAI envelope with `invalid_api_key`."""
    for one in (raw, *raw.more):
        assert one.status in allowed, (one.status, one.body[:300])
        if one.status == 401:
            error = one.json()["error"]
            assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key"), error


def chat_with(port: int, headers: list[tuple[bytes, bytes]], *, timeout: float = RAW_TIMEOUT) -> Raw:
    return raw_request(port, b"POST", CHAT.encode(), headers, CHAT_BODY, timeout=timeout)


def models_with(port: int, headers: list[tuple[bytes, bytes]], *, timeout: float = RAW_TIMEOUT) -> Raw:
    return raw_request(port, b"GET", b"/v1/models", headers, timeout=timeout)


# =================================================================================================
# A1: empty auth values
# =================================================================================================
@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": ""},
        {"x-api-key": ""},
        {"api-key": ""},
        {"authorization": "", "x-api-key": ""},
        {"authorization": "", "api-key": DEMO_KEY},
        {"x-api-key": "", "api-key": DEMO_KEY},
    ],
    ids=["authorization", "x-api-key", "api-key", "both-empty", "empty-auth-beside-key", "empty-x-api-key"],
)
@pytest.mark.parametrize("route", ["chat", "embeddings", "models"])
async def test_a1_empty_key_header_values_are_401(
    http: httpx.AsyncClient, fake: FakeUpstream, headers: dict[str, str], route: str
) -> None:
    if route == "chat":
        response = await http.post(CHAT, json=chat_body(), headers=headers)
    elif route == "embeddings":
        body = {"model": "text-embedding-3-small", "input": "hi"}
        response = await http.post("/v1/embeddings", json=body, headers=headers)
    else:
        response = await http.get("/v1/models", headers=headers)
    error = error_of(response, 401, "invalid_api_key")
    assert error["type"] == "authentication_error"
    no_upstream(fake)


@pytest.mark.e2e
def test_a1_empty_key_header_lines_over_a_raw_socket_are_401(server: Server) -> None:
    before = len(server.fake.requests)
    for headers in (
        [(b"Authorization", b"")],
        [(b"X-Api-Key", b"")],
        [(b"Api-Key", b"")],
        [(b"Authorization", b"   ")],
        [(b"Authorization", b"Bearer"), (b"X-Api-Key", b"")],
    ):
        assert_refused(chat_with(server.port, headers), allowed=(401,))
        assert_refused(models_with(server.port, headers), allowed=(401,))
    assert len(server.fake.requests) == before


# =================================================================================================
# A2: hostile bearer values, over a real socket and against the PostgreSQL key store
# =================================================================================================
HOSTILE_VALUES = {
    "nul-after-key": DEMO_KEY.encode() + b"\x00",
    "nul-inside": b"sk-sluice\x00-demo",
    "crlf-injects-a-header": b"sk-wrong\r\nX-Api-Key: " + DEMO_KEY.encode(),
    "crlf-injects-a-second-request": b"x\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: x",
    "bare-cr": b"sk-wrong\rX-Api-Key: " + DEMO_KEY.encode(),
    "bare-lf": b"sk-wrong\nX-Api-Key: " + DEMO_KEY.encode(),
    "latin-1": b"sk-sluice-d\xe9mo",
    "utf-8": "sk-sluice-dëmo-ключ".encode(),
    "utf-8-lookalike": "sk-sluice-d\u0435mo".encode(),  # a Cyrillic e
    "invalid-utf-8": b"sk-\xff\xfe\xc3\x28",
    "pg-sleep": SQL_SLEEP.encode(),
    "sql-tautology": b"x' OR '1'='1",
    "8-kib": b"k" * 8192,
}


@pytest.mark.e2e
@pytest.mark.parametrize("value", list(HOSTILE_VALUES.values()), ids=list(HOSTILE_VALUES))
def test_a2_hostile_key_values_over_a_raw_socket_are_refused_fast(server: Server, value: bytes) -> None:
    before = len(server.fake.requests)
    for headers in (
        [(b"Authorization", b"Bearer " + value)],
        [(b"X-Api-Key", value)],
        [(b"Api-Key", value)],
    ):
        answers = (
            chat_with(server.port, headers, timeout=SLEEP_PATIENCE),
            models_with(server.port, headers, timeout=SLEEP_PATIENCE),
        )
        for raw in answers:
            assert_refused(raw)  # never 500, never 200; a hang (or a pg_sleep) fails on the socket timeout
            assert b"pg_sleep" not in raw.body and b"k" * 64 not in raw.body  # the value is not echoed
    assert len(server.fake.requests) == before


@pytest.mark.e2e
def test_a2_control_the_raw_client_authenticates_with_the_demo_key(server: Server) -> None:
    """The harness itself: the same raw request with the right key is served and reaches the upstream."""
    before = len(server.fake.requests)
    for headers in (
        [(b"Authorization", b"Bearer " + DEMO_KEY.encode())],
        [(b"X-Api-Key", DEMO_KEY.encode())],
    ):
        ok = chat_with(server.port, headers)
        assert ok.status == 200, ok.body[:300]
        assert models_with(server.port, headers).status == 200
    assert len(server.fake.requests) == before + 2


@pytest.mark.services
async def test_a2_sql_payloads_against_the_postgresql_key_store_are_401_fast(
    demo_settings: Settings, pg_url: str
) -> None:
    settings = demo_with_master(demo_settings, database_url=pg_url)
    async with serving(create_app(settings, audit=MemoryAuditSink())) as http:
        # Control: a key that only PostgreSQL knows authenticates, so the lookups below reach it.
        created = await http.post("/admin/keys", json={"name": "pg-only"}, headers=MASTER)
        assert created.status_code == 201, created.text
        pg_key = created.json()["key"]
        ok = await http.get("/v1/models", headers=bearer(pg_key))
        assert ok.status_code == 200, ok.text
        for payload in (SQL_SLEEP, "x'; SELECT pg_sleep(8); --", "x' OR '1'='1", f"{pg_key}' OR '1'='1"):
            for headers in (bearer(payload), {"api-key": payload}, {"x-api-key": payload}):
                for method, path in (("GET", "/v1/models"), ("POST", CHAT), ("GET", "/admin/keys")):
                    body = chat_body() if method == "POST" else None
                    async with asyncio.timeout(SLEEP_PATIENCE):  # a pg_sleep that ran fails here
                        response = await http.request(method, path, json=body, headers=headers)
                    error_of(response, 401, "invalid_api_key")
                    assert "pg_sleep" not in response.text


# =================================================================================================
# A4: a provider's key is not a client key; client auth and provider headers never travel upstream
# =================================================================================================
CLIENT_KEY = "sk-client-a4-Zq81"
PROVIDER_KEYS = {
    "A4_OPENAI_KEY": "sk-proj-upstream-openai-a4K1",
    "A4_ANTHROPIC_KEY": "sk-ant-api03-upstream-a4K2",
    "A4_GEMINI_KEY": "AIzaSy-upstream-gemini-a4K3",
}
RESPX_CONFIG = f"""
server: {{default_policy: no-training-only, on_violation: block}}
models:
  - name: gpt
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: A4_OPENAI_KEY}}
  - name: claude
    deployments:
      - {{provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5,
         api_key_env: A4_ANTHROPIC_KEY}}
  - name: gemini
    deployments:
      - {{provider: google, channel: google.gemini_api_paid, model: gemini/gemini-2.5-flash,
         api_key_env: A4_GEMINI_KEY}}
attestations:
  - {{provider: google, channel: google.gemini_api_paid, fact: paid_tier, evidence: "billing account on"}}
keys:
  - {{name: client, key_hash: "{key_hash(CLIENT_KEY)}"}}
"""
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
GEMINI_HOST = "generativelanguage.googleapis.com"
# model -> (respx route name, header that carries the configured key upstream)
WIRES = {"gpt": "openai", "claude": "anthropic", "gemini": "gemini"}


def openai_answer(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        return httpx.Response(200, content=openai_stream(), headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json=openai_completion())


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)


def anthropic_answer(request: httpx.Request) -> httpx.Response:
    """A stream call gets a stream (a 200 JSON answer to one is refused, as on the pass-through)."""
    if not json.loads(request.content).get("stream"):
        return httpx.Response(200, json=anthropic_message())
    message = {**anthropic_message(), "content": [], "stop_reason": None}
    body = sse(
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hello from Claude"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    )
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def gemini_answer(request: httpx.Request) -> httpx.Response:
    if ":streamGenerateContent" not in request.url.path:
        return httpx.Response(200, json=gemini_response())
    return httpx.Response(200, content=sse(gemini_response()), headers={"content-type": "text/event-stream"})


@pytest.fixture
def internet(litellm_over_httpx: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    for name, value in PROVIDER_KEYS.items():
        monkeypatch.setenv(name, value)
    with mocked_internet(assert_all_mocked=True) as mock:
        mock.post(OPENAI_URL, name="openai").mock(side_effect=openai_answer)
        mock.post(ANTHROPIC_URL, name="anthropic").mock(side_effect=anthropic_answer)
        mock.route(host=GEMINI_HOST, name="gemini").mock(side_effect=gemini_answer)
        yield mock


@pytest.fixture
async def providers(internet: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(build_app(RESPX_CONFIG)) as client:
        yield client


def sent_upstream(request: httpx.Request) -> str:
    """Everything one outbound request carried: URL, every header line, body."""
    headers = "\n".join(f"{k}: {v}" for k, v in request.headers.multi_items())
    return f"{request.url}\n{headers}\n{request.content.decode('utf-8', 'replace')}"


async def test_a4_a_configured_provider_key_is_not_a_client_key(
    providers: httpx.AsyncClient, internet: respx.MockRouter
) -> None:
    for provider_key in PROVIDER_KEYS.values():
        for headers in (bearer(provider_key), {"api-key": provider_key}, {"x-api-key": provider_key}):
            for model in WIRES:
                response = await providers.post(CHAT, json=chat_body(model), headers=headers)
                error = error_of(response, 401, "invalid_api_key")
                assert provider_key not in error["message"]
            error_of(await providers.get("/v1/models", headers=headers), 401, "invalid_api_key")
    assert outbound(internet) == []
    # Control: the client's own key is served by each wire.
    for model in WIRES:
        ok = await providers.post(CHAT, json=chat_body(model), headers=bearer(CLIENT_KEY))
        assert ok.status_code == 200, ok.text
    assert len(outbound(internet)) == len(WIRES)


async def test_a4_the_demo_simulated_provider_key_is_not_a_client_key(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    served = await http.post(CHAT, json=chat_body(), headers=AUTH)
    assert served.status_code == 200
    [request] = fake.requests
    simulated = request.headers["authorization"].removeprefix("Bearer ")  # what the demo sends upstream
    assert simulated and simulated != DEMO_KEY
    fake.reset()
    for headers in (bearer(simulated), {"api-key": simulated}, {"x-api-key": simulated}):
        error_of(await http.post(CHAT, json=chat_body(), headers=headers), 401, "invalid_api_key")
    no_upstream(fake)


CLIENT_PROVIDER_HEADERS = {
    "x-goog-api-key": "CANARY-goog-key-a4",
    "anthropic-version": "CANARY-1999-01-01",
    "anthropic-beta": "CANARY-beta-a4",
    "openai-organization": "CANARY-org-a4",
    "openai-project": "CANARY-proj-a4",
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", list(WIRES))
async def test_a4_client_auth_and_provider_headers_never_reach_the_upstream(
    providers: httpx.AsyncClient, internet: respx.MockRouter, model: str, stream: bool
) -> None:
    # The client key in every header Sluice reads it from (one key, so it authenticates), plus
    # provider headers a client might send to pick an organisation, version or key of its own.
    headers = {
        **bearer(CLIENT_KEY),
        "api-key": CLIENT_KEY,
        "x-api-key": CLIENT_KEY,
        **CLIENT_PROVIDER_HEADERS,
    }
    response = await providers.post(CHAT, json=chat_body(model, stream=stream), headers=headers)
    assert response.status_code == 200, response.text
    [call] = outbound(internet)
    request = call.request
    everything = sent_upstream(request)
    assert CLIENT_KEY not in everything
    for value in CLIENT_PROVIDER_HEADERS.values():
        assert value not in everything, value
    wire = WIRES[model]
    if wire == "openai":
        assert request.headers["authorization"] == f"Bearer {PROVIDER_KEYS['A4_OPENAI_KEY']}"
        assert not {"api-key", "x-api-key", "x-goog-api-key"} & set(request.headers)
    elif wire == "anthropic":
        assert request.headers["x-api-key"] == PROVIDER_KEYS["A4_ANTHROPIC_KEY"]
        assert "authorization" not in request.headers and "api-key" not in request.headers
    else:
        assert PROVIDER_KEYS["A4_GEMINI_KEY"] in everything  # as x-goog-api-key or ?key=
        assert "authorization" not in request.headers and "x-api-key" not in request.headers


# =================================================================================================
# A5: Host and path tricks never open a protected route (real server, raw sockets)
# =================================================================================================
# (method, target, extra headers, Host) -> the route it must not open without a key
HOST_AND_PATH_TRICKS: dict[str, tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes | None]] = {
    "host-slash-hash": (b"GET", b"/admin/keys", [], b"x/#"),
    "host-healthz-path": (b"GET", b"/admin/keys", [], b"127.0.0.1/healthz?"),
    "no-host": (b"GET", b"/admin/keys", [], None),
    "absolute-form-admin": (b"GET", b"http://evil/admin/keys", [], b"127.0.0.1"),
    "absolute-form-host-mismatch": (b"GET", b"http://127.0.0.1/admin/keys", [], b"evil"),
    "absolute-form-metrics": (b"GET", b"http://evil/metrics", [], b"127.0.0.1"),
    "absolute-form-models": (b"GET", b"http://evil/v1/models", [], b"127.0.0.1"),
    "x-forwarded-host": (
        b"GET",
        b"/admin/keys",
        [
            (b"X-Forwarded-Host", b"127.0.0.1"),
            (b"X-Forwarded-For", b"127.0.0.1"),
            (b"X-Real-IP", b"127.0.0.1"),
        ],
        b"evil",
    ),
    "x-original-url": (b"GET", b"/admin/keys", [(b"X-Original-URL", b"/healthz")], b"127.0.0.1"),
    "x-rewrite-url": (b"GET", b"/admin/keys", [(b"X-Rewrite-URL", b"/healthz")], b"127.0.0.1"),
    "x-forwarded-prefix": (b"GET", b"/admin/keys", [(b"X-Forwarded-Prefix", b"/healthz")], b"127.0.0.1"),
    "double-slash-v1": (b"GET", b"//v1/models", [], b"127.0.0.1"),
    "double-slash-admin": (b"GET", b"//admin/keys", [], b"127.0.0.1"),
    "inner-double-slash": (b"GET", b"/admin//keys", [], b"127.0.0.1"),
    "encoded-dot-dot": (b"GET", b"/%2e%2e/admin/keys", [], b"127.0.0.1"),
    "encoded-dot-dot-from-public": (b"GET", b"/healthz/%2e%2e/admin/keys", [], b"127.0.0.1"),
    "encoded-slash": (b"GET", b"/healthz%2f..%2fadmin%2fkeys", [], b"127.0.0.1"),
    "dot-dot-from-v1": (b"GET", b"/v1/../admin/keys", [], b"127.0.0.1"),
    "dot-dot-from-public": (b"GET", b"/v1/privacy/../../admin/keys", [], b"127.0.0.1"),
    "dot-segment": (b"GET", b"/./admin/keys", [], b"127.0.0.1"),
    "matrix-param": (b"GET", b"/admin/keys;/healthz", [], b"127.0.0.1"),
    "query-public": (b"GET", b"/admin/keys?/healthz", [], b"127.0.0.1"),
    "upper-case": (b"GET", b"/ADMIN/KEYS", [], b"127.0.0.1"),
    "trailing-slash": (b"GET", b"/admin/keys/", [], b"127.0.0.1"),
    "metrics-dot-dot": (b"GET", b"/healthz/../metrics", [], b"127.0.0.1"),
    "chat-absolute-form": (b"POST", b"http://evil/v1/chat/completions", [], b"127.0.0.1"),
    "chat-double-slash": (b"POST", b"//v1/chat/completions", [], b"127.0.0.1"),
    "chat-dot-dot": (b"POST", b"/v1/privacy/../chat/completions", [], b"127.0.0.1"),
    "chat-host-hash": (b"POST", b"/v1/chat/completions", [(b"X-Original-URL", b"/healthz")], b"x/#"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("trick", list(HOST_AND_PATH_TRICKS))
def test_a5_host_and_path_tricks_do_not_open_protected_routes(server: Server, trick: str) -> None:
    method, target, extra, host = HOST_AND_PATH_TRICKS[trick]
    body = CHAT_BODY if method == b"POST" else b""
    before = len(server.fake.requests)
    without = raw_request(server.port, method, target, extra, body, host=host)
    assert_refused(without, allowed=(400, 401, 404))
    # A client key is not the master key, whatever the Host or path says.
    demo = [*extra, (b"Authorization", b"Bearer " + DEMO_KEY.encode())]
    if b"/admin" in target.lower() or b"metrics" in target:
        with_client_key = raw_request(server.port, method, target, demo, body, host=host)
        assert with_client_key.status in (400, 403, 404), (with_client_key.status, with_client_key.body[:300])
    assert b'"data"' not in without.body and b"sluice_" not in without.body  # no key list, no metrics
    assert len(server.fake.requests) == before


@pytest.mark.e2e
def test_a5_control_absolute_form_and_host_tricks_reach_the_real_routes(server: Server) -> None:
    """What the tricks above aim at is really there: with the master key they are answered."""
    master = [(b"Authorization", b"Bearer " + MASTER_KEY.encode())]
    for target, host in ((b"/admin/keys", b"x/#"), (b"http://evil/admin/keys", b"127.0.0.1")):
        listed = raw_request(server.port, b"GET", target, master, host=host)
        assert listed.status == 200, listed.body[:300]
        assert listed.json()["object"] == "list"
    scraped = raw_request(server.port, b"GET", b"http://evil/metrics", master)
    assert scraped.status == 200 and b"sluice_" in scraped.body
    # X-Original-URL does not turn a public route into a protected one either.
    health = raw_request(server.port, b"GET", b"/healthz", [(b"X-Original-URL", b"/admin/keys")])
    assert (health.status, health.json()) == (200, {"status": "ok"})


# =================================================================================================
# A6: the route inventory
# =================================================================================================
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/privacy/catalog"),
    ("GET", "/v1/privacy/policies"),
}
# The transparency pages (gateway/api/pages.py): public, read-only pages; and the report with its
# sign-in, which check the master key (in a header, or a browser session from the sign-in form) themselves.
PAGES = {("GET", "/"), ("GET", "/catalog"), ("GET", "/static/sluice.css"), ("GET", "/static/sluice.js")}
SIGN_IN = {("POST", "/admin/login"), ("POST", "/admin/logout")}
REPORT = ("GET", "/admin/report")
MASTER_ONLY_PREFIXES = ("/admin/", "/metrics")
# Endpoints of the kinds behind incidents 5, 9 and 10: none may exist.
FORBIDDEN_ROUTE = re.compile(r"config|callback|debug|reload|eval|exec|plugin|proxy|spend|team|user", re.I)


def inventory(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers: its routes (the pipeline's among them)."""
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):  # included routers flattened, prefixes applied
        route = context.original_route
        # A mount or another kind of route would hide paths from this walk, and from FastAPI's
        # dependency-based auth: none may exist. The pipeline routes authenticate in the pipeline.
        pipeline = isinstance(route, Route) and isinstance(route.app, Guarded)
        kind = type(route).__name__
        assert pipeline or isinstance(route, APIRoute), f"unexpected route kind {kind}: {route}"
        assert context.path and context.methods, route
        found |= {(method, context.path) for method in context.methods}
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


ANTHROPIC_ROUTES = ("/v1/messages",)


@pytest.mark.parametrize("metrics_public", [False, True])
async def test_a6_every_route_is_public_by_allowlist_or_needs_a_key(
    demo_settings: Settings, fake: FakeUpstream, metrics_public: bool
) -> None:
    app = create_app(demo_with_master(demo_settings, metrics_public=metrics_public), audit=MemoryAuditSink())
    routes = inventory(app)
    public = PUBLIC | PAGES | ({("GET", "/metrics")} if metrics_public else set())
    assert public <= routes, public - routes  # the allowlist names real routes
    assert {("POST", CHAT), ("GET", "/v1/models"), ("GET", "/admin/keys")} <= routes  # the walk sees them
    assert not [path for _, path in routes if FORBIDDEN_ROUTE.search(path)]
    async with serving(app) as http:
        for method, path in sorted(routes):
            url = concrete(path)
            body = chat_body() if method in ("POST", "PUT", "PATCH") else None
            for headers in ({}, bearer("sk-not-a-key-000000")):
                response = await http.request(method, url, json=body, headers=headers)
                if (method, path) in SIGN_IN or ((method, path) == REPORT and not headers):
                    # the sign-in form, or a refusal: never the report, never a session
                    assert response.status_code in (200, 401, 403), (method, path, response.status_code)
                    assert "Requests over time" not in response.text and "set-cookie" not in response.headers
                elif (method, path) in public:
                    assert response.status_code == 200, (method, path, response.status_code)
                elif path.startswith(ANTHROPIC_ROUTES):  # the Messages API answers in Anthropic's envelope
                    assert response.status_code == 401, (method, path, response.status_code)
                    assert response.json()["error"]["code"] == "invalid_api_key"
                    assert response.json()["error"]["type"] == "authentication_error"
                else:
                    error_of(response, 401, "invalid_api_key")
            if path.startswith(MASTER_ONLY_PREFIXES) and (method, path) not in public | SIGN_IN:
                refused = await http.request(method, url, json=body, headers=AUTH)
                error_of(refused, 403, "master_key_required")
                allowed = await http.request(method, url, json=body, headers=MASTER)
                assert allowed.status_code not in (401, 403), (method, path, allowed.text[:200])
    no_upstream(fake)


async def test_a6_openapi_and_docs_are_not_served(http: httpx.AsyncClient) -> None:
    """The schema would list every route, `/admin` included, to anyone: a privacy gateway keeps it."""
    for path in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"):
        for headers in ({}, AUTH, MASTER):
            response = await http.get(path, headers=headers)
            error_of(response, 404)
            assert "/admin/keys" not in response.text


async def test_a6_health_and_readiness_show_no_models_urls_or_keys(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    config_text = DEMO_CONFIG.read_text(encoding="utf-8")
    secrets_and_names = [
        DEMO_KEY,
        LEGAL_KEY,
        MASTER_KEY,
        "sk-simulated",
        "sha256:",
        fake.url,
        str(fake.port),
        "127.0.0.1",
        "http",
        *re.findall(r"name: ([\w.-]+)", config_text),
        *re.findall(r"model: ([\w./-]+)", config_text),
        *re.findall(r"channel: ([\w.]+)", config_text),
    ]
    healthz = await http.get("/healthz")
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    readyz = await http.get("/readyz")
    assert readyz.status_code == 200
    for response in (healthz, readyz):
        for text in secrets_and_names:
            assert text not in response.text, text
    no_upstream(fake)


# =================================================================================================
# S1: a client cannot choose the upstream, by header or by body
# =================================================================================================
@dataclass
class Listener:
    """An attacker's server on loopback (IPv4 and, where there is one, IPv6): counts connections."""

    port: int
    accepted: list[str] = field(default_factory=list)


@pytest.fixture
async def attacker() -> AsyncIterator[Listener]:
    listener = Listener(0)

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        listener.accepted.append(str(writer.get_extra_info("peername")))
        writer.close()

    servers = [await asyncio.start_server(accept, "127.0.0.1", 0)]
    listener.port = servers[0].sockets[0].getsockname()[1]
    # Without an IPv6 loopback, [::1] targets fail to connect: also 0 accepts.
    with contextlib.suppress(OSError):
        servers.append(await asyncio.start_server(accept, "::1", listener.port))
    try:
        yield listener
    finally:
        for srv in servers:
            srv.close()
            await srv.wait_closed()


def override_headers(port: int) -> dict[str, str]:
    evil = f"http://127.0.0.1:{port}"
    return {
        "x-portkey-custom-host": f"{evil}/v1",
        "x-portkey-provider": "openai",
        "x-litellm-api-base": f"{evil}/v1",
        "x-custom-host": evil,
        "api-base": f"{evil}/v1",
        "x-base-url": f"{evil}/v1",
        "x-api-base": f"{evil}/v1",
        "x-forwarded-host": f"127.0.0.1:{port}",
    }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet", "gemini-flash"])
async def test_s1_target_override_headers_are_ignored(
    http: httpx.AsyncClient, fake: FakeUpstream, attacker: Listener, model: str, stream: bool
) -> None:
    headers = {**AUTH, **override_headers(attacker.port)}
    response = await http.post(CHAT, json=chat_body(model, stream=stream), headers=headers)
    assert response.status_code == 200, response.text
    [request] = fake.requests  # served by the configured (fake) upstream: the target is unchanged
    assert str(attacker.port) not in json.dumps(request.headers) + request.path + request.query
    assert attacker.accepted == []


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet", "gemini-flash"])
async def test_s3_proxy_variables_in_the_environment_are_not_used(
    http: httpx.AsyncClient,
    fake: FakeUpstream,
    attacker: Listener,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    stream: bool,
) -> None:
    """A proxy in the environment is an egress path the config does not show: no upstream client
    (Sluice's own, litellm's aiohttp transport) may take it."""
    proxy = f"http://127.0.0.1:{attacker.port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    response = await http.post(CHAT, json=chat_body(model, stream=stream), headers=AUTH)
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 1
    assert attacker.accepted == []


async def test_s1_target_override_headers_are_ignored_for_embeddings(
    http: httpx.AsyncClient, fake: FakeUpstream, attacker: Listener
) -> None:
    body = {"model": "text-embedding-3-small", "input": "hi"}
    response = await http.post(
        "/v1/embeddings", json=body, headers={**AUTH, **override_headers(attacker.port)}
    )
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 1
    assert attacker.accepted == []


def _steering_bodies(value: str) -> dict[str, dict[str, Any]]:
    user = [{"role": "user", "content": [{"type": "text", "text": "hi", "api_base": value}]}]
    return {
        "top-api_base": chat_body(api_base=value),
        "top-base_url": chat_body(base_url=value),
        "metadata": chat_body(metadata={"api_base": value}),
        "stream_options": chat_body(stream=True, stream_options={"base_url": value}),
        "content-part": {**chat_body(), "messages": user},
        "tool-function": chat_body(
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}, "api_base": value}}]
        ),
        "response_format": chat_body(response_format={"type": "json_object", "base_url": value}),
        "provider": chat_body(provider={"api_base": value}),
        "privacy": chat_body(privacy={"policy": [], "api_base": value}),
        "user_config": chat_body(user_config={"model_list": [{"litellm_params": {"api_base": value}}]}),
    }


def _attacker_urls(port: int) -> dict[str, str]:
    return {
        "ipv6-loopback": f"http://[::1]:{port}/v1",
        "hex-ip": f"http://0x7f000001:{port}/v1",
        "decimal-ip": f"http://2130706433:{port}/v1",
        "loopback": f"http://127.0.0.1:{port}/v1",
        "metadata-ip": "http://169.254.169.254/latest/meta-data/",
    }


@pytest.mark.parametrize("where", list(_steering_bodies("x")))
async def test_s1_api_base_values_are_refused_at_any_depth(
    http: httpx.AsyncClient, fake: FakeUpstream, attacker: Listener, where: str
) -> None:
    for name, value in _attacker_urls(attacker.port).items():
        for model in ("gpt-4o-mini", "claude-sonnet"):
            body = _steering_bodies(value)[where] | {"model": model}
            response = await http.post(CHAT, json=body, headers=AUTH)
            error = error_of(response, 400, "forbidden_parameter")
            assert value not in response.text, name
            assert error["param"] is not None
    embeddings = {
        "model": "text-embedding-3-small",
        "input": "hi",
        "api_base": f"http://[::1]:{attacker.port}",
    }
    error_of(await http.post("/v1/embeddings", json=embeddings, headers=AUTH), 400, "forbidden_parameter")
    no_upstream(fake)
    assert attacker.accepted == []


# =================================================================================================
# Q2: a request cannot loosen its key's policy
# =================================================================================================
# The legal key holds zero-retention and blocks; gpt-4o-mini (30-day retention) fails it, and
# deepseek-chat fails it with a reroute_to (llama-local) that would comply.
LOOSENING: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "header-allow": ({}, {"X-Privacy-Policy": "allow"}),
    "header-none": ({}, {"X-Privacy-Policy": "none"}),
    "header-looser-policy": ({}, {"X-Privacy-Policy": "api-channel-only"}),
    "header-empty": ({}, {"X-Privacy-Policy": ""}),
    "metadata-policy": ({"metadata": {"policy": "allow"}}, {}),
    # `metadata` values are strings (OpenAI's definition); one that spells a privacy object is just text.
    "metadata-privacy": ({"metadata": {"privacy": '{"policy": [], "on_violation": "reroute"}'}}, {}),
    "provider-allow": ({"provider": {"data_collection": "allow"}}, {}),
    "provider-allow-no-zdr": ({"provider": {"data_collection": "allow", "zdr": False}}, {}),
    "privacy-empty-policy": ({"privacy": {"policy": []}}, {}),
    "privacy-allow": ({"privacy": {"policy": ["allow"]}}, {}),
    "privacy-reroute": ({"privacy": {"on_violation": "reroute"}}, {}),
}


@pytest.mark.parametrize("attempt", list(LOOSENING))
@pytest.mark.parametrize("model", ["gpt-4o-mini", "deepseek-chat"])
async def test_q2_loosening_attempts_stay_blocked(
    http: httpx.AsyncClient, fake: FakeUpstream, attempt: str, model: str
) -> None:
    extra, headers = LOOSENING[attempt]
    response = await http.post(CHAT, json=chat_body(model, **extra), headers={**bearer(LEGAL_KEY), **headers})
    if response.status_code == 400:
        error_of(response, 400, "unknown_policy")  # a made-up policy name: refused, never ignored
    else:
        error = error_of(response, 403, "no_compliant_deployment")
        assert error["type"] == "privacy_policy_violation"
        assert response.headers["X-Privacy-Decision"] == "blocked"
        assert "zero-retention" in response.headers["X-Privacy-Policy"]
    no_upstream(fake)


async def test_q2_loosening_a_default_policy_key_stays_blocked(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """The demo key (server default no-training-only) on gemini-flash-free, which trains."""
    for extra, headers in LOOSENING.values():
        response = await http.post(
            CHAT, json=chat_body("gemini-flash-free", **extra), headers={**AUTH, **headers}
        )
        assert response.status_code in (400, 403), response.text
    no_upstream(fake)


async def test_q2_control_tightening_is_honoured(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    assert (await http.post(CHAT, json=chat_body(), headers=AUTH)).status_code == 200
    for extra, headers in (
        ({}, {"X-Privacy-Policy": "zero-retention"}),
        ({"provider": {"zdr": True}}, {}),
        ({"privacy": {"policy": ["zero-retention"]}}, {}),
    ):
        response = await http.post(CHAT, json=chat_body(**extra), headers={**AUTH, **headers})
        # gpt-4o-mini's only deployment keeps data 30 days: the demo key reroutes to its self-hosted
        # reroute target (the demo's `reroute_to`), never to openai.api.
        assert response.headers["X-Privacy-Decision"] == "rerouted", response.text
        assert response.headers["X-Privacy-Channel"] == "self_hosted.vllm"
        blocked = {**extra, "privacy": {**extra.get("privacy", {}), "on_violation": "block"}}
        response = await http.post(CHAT, json=chat_body(**blocked), headers={**AUTH, **headers})
        error_of(response, 403, "no_compliant_deployment")
    assert len(fake.requests) == 4  # the first, unrestricted call and the three rerouted ones
    # deepseek-chat's reroute target complies with the legal key's policy: the 403s above for
    # `privacy.on_violation: reroute` are the key's `block` holding, not a reroute with nowhere to go.
    local = await http.post(CHAT, json=chat_body("llama-local"), headers=bearer(LEGAL_KEY))
    assert local.status_code == 200, local.text
    assert len(fake.requests) == 5


# =================================================================================================
# I7 addendum: `os.environ/...` is a string, never a secret reference; SDK-only keys are refused
# =================================================================================================
SECRET_CANARY = "CANARY-env-secret-i7-93af"
SECRET_REFERENCE = "os.environ/SLUICE_TEST_SECRET"


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every `litellm.acompletion` call's keyword arguments (the call itself still happens)."""
    litellm = load_litellm()
    calls: list[dict[str, Any]] = []
    real = litellm.acompletion

    async def recording(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", recording)
    return calls


@pytest.mark.parametrize("model", list(WIRES))
async def test_i7_os_environ_values_reach_the_upstream_as_literal_strings(
    providers: httpx.AsyncClient,
    internet: respx.MockRouter,
    spy: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    model: str,
) -> None:
    monkeypatch.setenv("SLUICE_TEST_SECRET", SECRET_CANARY)
    body = chat_body(model, content=SECRET_REFERENCE, user=SECRET_REFERENCE)
    response = await providers.post(CHAT, json=body, headers=bearer(CLIENT_KEY))
    assert response.status_code == 200, response.text
    assert SECRET_CANARY not in response.text
    [call] = outbound(internet)
    everything = sent_upstream(call.request)
    assert SECRET_CANARY not in everything
    assert SECRET_REFERENCE in everything  # the prompt, at least, went as the literal text
    sent = json.loads(call.request.content)
    if WIRES[model] == "openai":
        assert sent["user"] == SECRET_REFERENCE
        assert spy == []  # the pass-through, not litellm
    else:  # litellm's transformations over Sluice's transport (SLUICE_TRANSLATION=auto): no acompletion
        assert spy == []
    if WIRES[model] == "anthropic":
        assert sent["metadata"]["user_id"] == SECRET_REFERENCE


@pytest.mark.parametrize("name", ["extra_body", "extra_query", "callbacks", "model_list"])
async def test_i7_sdk_only_keys_are_refused_top_level_and_nested(
    providers: httpx.AsyncClient, internet: respx.MockRouter, spy: list[dict[str, Any]], name: str
) -> None:
    value: Any = {"api_base": "http://127.0.0.1:9/v1"} if name != "model_list" else [{"model_name": "x"}]
    for model in WIRES:
        for body in (
            chat_body(model, **{name: value}),
            chat_body(model, metadata={name: value}),
            chat_body(model, stream=True, stream_options={name: value}),
            {**chat_body(model), "messages": [{"role": "user", "content": [{"type": "text", name: value}]}]},
        ):
            response = await providers.post(CHAT, json=body, headers=bearer(CLIENT_KEY))
            error = error_of(response, 400, "forbidden_parameter")
            assert error["param"] is not None and error["param"].endswith(name)
    assert spy == []
    assert outbound(internet) == []
