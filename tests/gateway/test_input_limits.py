"""Input limits (security checklist I1, I4, I5, I6, I8, I9, I10): refused early, named, never sent on.

Two harnesses. The size and header limits (I1, I9) are about what the HTTP server does before the
app has a body, so they run against a real `sluice demo` process (uvicorn with Sluice's own
protocol class, the default 4 MiB body cap) over raw sockets, and read the server's memory from
/proc. The shape limits (I4, I5, I6, I8, I10) run in process over ASGI. Every refusal is checked to
leave the fake upstream untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.observability.audit import MemoryAuditSink
from tests.conftest import AUTH, DEMO_CONFIG, DEMO_KEY, chat_body
from tests.gateway.support import (
    App,
    demo_app,
    error_of,
    free_port,
    sse_json,
    start_demo,
    stop_process,
    wait_healthy,
)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
JSON_HEADERS = {**AUTH, "content-type": "application/json"}
MiB = 1024 * 1024
DEFAULT_BODY_LIMIT = 4 * MiB
FIFTY_MB = 50_000_000
# A refused body must not end up in the server's memory: far below what was sent (50 MB).
RSS_SLACK = 16 * MiB
HEADER_LIMIT = 64 * 1024  # gateway/server/edge.py: names and values, all headers together
HEADER_COUNT_LIMIT = 100


# -- a real server ----------------------------------------------------------------------------------
@dataclass
class Server:
    port: int
    pid: int
    fake: FakeUpstream

    def rss(self) -> int:
        """The server process's resident memory, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "LITELLM"))}
    env |= {
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(tmp / "audit.spool"),
    }
    port = free_port()
    log = tmp / "demo.log"
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=env, upstream=fake.url)
        try:
            root = f"http://127.0.0.1:{port}"
            wait_healthy(proc, root, log)
            # litellm is imported in the background at start-up (~200 MB): wait for it through a
            # translated model, so memory measured afterwards is the server's own.
            warm = httpx.post(f"{root}{CHAT}", json=chat_body("claude-sonnet"), headers=AUTH, timeout=60)
            assert warm.status_code == 200, warm.text
            fake.reset()
            yield Server(port, proc.pid, fake)
        finally:
            stop_process(proc)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture
