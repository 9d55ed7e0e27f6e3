"""Slowloris (checklist item 18 and L3), against a real `sluice demo` process with short deadlines.

Headers that trickle in are cut at `SLUICE_HEADER_TIMEOUT` however steadily the bytes come (408
if part of a request arrived, a bare close if nothing did), on a fresh connection and on a
keep-alive one; a body that trickles in gets a 408 at `SLUICE_BODY_TIMEOUT`, before any upstream
call, and gives its slot of the in-flight cap back; no deadline cuts a response, not even for a
request pipelined behind it; hundreds of trickling connections leave legitimate requests
unharmed. The fake upstream runs in this process, so its records are ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from tests.conftest import AUTH, chat_body
from tests.gateway.support import demo_env, error_of, free_port, start_demo, stop_process, wait_healthy

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 1
BODY_TIMEOUT = 1
TRICKLE_EVERY = 0.1  # seconds between trickled pieces: far below either timeout
BOUND = 20.0  # seconds: a bound on waiting, never an expectation
CHAT_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@dataclass
class Server:
    port: int
    root: str
    fake: FakeUpstream


@contextlib.contextmanager
def running_demo(tmp: Path, **settings: str) -> Iterator[Server]:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    env = demo_env(tmp, **settings)
    log = tmp / "demo.log"
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=env, upstream=fake.url)
        try:
            wait_healthy(proc, root, log)
            yield Server(port, root, fake)
        finally:
            stop_process(proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("slowloris")
    with running_demo(tmp, header_timeout=str(HEADER_TIMEOUT), body_timeout=str(BODY_TIMEOUT)) as server:
        yield server


# -- raw HTTP over a socket -----------------------------------------------------------------------
def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=BOUND)


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def trickle(sock: socket.socket, piece: bytes) -> tuple[int, bytes]:
    """Send `piece` every TRICKLE_EVERY s until the server answers or closes; (pieces sent, all read)."""
    sent = 0
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], TRICKLE_EVERY)
        if readable:
            return sent, read_to_eof(sock)
        try:
            sock.sendall(piece)
        except OSError:  # closed between select and send
            return sent, read_to_eof(sock)
        sent += 1
    raise AssertionError(f"the server let a connection trickle for {BOUND} s")


def read_response(sock: socket.socket) -> httpx.Response:
    """One response with a Content-Length, leaving the connection open."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    length = int(as_response(raw).headers["content-length"])
    while len(raw.partition(b"\r\n\r\n")[2]) < length:
        raw += sock.recv(65536)
    return as_response(raw)


def as_response(raw: bytes) -> httpx.Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in lines)]
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


def timed_out(raw: bytes) -> httpx.Response:
    """Assert a 408 `request_timeout` in the OpenAI envelope that closes the connection."""
    response = as_response(raw)
    error_of(response, 408, "request_timeout")
    assert response.headers["connection"] == "close"
    return response


# -- headers ----------------------------------------------------------------------------------------
def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    with connect(server) as sock:
        assert read_to_eof(sock) == b""


