"""The request's edge (issue 11, items 3, 7-11, 14, 15): headers read whole, keys kept to their routes,
encodings refused, one error for every unsupported `provider.*` field, nothing secret in a log.

Two harnesses. In process: the demo app with a master key and its own SQLite key store (so
`/admin/keys` is live), over httpx's ASGI transport, in front of the fake upstream. A real
`sluice demo` process at DEBUG, spoken to over raw sockets, for what only the HTTP server and a
process's whole log show: an `Upgrade: websocket` request, a body too slow for `/admin/keys`, key
lookups at DEBUG. The framing refusals (item 13) and the closing 413 (item 12) are in
`test_input_limits.py`, beside the other limits of the HTTP server.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.core.auth import hash_key
from gateway.observability.audit import MemoryAuditSink
from gateway.observability.logs import Redactor
from gateway.settings import Settings
from tests.conftest import AUTH, DEMO_KEY, chat_body
from tests.gateway.support import (
    bearer,
    demo_env,
    error_of,
    free_port,
    serving,
    start_demo,
    stop_process,
    wait_healthy,
)
from tests.helpers import wait_until

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MASTER_KEY = "sk-sluice-master-edge-0123456789"
MASTER = bearer(MASTER_KEY)
WRONG_KEY = "sk-sluice-not-a-key-edge-000000"
EMBEDDING_BODY = {"model": "text-embedding-3-small", "input": "hi"}


def digests(key: str) -> list[str]:
    """Every form of a key that must stay out of logs: the key, its stored hash, the bare digest."""
    return [key, hash_key(key), hashlib.sha256(key.encode()).hexdigest()]


@pytest.fixture
def settings(demo_settings: Settings) -> Settings:
    return Settings.model_validate({**demo_settings.model_dump(), "master_key": MASTER_KEY})


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The demo app with a master key and a database key store, in front of `fake`."""
    async with serving(create_app(settings, audit=MemoryAuditSink())) as client:
        yield client


def no_upstream(fake: FakeUpstream) -> None:
    assert fake.requests == [], [r.path for r in fake.requests]


# -- item 3: repeated header lines --------------------------------------------------------------------
async def test_repeated_privacy_policy_lines_are_one_list(
    http: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """The second line tightens as a comma would: gpt-4o-mini (30-day retention) is blocked."""
    lines = [("x-privacy-policy", "api-channel-only"), ("x-privacy-policy", "zero-retention")]
    block = chat_body(privacy={"on_violation": "block"})  # the demo reroutes gpt-4o-mini otherwise
    blocked = await http.post(CHAT, json=block, headers=[*AUTH.items(), *lines])
    error_of(blocked, 403, "no_compliant_deployment")
    assert "zero-retention" in blocked.headers["x-privacy-policy"]
    no_upstream(fake)
    # Control: the first line alone is served, and the lines reversed are blocked as well.
    alone = await http.post(CHAT, json=block, headers=[*AUTH.items(), lines[0]])
    assert alone.status_code == 200, alone.text
    reversed_lines = await http.post(CHAT, json=block, headers=[*AUTH.items(), *lines[::-1]])
    error_of(reversed_lines, 403, "no_compliant_deployment")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "lines",
    [
        [("content-type", "application/json"), ("content-type", "text/plain")],
        [("content-type", "application/json"), ("content-type", "application/json")],
    ],
    ids=["content-type-differs", "content-type-twice"],
)
async def test_one_value_headers_on_two_lines_are_400(
    http: httpx.AsyncClient, fake: FakeUpstream, lines: list[tuple[str, str]]
) -> None:
    """Never read from the first line only: a header that holds one value, repeated, is refused."""
    raw = httpx.Request("POST", "http://x", json=chat_body()).content
    response = await http.post(CHAT, content=raw, headers=[*AUTH.items(), *lines])
    error_of(response, 400, "malformed_request")
    no_upstream(fake)


async def test_two_content_length_lines_are_400(http: httpx.AsyncClient, fake: FakeUpstream) -> None:
    """The HTTP parser refuses them too (llhttp); this holds for any server in front of the app."""
    raw = httpx.Request("POST", "http://x", json=chat_body()).content
    length = str(len(raw))
    lines = [("content-type", "application/json"), ("content-length", length), ("content-length", length)]
    response = await http.post(CHAT, content=raw, headers=[*AUTH.items(), *lines])
    error_of(response, 400, "malformed_request")
    no_upstream(fake)