def live(server: Server) -> Server:
    """The shared server, with the fake upstream's record of earlier tests forgotten."""
    server.fake.reset()
    return server


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def read_response(sock: socket.socket, *, timeout: float = 10.0) -> RawResponse:
    """One HTTP/1.1 response with a Content-Length body, read off a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body[:length])


def envelope(response: RawResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body[:300])
    assert response.headers["content-type"].startswith("application/json")
    error = json.loads(response.body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code), error
    return dict(error)


def readable(sock: socket.socket, seconds: float) -> bool:
    return bool(select.select([sock], [], [], seconds)[0])


def request_head(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [
        ("Host", "127.0.0.1"),
        ("Authorization", f"Bearer {DEMO_KEY}"),
        ("Content-Type", "application/json"),
        *extra,
    ]


def encode_head(headers: list[tuple[str, str]], *, method: str = "POST", path: str = CHAT) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# A JSON body whose one string never ends: the start of a 50 MB prompt.
BODY_START = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
PIECE = b"a" * (256 * 1024)


# -- I1: body size, against the real server -------------------------------------------------------
@pytest.mark.parametrize("expect_continue", [False, True], ids=["plain", "expect-100-continue"])
def test_i1_content_length_over_the_limit_is_refused_before_the_body_is_sent(
    live: Server, expect_continue: bool
) -> None:
    extra = [("Content-Length", "1000000000")]
    if expect_continue:
        extra.append(("Expect", "100-continue"))
    with live.connect() as sock:
        sock.sendall(encode_head(request_head(*extra)))  # and not one byte of the body
        response = read_response(sock)
    # A 413 at all proves it: the body never comes, so a server waiting for it could only time out
    # (408, after 30 s). The first status line is the 413, never an invitation to send (100).
    envelope(response, 413, "request_too_large")
    assert response.headers["x-request-id"]
    assert live.fake.requests == []


def _hangs_up(sock: socket.socket) -> None:
    """After its 413 the server ends the connection (`Connection: close`): the client reads the end
    of the stream (or a reset, once the server stopped dropping what still came)."""
    sock.settimeout(10)
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(65536) == b"", "more than one answer on a connection that was to close"


def test_i1_a_declared_50_mb_body_is_refused_up_front_and_never_held(live: Server) -> None:
    with live.connect() as sock:
        sock.sendall(encode_head(request_head(("Content-Length", str(FIFTY_MB)))))
        refused = read_response(sock)
        envelope(refused, 413, "request_too_large")
        assert refused.headers["connection"] == "close"
        before = live.rss()
        sent = 0
        try:  # a client that sends its body anyway: dropped, and the server hangs up
            while sent < FIFTY_MB:
                piece = PIECE[: FIFTY_MB - sent]
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        _hangs_up(sock)
    assert live.rss() - before < RSS_SLACK, (before, live.rss())
    assert live.fake.requests == []


def test_i1_a_413_from_content_length_closes_the_connection_without_waiting_for_the_body(
    live: Server,
) -> None:
    """Issue 11 item 12: the unwanted body is not read until a timeout; the connection ends at once."""
    with live.connect() as sock:
        sock.sendall(encode_head(request_head(("Content-Length", str(FIFTY_MB)))))  # no body at all
        refused = read_response(sock)
        envelope(refused, 413, "request_too_large")
        assert refused.headers["connection"] == "close"
        assert readable(sock, 5), "the connection stayed open, waiting for a body nobody wants"
        assert sock.recv(65536) == b""
    assert live.fake.requests == []


def test_i1_chunked_body_is_refused_once_the_cap_is_reached_and_memory_stays_flat(live: Server) -> None:
    with live.connect() as sock:
        before = live.rss()
        sock.sendall(encode_head(request_head(("Transfer-Encoding", "chunked"))) + chunk(BODY_START))
        sent = len(BODY_START)
        while sent + len(PIECE) <= DEFAULT_BODY_LIMIT:
            sock.sendall(chunk(PIECE))
            sent += len(PIECE)
        assert not readable(sock, 0.3), "answered before the body reached the cap"
        sock.sendall(chunk(PIECE))  # now past the cap, and the body still has no end
        sent += len(PIECE)
        assert readable(sock, 10), f"no answer with {sent} bytes in, past the {DEFAULT_BODY_LIMIT} cap"
        refused = read_response(sock)
        envelope(refused, 413, "request_too_large")
        assert refused.headers["connection"] == "close"
        try:  # the rest of a 50 MB string, sent after the answer
            while sent < FIFTY_MB:
                sock.sendall(chunk(PIECE))
                sent += len(PIECE)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        _hangs_up(sock)
    grown = live.rss() - before
    assert grown < RSS_SLACK, f"RSS grew by {grown} bytes after {sent} were sent"
    assert live.fake.requests == []


# -- I9: headers, against the real server ---------------------------------------------------------
def _header_bytes(headers: list[tuple[str, str]]) -> int:
    return sum(len(name) + len(value) for name, value in headers)


def _padded_to(total: int) -> list[tuple[str, str]]:
    """A request whose header names and values add up to exactly `total` bytes."""
    body_headers = request_head(("Content-Length", str(len(json.dumps(chat_body())))))
    pad = total - _header_bytes(body_headers) - len("x-pad")
    headers = [*body_headers, ("x-pad", "p" * pad)]
    assert _header_bytes(headers) == total
    return headers


def _send(
    server: Server, headers: list[tuple[str, str]], *, method: str = "POST", path: str = CHAT
) -> RawResponse:
    body = json.dumps(chat_body()).encode() if method == "POST" else b""
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers = [*headers, ("Content-Length", str(len(body)))]
    with server.connect() as sock:
        sock.sendall(encode_head(headers, method=method, path=path) + body)
        return read_response(sock)


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        (request_head(("x-big", "a" * (64 * 1024))), CHAT),
        (request_head(("x-big", "a" * (64 * 1024))), "/v1/models"),
        (request_head(*((f"x-h{i}", "v") for i in range(1000))), CHAT),
        (request_head(*((f"x-h{i}", "v") for i in range(1000))), "/healthz"),
    ],
    ids=["64kb-value-chat", "64kb-value-models", "1000-headers-chat", "1000-headers-healthz"],
)
def test_i9_a_64_kb_value_or_1000_headers_get_431(
    live: Server, headers: list[tuple[str, str]], path: str
) -> None:
    response = _send(live, headers, method="POST" if path == CHAT else "GET", path=path)
    error = envelope(response, 431, "headers_too_large")
    assert "aaaa" not in error["message"]
    assert live.fake.requests == []


def test_i9_both_sides_of_the_combined_header_limit(live: Server) -> None:
    at_limit = _send(live, _padded_to(HEADER_LIMIT))
    assert at_limit.status == 200, at_limit.body[:300]
    assert len(live.fake.requests) == 1
    envelope(_send(live, _padded_to(HEADER_LIMIT + 1)), 431, "headers_too_large")
    assert len(live.fake.requests) == 1


def test_i9_both_sides_of_the_header_count_limit(live: Server) -> None:
    base = request_head(("Content-Length", str(len(json.dumps(chat_body())))))
    fill = HEADER_COUNT_LIMIT - len(base)
    at_limit = [*base, *((f"x-h{i}", "v") for i in range(fill))]
    assert len(at_limit) == HEADER_COUNT_LIMIT
    assert _send(live, at_limit).status == 200
    envelope(_send(live, [*at_limit, ("x-one-more", "v")]), 431, "headers_too_large")
    assert len(live.fake.requests) == 1


def test_i9_a_1_mb_request_line_is_answered_not_dropped(server: Server) -> None:
    """Past the head cap while it still arrives: a 431 in the OpenAI envelope, never a 5xx."""
    with server.connect() as sock:
        sock.sendall(encode_head(request_head(), method="GET", path="/v1/models?q=" + "a" * MiB))
        response = read_response(sock)
    envelope(response, 431, "headers_too_large")
    assert b"aaaa" not in response.body


@pytest.mark.parametrize("bad", [b"x-odd: a\x00b", b"x-odd: a\nb", b"x odd: a", b"x-odd a"])
def test_i9_bytes_the_http_parser_refuses_get_a_400_envelope(server: Server, bad: bytes) -> None:
    """uvicorn's parser refuses these before Sluice runs; its 400 comes in the OpenAI envelope."""
    with server.connect() as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: sluice\r\n" + bad + b"\r\n\r\n")
        response = read_response(sock)
    envelope(response, 400, "malformed_request")