def test_headers_trickling_in_are_cut_at_the_header_timeout(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(CHAT_HEAD)
        sent, raw = trickle(sock, b"X-Slow: 1\r\n")
    assert sent >= 3, "bytes kept arriving, so an idle timeout would never have fired"
    error = error_of(timed_out(raw), 408, "request_timeout")
    assert "headers" in error["message"]


def test_the_next_request_on_a_keep_alive_connection_has_a_header_deadline_too(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock).status_code == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        sent, raw = trickle(sock, b"X-Slow: 1\r\n")
    assert sent >= 3
    timed_out(raw)


def test_a_response_outlasting_every_deadline_is_not_cut(server: Server) -> None:
    """The deadlines cover receiving a request only: a 3 s stream outlives both deadlines."""
    body = chat_body(content="[[fake:chunks=20,chunk_delay_ms=150]]", stream=True)
    with (
        httpx.Client(base_url=server.root, headers=AUTH, timeout=BOUND) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert response.status_code == 200
    assert events[-1] == "data: [DONE]"
    assert sum('"content"' in event for event in events) >= 19
    assert not any('"error"' in event for event in events)


def test_a_request_pipelined_behind_a_running_response_does_not_cut_it(server: Server) -> None:
    """uvicorn stops reading while a response runs: the next request's deadline waits for it."""
    body = json.dumps(chat_body(content="[[fake:chunks=20,chunk_delay_ms=150]]", stream=True)).encode()
    stream = (
        CHAT_HEAD
        + (
            f"Authorization: {AUTH['authorization']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
    )
    with connect(server) as sock:
        sock.sendall(stream + body + b"GET /healthz HTTP/1.1\r\n")  # and the rest never comes
        raw = read_to_eof(sock)
    first, _, late = raw.rpartition(b"HTTP/1.1 408 ")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert first.count(b'"content"') >= 19 and b"data: [DONE]" in first
    timed_out(b"HTTP/1.1 408 " + late)


# -- body -------------------------------------------------------------------------------------------
def _body_head(length: int) -> bytes:
    return (
        CHAT_HEAD
        + f"Authorization: {AUTH['authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
        + b'{"model": "gpt-4o-mini", "messages": ['
    )


def test_a_body_trickling_in_gets_408_before_any_upstream_call(server: Server) -> None:
    server.fake.reset()
    with connect(server) as sock:
        sock.sendall(_body_head(100_000))
        sent, raw = trickle(sock, b" ")  # JSON whitespace: valid, endless
    assert sent >= 3
    response = timed_out(raw)
    assert response.headers["x-request-id"]
    assert "body" in error_of(response, 408)["message"]
    assert server.fake.requests == []


def test_the_rest_of_a_body_after_an_early_answer_cannot_keep_the_connection(server: Server) -> None:
    """A 401 goes out before the body is read; the rest of the body is cut at the body deadline."""
    with connect(server) as sock:
        sock.sendall(_body_head(100_000).replace(b"Authorization", b"X-Not-Authorization"))
        assert read_response(sock).status_code == 401
        sent, rest = trickle(sock, b" ")
    assert sent >= 3
    assert rest == b""  # nothing to answer: the request was answered already


def test_a_trickling_body_holds_its_slot_of_the_cap_only_until_the_body_timeout(tmp_path: Path) -> None:
    served = 0

    def post_until(wanted: int) -> None:
        nonlocal served
        deadline = time.monotonic() + BOUND
        while (status := http.post("/v1/chat/completions", json=chat_body()).status_code) != wanted:
            served += status == 200
            assert status in (200, 429), status
            assert time.monotonic() < deadline, f"never got a {wanted}"
            time.sleep(0.05)
        served += status == 200

    with (
        running_demo(tmp_path, max_concurrency="1", body_timeout="2") as server,
        httpx.Client(base_url=server.root, headers=AUTH, timeout=BOUND) as http,
        connect(server) as slow,
    ):
        slow.sendall(_body_head(100_000))  # then silence: Sluice waits for the rest in the one slot
        post_until(429)  # the slow body holds the slot
        assert timed_out(read_to_eof(slow)).headers["x-request-id"]  # the hot path's own answer
        post_until(200)  # and gave it back
        assert len(server.fake.requests) == served  # the slow body never went upstream


# -- L3: many trickling connections, legitimate traffic alongside ------------------------------------
TRICKLERS = 500
LEGIT_CLIENTS = 8
ATTACK = 5.0  # seconds of legitimate traffic under attack


@dataclass
class Attack:
    opened: int = 0
    cut: int = 0
    answered_408: int = 0


async def _trickler(port: int, stop: asyncio.Event, attack: Attack) -> None:
    """Slowloris: open a connection, send a header line every 0.5 s, reconnect when cut."""
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        attack.opened += 1
        writer.write(CHAT_HEAD)
        try:
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(65536), 0.5)
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")
                    continue
                attack.cut += 1
                attack.answered_408 += data.startswith(b"HTTP/1.1 408 ")
                break
        except ConnectionError:
            attack.cut += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _legit(http: httpx.AsyncClient, stop: asyncio.Event, outcomes: list[bool]) -> None:
    while not stop.is_set():
        try:
            response = await http.post("/v1/chat/completions", json=chat_body())
            ok = response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])
        except (httpx.HTTPError, json.JSONDecodeError):
            ok = False
        outcomes.append(ok)


async def test_hundreds_of_trickling_connections_leave_legitimate_requests_unharmed(server: Server) -> None:
    stop = asyncio.Event()
    attack = Attack()
    outcomes: list[bool] = []
    tricklers = [asyncio.create_task(_trickler(server.port, stop, attack)) for _ in range(TRICKLERS)]
    # A fresh connection per legitimate request: new clients must get in while the attack goes on.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.root, headers=AUTH, timeout=BOUND, limits=limits) as http:
        for _ in range(int(BOUND / 0.05)):
            if attack.opened >= TRICKLERS:
                break
            await asyncio.sleep(0.05)
        legit = [asyncio.create_task(_legit(http, stop, outcomes)) for _ in range(LEGIT_CLIENTS)]
        await asyncio.sleep(ATTACK)
        stop.set()
        await asyncio.gather(*legit, *tricklers)
    assert attack.opened >= TRICKLERS
    assert attack.cut >= TRICKLERS, f"trickling connections were not cut: {attack}"
    assert attack.answered_408 > 0
    assert len(outcomes) >= 50, len(outcomes)
    assert sum(outcomes) / len(outcomes) >= 0.99, f"{outcomes.count(False)} of {len(outcomes)} failed"