# -- item 11: Content-Encoding ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "lines",
    [
        [("content-encoding", "gzip")],
        [("content-encoding", "br")],
        [("content-encoding", "deflate")],
        [("content-encoding", "zstd")],
        [("content-encoding", "identity, gzip")],
        [("content-encoding", "identity"), ("content-encoding", "gzip")],
        [("content-encoding", "x-anything")],
    ],
    ids=["gzip", "br", "deflate", "zstd", "identity-then-gzip", "two-lines", "unknown"],
)
@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS, "/admin/keys"])
async def test_a_content_encoding_sluice_does_not_decode_is_415(
    http: httpx.AsyncClient, fake: FakeUpstream, lines: list[tuple[str, str]], path: str
) -> None:
    body = {"name": "encoded"} if path == "/admin/keys" else chat_body() if path == CHAT else EMBEDDING_BODY
    raw = httpx.Request("POST", "http://x", json=body).content
    key = MASTER if path == "/admin/keys" else AUTH
    headers = [*key.items(), ("content-type", "application/json"), *lines]
    for content in (raw, gzip.compress(raw)):  # the body as declared, or plain: refused either way
        response = await http.post(path, content=content, headers=headers)
        error = error_of(response, 415, "unsupported_media_type")
        assert "Content-Encoding" in error["message"]
    no_upstream(fake)
    listed = await http.get("/admin/keys", headers=MASTER)
    assert listed.json()["data"] == []  # nothing was created from an undecoded body


@pytest.mark.parametrize("coding", ["identity", "IDENTITY", ""])
async def test_control_identity_is_no_encoding(
    http: httpx.AsyncClient, fake: FakeUpstream, coding: str
) -> None:
    headers = [*AUTH.items(), ("content-encoding", coding)]
    response = await http.post(CHAT, json=chat_body(), headers=headers)
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 1