CHUNKED_BODY = b"%x\r\n%s\r\n0\r\n\r\n" % (len(json.dumps(chat_body())), json.dumps(chat_body()).encode())


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: \tchunked\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked \r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        b"POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n",
        b"POST /v1/chat/completions HTTP/2.0\r\nTransfer-Encoding: chunked\r\n",
        b"GET /healthz\r\n",
        b"GET /healthz HTTP/1.2\r\n",
    ],
    ids=[
        "te-identity-chunked",
        "te-tab",
        "te-space-tab",
        "te-trailing-space",
        "te-gzip-chunked",
        "te-chunked-twice",
        "te-two-lines",
        "te-on-http-1.0",
        "http-2.0-on-h1",
        "no-http-version",
        "http-1.2",
    ],
)
def test_i9_framing_a_proxy_may_read_differently_gets_400_and_a_close(server: Server, head: bytes) -> None:
    """Issue 11 item 13: what the parser accepts but a proxy in front may frame otherwise (request
    smuggling) is refused as nginx refuses it: 400 `malformed_request`, then the connection closes."""
    server.fake.reset()
    rest = b"Host: 127.0.0.1\r\nAuthorization: Bearer " + DEMO_KEY.encode() + b"\r\n"
    rest += b"Content-Type: application/json\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(head + rest + (CHUNKED_BODY if head.startswith(b"POST") else b""))
        response = read_response(sock)
        envelope(response, 400, "malformed_request")
        assert response.headers["connection"] == "close"
        assert readable(sock, 5) and sock.recv(65536) == b""
    assert server.fake.requests == []


@pytest.mark.parametrize(
    "line", [b"Transfer-Encoding: chunked", b"transfer-encoding:CHUNKED", b"Transfer-Encoding:   chunked"]
)
def test_i9_control_one_chunked_coding_is_served(server: Server, line: bytes) -> None:
    server.fake.reset()
    head = encode_head(request_head(("X-Coding", "here")))
    with server.connect() as sock:
        sock.sendall(head.replace(b"X-Coding: here", line) + CHUNKED_BODY)
        assert read_response(sock).status == 200
    assert len(server.fake.requests) == 1


def test_i9_a_header_block_that_never_ends_is_refused_before_it_is_all_buffered(server: Server) -> None:
    with server.connect() as sock:
        before = server.rss()
        sock.sendall(encode_head(request_head())[:-2] + b"x-big: ")  # the headers stay open
        for _ in range(32 * MiB // len(PIECE)):
            sock.sendall(PIECE)
            if readable(sock, 0):
                break
        answered = readable(sock, 2.0)
        grown = server.rss() - before
    assert answered, "no answer to 32 MiB of one header"
    assert grown < RSS_SLACK, grown


# -- in process -------------------------------------------------------------------------------------
# One app and one fake upstream for every in-process case (an app per case would cost more
# than all the cases together); each case starts with both records empty.
in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[App]:
    async with demo_app(DEMO_CONFIG, tmp_path_factory.mktemp("limits-app")) as app:
        yield app


@pytest.fixture
def app(shared_app: App) -> App:
    shared_app.fake.reset()
    shared_app.audit.events.clear()
    return shared_app


def no_upstream(app: App) -> None:
    assert app.fake.requests == [], [r.path for r in app.fake.requests]


def _deep_object(depth: int, key: str = "p") -> str:
    return f'{{"{key}": ' * depth + "1" + "}" * depth


def _deep_array(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


MESSAGES = '"messages": [{"role": "user", "content": "hi"}]'


def _with(field: str) -> bytes:
    return ('{"model": "gpt-4o-mini", ' + MESSAGES + ", " + field + "}").encode()


# -- I4: nesting ----------------------------------------------------------------------------------
def _nested(where: str, depth: int) -> bytes:
    deep = _deep_object(depth)
    if where == "messages":
        content = f'[{{"role": "user", "content": [{_deep_array(depth)}]}}]'
        return ('{"model": "gpt-4o-mini", "messages": ' + content + "}").encode()
    field = {
        "top-level": f'"metadata": {deep}',
        "tools": '"tools": [{"type": "function", "function": {"name": "f", "parameters": ' + deep + "}}]",
        "response-format": '"response_format": {"type": "json_schema", '
        + '"json_schema": {"name": "s", "schema": '
        + deep
        + "}}",
    }[where]
    return _with(field)


@in_module_loop
@pytest.mark.parametrize("depth", [1_000, 100_000], ids=["1e3", "1e5"])
@pytest.mark.parametrize(
    ("where", "param"),
    [
        ("top-level", "metadata.p.p.p"),
        ("tools", "tools[0].function.parameters"),
        ("response-format", "response_format.json_schema.schema"),
        ("messages", "messages[0].content[0]"),
    ],
)
async def test_i4_deep_nesting_is_a_400_naming_the_field(
    app: App, where: str, param: str, depth: int
) -> None:
    raw = _nested(where, depth)
    response = await app.http.post(CHAT, content=raw, headers=JSON_HEADERS)
    error = error_of(response, 400, "invalid_json")
    assert error["param"] is not None and error["param"].startswith(param), error
    assert "64" in error["message"]
    no_upstream(app)


@in_module_loop
@pytest.mark.parametrize("depth", [1_000, 100_000], ids=["1e3", "1e5"])
async def test_i4_a_deep_body_that_is_not_an_object_is_a_400(app: App, depth: int) -> None:
    response = await app.http.post(CHAT, content=_deep_array(depth).encode(), headers=JSON_HEADERS)
    error_of(response, 400, "invalid_json")
    no_upstream(app)


# -- I5: numbers ------------------------------------------------------------------------------------
BIG_INTEGER = "9" * 5000


@in_module_loop
@pytest.mark.parametrize(
    ("field", "param"),
    [
        ('"temperature": NaN', "temperature"),
        ('"temperature": Infinity', "temperature"),
        ('"temperature": -Infinity', "temperature"),
        ('"top_p": 1e400', "top_p"),
        ('"presence_penalty": -1e400', "presence_penalty"),
        (f'"max_tokens": {BIG_INTEGER}', "max_tokens"),
        (f'"seed": -{BIG_INTEGER}', "seed"),
        ('"stop": ["a", NaN]', "stop[1]"),
        (
            '"tools": [{"type": "function", "function": {"name": "f", "parameters": '
            '{"type": "object", "properties": {"x": {"type": "number", "default": Infinity}}}}}]',
            "tools[0].function.parameters.properties.x.default",
        ),
    ],
    ids=[
        "nan",
        "infinity",
        "-infinity",
        "1e400",
        "-1e400",
        "5000-digits",
        "-5000-digits",
        "in-a-list",
        "in-a-schema",
    ],
)
async def test_i5_numbers_json_cannot_carry_are_a_400_naming_the_param(
    app: App, field: str, param: str
) -> None:
    response = await app.http.post(CHAT, content=_with(field), headers=JSON_HEADERS)
    error = error_of(response, 400, "invalid_json")
    assert error["param"] == param, error
    assert BIG_INTEGER[:20] not in error["message"]
    no_upstream(app)


@in_module_loop
@pytest.mark.parametrize(
    ("field", "param"),
    [
        ('"n": 1e9', "n"),
        ('"n": 1000000000', "n"),
        ('"max_tokens": -1', "max_tokens"),
        ('"max_tokens": 99999999999999999999', "max_tokens"),
        ('"max_tokens": 1e30', "max_tokens"),
        ('"max_completion_tokens": -5', "max_completion_tokens"),
    ],
)
async def test_i5_counts_out_of_bounds_are_a_400_naming_the_param(app: App, field: str, param: str) -> None:
    response = await app.http.post(CHAT, content=_with(field), headers=JSON_HEADERS)
    error = error_of(response, 400, "invalid_value")
    assert error["param"] == param
    no_upstream(app)


# -- I6: duplicate keys: the last one wins, everywhere -------------------------------------------
SERVED = {
    "gpt-4o-mini": ("gpt-4o-mini", "openai.api"),
    "llama-local": ("meta-llama/Llama-3.1-8B-Instruct", "self_hosted.vllm"),
}


@in_module_loop
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("gemini-flash-free", "gpt-4o-mini"),
        ("gpt-4o-mini", "llama-local"),
        ("llama-local", "gpt-4o-mini"),
    ],
    ids=["blocked-then-allowed", "two-allowed", "two-allowed-reversed"],
)
async def test_i6_duplicate_model_the_one_checked_is_the_one_sent_shown_and_recorded(
    app: App, first: str, second: str
) -> None:
    raw = f'{{"model": "{first}", "model": "{second}", {MESSAGES}}}'.encode()
    response = await app.http.post(CHAT, content=raw, headers=JSON_HEADERS)
    assert response.status_code == 200, response.text
    upstream_model, channel = SERVED[second]
    [sent] = app.fake.requests
    assert sent.json["model"] == upstream_model
    assert response.headers["X-Privacy-Channel"] == channel
    assert response.headers["X-Privacy-Decision"] == "allowed"
    assert response.json()["privacy"]["model"] == second
    [event] = app.audit.events
    assert (event.requested_model, event.served_model, event.channel) == (second, second, channel)