# -- item 9: /admin answers nothing before the master key ---------------------------------------------
ADMIN_PROBES = [
    ("GET", "/admin/keys/anything"),
    ("POST", "/admin/keys/anything"),
    ("PUT", "/admin/keys"),
    ("PATCH", "/admin/keys"),  # PATCH exists on /admin/keys/{name} only
    ("GET", "/admin"),
    ("GET", "/admin/"),
    ("GET", "/admin/nothing/here"),
    ("DELETE", "/admin/keys"),
    ("OPTIONS", "/admin/keys"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_PROBES)
async def test_admin_checks_the_master_key_before_routes_and_methods(
    http: httpx.AsyncClient, fake: FakeUpstream, method: str, path: str
) -> None:
    """No 404 or 405 names what exists under /admin to someone without the master key."""
    for headers in ({}, bearer(WRONG_KEY)):
        error_of(await http.request(method, path, headers=headers), 401, "invalid_api_key")
    error_of(await http.request(method, path, headers=AUTH), 403, "master_key_required")
    # Control: with the master key, routing answers as usual.
    routed = await http.request(method, path, headers=MASTER)
    assert routed.status_code in (404, 405), (method, path, routed.status_code)
    no_upstream(fake)


# -- item 10: the master key administers, and only that -----------------------------------------------
@pytest.mark.parametrize("header", ["authorization", "api-key", "x-api-key"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", CHAT, chat_body()),
        ("POST", CHAT, chat_body(stream=True)),
        ("POST", EMBEDDINGS, EMBEDDING_BODY),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/gpt-4o-mini", None),
    ],
    ids=["chat", "chat-stream", "embeddings", "models", "model"],
)
async def test_the_master_key_is_not_a_client_key(
    http: httpx.AsyncClient, fake: FakeUpstream, header: str, method: str, path: str, body: Any
) -> None:
    value = f"Bearer {MASTER_KEY}" if header == "authorization" else MASTER_KEY
    response = await http.request(method, path, json=body, headers={header: value})
    error = error_of(response, 403, "client_key_required")
    assert error["type"] == "permission_error"
    assert MASTER_KEY not in response.text
    no_upstream(fake)
    # Control: the master key still administers; a client key still chats.
    assert (await http.get("/admin/keys", headers={header: value})).status_code == 200
    assert (await http.request(method, path, json=body, headers=AUTH)).status_code == 200


# -- item 15: every unsupported provider.* field, one error ------------------------------------------
PROVIDER_FIELDS = [
    "order",
    "only",
    "ignore",
    "sort",
    "quantizations",
    "allow_fallbacks",
    "api_key",
    "max_price",
]


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
async def test_unsupported_provider_fields_get_one_error(
    http: httpx.AsyncClient, fake: FakeUpstream, path: str
) -> None:
    base = chat_body() if path == CHAT else EMBEDDING_BODY
    shapes = set()
    for name in PROVIDER_FIELDS:
        response = await http.post(path, json={**base, "provider": {name: ["openai"]}}, headers=AUTH)
        error = error_of(response, 400, "forbidden_parameter")
        assert error["param"] == f"provider.{name}"
        shapes.add((error["type"], error["message"].replace(name, "<field>")))
    assert len(shapes) == 1, shapes
    no_upstream(fake)


# -- item 14 and 7: nothing secret in a log, at DEBUG ----------------------------------------------------
async def test_no_key_material_in_logs_at_debug(
    http: httpx.AsyncClient, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Database keys are looked up by hash: neither the key nor any hash of it reaches a log record,
    for a valid key, an unknown one, the master key or a key being created."""
    caplog.set_level(logging.DEBUG)
    created = await http.post("/admin/keys", json={"name": "debug-logs"}, headers=MASTER)
    assert created.status_code == 201, created.text
    db_key = created.json()["key"]
    assert (await http.post(CHAT, json=chat_body(), headers=bearer(db_key))).status_code == 200
    error_of(await http.post(CHAT, json=chat_body(), headers=bearer(WRONG_KEY)), 401)
    assert (await http.get("/admin/keys", headers=MASTER)).status_code == 200
    assert caplog.records, "nothing was logged: the capture does not work"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for key in (db_key, WRONG_KEY, MASTER_KEY, DEMO_KEY):
        for form in digests(key):
            assert form not in logged, (key, form)


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Basic {secret}",
        "authorization: Basic {secret} more words",
        "Proxy-Authorization: Digest username=x, response={secret}",
        "(b'authorization', b'Basic {secret}')",
        "{{'cookie': 'session={secret}; theme=dark'}}",
        "Cookie: a=1; session={secret}",
        "x-api-key: {secret}",
        "key_hash=sha256:{digest}",
        "looked up {digest}",
    ],
)
def test_credential_header_values_are_redacted_whole(line: str) -> None:
    secret = "c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3N3b3Jk"
    digest = hashlib.sha256(b"any key").hexdigest()
    redacted = Redactor()(line.format(secret=secret, digest=digest))
    assert secret not in redacted and digest not in redacted, redacted
    assert "[redacted]" in redacted


# -- a real process at DEBUG: items 7, 8 and 14 -------------------------------------------------------
@dataclass
class Server:
    port: int
    log: Path
    fake: FakeUpstream

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("edge")
    port = free_port()
    env = demo_env(tmp, master_key=MASTER_KEY, log_level="DEBUG", access_log="true", body_timeout="1")
    env["PYTHONUNBUFFERED"] = "1"
    log = tmp / "demo.log"
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=env, upstream=fake.url)
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}", log)
            yield Server(port, log, fake)
        finally:
            stop_process(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def exchange(server: Server, raw: bytes) -> bytes:
    """Send `raw`, read until the server closes the connection (bounded by the socket timeout)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_an_upgrade_request_is_plain_http_and_logs_no_header_value(server: Server) -> None:
    """Sluice serves no WebSocket: the handshake is answered as any request (here a 401 for Basic
    auth), the connection then closes, and no header value reaches the DEBUG log."""
    canary = "EDGEHEADERCANARY7f3a"
    head = (
        "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Cookie: session={canary}\r\nAuthorization: Basic {canary}-basic\r\nX-Anything: {canary}\r\n\r\n"
    )
    answer = exchange(server, head.encode())
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
    assert b"connection: close" in answer.lower()
    assert b'"invalid_api_key"' in answer
    # The access log line of this request marks that the request was logged, if it ever was.
    wait_until(lambda: "GET /v1/models" in server.output(), "the access log line")
    assert canary not in server.output()


def test_a_slow_admin_body_is_a_408_without_a_traceback(server: Server) -> None:
    """Issue 11 item 8: the protocol's body deadline answers 408; the route that waited for the
    body sees the client gone, which is no error of Sluice's."""
    head = (
        "POST /admin/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {MASTER_KEY}\r\nContent-Length: 100\r\n\r\n"
    )
    answer = exchange(server, head.encode() + b'{"name": ')  # and the rest never comes
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    wait_until(lambda: "client disconnected before its request body arrived" in server.output(), "the route")
    output = server.output()
    assert "unhandled error" not in output and "Traceback" not in output, output[-3000:]
    assert server.fake.requests == []


def test_a_debug_log_holds_no_key_material(server: Server) -> None:
    """Issue 11 item 14: an unknown key is looked up in the database by its hash; at DEBUG neither
    the key nor its hash is logged (aiosqlite logged every statement with its parameters)."""
    root = f"http://127.0.0.1:{server.port}"
    for key in (WRONG_KEY, MASTER_KEY, DEMO_KEY):
        httpx.get(f"{root}/v1/models", headers=bearer(key), timeout=20)
    created = httpx.post(f"{root}/admin/keys", json={"name": "process-debug"}, headers=MASTER, timeout=20)
    assert created.status_code == 201, created.text
    db_key = created.json()["key"]
    assert httpx.get(f"{root}/v1/models", headers=bearer(db_key), timeout=20).status_code == 200
    wait_until(lambda: server.output().count("GET /v1/models") >= 4, "the access log lines")
    output = server.output()
    assert " DEBUG " in output
    # (`sluice demo` prints its own demo key at start, for copying: only its hashes count here.)
    forms = [*digests(WRONG_KEY), *digests(MASTER_KEY), *digests(db_key), *digests(DEMO_KEY)[1:]]
    for form in forms:
        assert form not in output, form