@in_module_loop
async def test_i6_duplicate_model_allowed_then_blocked_is_blocked(app: App, audit: MemoryAuditSink) -> None:
    raw = f'{{"model": "gpt-4o-mini", "model": "gemini-flash-free", {MESSAGES}}}'.encode()
    response = await app.http.post(CHAT, content=raw, headers=JSON_HEADERS)
    error_of(response, 403, "no_compliant_deployment")
    assert response.headers["X-Privacy-Channel"] == "google.gemini_api_free"
    no_upstream(app)
    [event] = app.audit.events
    assert (event.requested_model, event.decision) == ("gemini-flash-free", "blocked")


@in_module_loop
@pytest.mark.parametrize("last", [False, True])
async def test_i6_duplicate_stream_the_last_one_decides_both_sides(app: App, last: bool) -> None:
    first = json.dumps(not last)
    raw = f'{{"model": "gpt-4o-mini", {MESSAGES}, "stream": {first}, "stream": {json.dumps(last)}}}'.encode()
    response = await app.http.post(CHAT, content=raw, headers=JSON_HEADERS)
    assert response.status_code == 200
    [sent] = app.fake.requests
    assert bool(sent.json.get("stream")) is last
    if last:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert sse_json(response.text)[0]["privacy"]["decision"] == "allowed"
    else:
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["choices"]


@in_module_loop
@pytest.mark.parametrize(
    ("strict", "loose"),
    [
        ('"privacy": {"policy": ["zero-retention"]}', '"privacy": {"policy": []}'),
        ('"provider": {"zdr": true}', '"provider": {"zdr": false}'),
    ],
    ids=["privacy", "provider"],
)
@pytest.mark.parametrize("strict_last", [False, True])
async def test_i6_duplicate_privacy_asks_the_last_one_is_the_policy_checked_and_shown(
    app: App, strict: str, loose: str, strict_last: bool
) -> None:
    pair = f"{loose}, {strict}" if strict_last else f"{strict}, {loose}"
    response = await app.http.post(CHAT, content=_with(pair), headers=JSON_HEADERS)
    policy = [p.strip() for p in response.headers["X-Privacy-Policy"].split(",")]
    if strict_last:  # OpenAI's API has no zero-retention agreement in the demo: rerouted (reroute_to)
        assert response.headers["X-Privacy-Decision"] == "rerouted", response.text
        assert response.headers["X-Privacy-Channel"] == "self_hosted.vllm"
        assert "zero-retention" in policy
    else:
        assert response.status_code == 200, response.text
        assert "zero-retention" not in policy
        assert len(app.fake.requests) == 1


# -- I8: model names ------------------------------------------------------------------------------
ODD_MODELS = [
    "%2e%2e%2f",
    "%2e%2e%2fgpt-4o-mini",
    "a?api-version=1",
    "gpt-4o-mini?api-version=2024-01-01",
    "#",
    "gpt-4o-mini#fragment",
    "gpt-4\u043e-mini",  # a Cyrillic o
    "gpt\u20114o-mini",  # a non-breaking hyphen
    "gpt-4o-mini\r\nX-Injected: 1",
    "gpt-4o-mini\n",
    "gpt-4o-mini\x00",
    "openai/gpt-4o-mini",
    "x" * 256,
    "x" * 10_000,
]
ODD_IDS = [
    "percent-dot-dot",
    "percent-dot-dot-model",
    "query",
    "query-on-a-real-model",
    "hash",
    "fragment",
    "homoglyph",
    "nb-hyphen",
    "crlf",
    "newline",
    "nul",
    "provider-prefix",
    "256-chars",
    "10kb",
]


@in_module_loop
@pytest.mark.parametrize("model", ODD_MODELS, ids=ODD_IDS)
@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
async def test_i8_odd_model_names_are_refused_unreflected_and_never_sent(
    app: App, model: str, path: str
) -> None:
    body = chat_body(model) if path == CHAT else {"model": model, "input": "hi"}
    response = await app.http.post(path, json=body, headers=AUTH)
    assert response.status_code in (400, 404), response.text
    error = error_of(response, response.status_code)
    assert error["param"] == "model"
    message = error["message"]
    assert "\r" not in message and "\n" not in message and "\x00" not in message
    assert len(model) <= 64 or model[:65] not in message  # at most 64 characters of it, as a repr
    assert "X-Injected" not in response.headers
    no_upstream(app)


@in_module_loop
@pytest.mark.parametrize(
    "model", ["%2e%2e%2f", "..%2fadmin", "a%3Fapi-version=1", "gpt-4%D0%BE-mini", "x" * 10_000]
)
async def test_i8_odd_model_ids_in_the_path_are_404(app: App, model: str) -> None:
    response = await app.http.get(f"/v1/models/{model}", headers=AUTH)
    error = error_of(response, 404)
    assert model[:65] not in error["message"]
    no_upstream(app)


# -- I10: counts ----------------------------------------------------------------------------------
def _tools(count: int) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": f"f{i}", "parameters": {}}} for i in range(count)]


@in_module_loop
@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, chat_body() | {"messages": [{"role": "user", "content": "x"}] * 100_000}, "messages"),
        (CHAT, chat_body(tools=_tools(513)), "tools"),
        (CHAT, chat_body(functions=[{"name": f"f{i}"} for i in range(513)]), "functions"),
        (CHAT, chat_body(stop=["s"] * 17), "stop"),
        (CHAT, chat_body(stop=5), "stop"),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": ["x"] * 2049}, "input"),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": [[1, 2]] * 2049}, "input"),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": [["a"]]}, "input"),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": [1, [2]]}, "input"),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": [True]}, "input"),
    ],
    ids=[
        "100k-messages",
        "513-tools",
        "513-functions",
        "17-stop-sequences",
        "stop-not-a-list",
        "2049-inputs",
        "2049-token-arrays",
        "nested-strings",
        "mixed-token-shapes",
        "booleans-as-tokens",
    ],
)
async def test_i10_too_many_items_are_refused_before_any_upstream_call(
    app: App, path: str, body: dict[str, Any], param: str
) -> None:
    response = await app.http.post(path, json=body, headers=AUTH)
    error = error_of(response, 400, "invalid_value")
    assert error["param"] == param
    no_upstream(app)


@in_module_loop
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, chat_body(tools=_tools(512))),
        (CHAT, chat_body(stop=["s"] * 16)),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": ["x"] * 2048}),
        (EMBEDDINGS, {"model": "text-embedding-3-small", "input": [1, 2, 3] * 3000}),
    ],
    ids=["512-tools", "16-stop-sequences", "2048-inputs", "one-long-token-array"],
)
async def test_i10_at_the_caps_requests_pass(app: App, path: str, body: dict[str, Any]) -> None:
    response = await app.http.post(path, json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert len(app.fake.requests) == 1
