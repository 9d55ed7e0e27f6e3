"""SIGTERM (L5): in-flight streams finish, new connections are refused, and a new request on a
connection that was already open is refused too (closed, or answered with `connection: close`),
never left hanging. Against a real `sluice demo` process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from sluice_fakes.fake_upstream import FakeUpstream

from tests.conftest import AUTH, DEMO_KEY, chat_body
from tests.gateway.support import free_port, start_demo, stop_process, wait_healthy

CHUNKS = 20


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


@contextmanager
def _demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """A healthy `sluice demo` in front of a fake upstream: (process, port, log)."""
    port = free_port()
    log = tmp_path / "demo.log"
    env = {
        **os.environ,
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(tmp_path / "audit.spool"),
    }
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=env, upstream=fake.url)
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}", log)
            yield proc, port, log
        finally:
            stop_process(proc)


def _wait_refused(port: int) -> None:
    """Until the server stops accepting connections: it has begun its shutdown (bounded)."""
    deadline = time.monotonic() + 10
    while not _refused(port):
        assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
        time.sleep(0.05)


def _assert_complete(lines: list[str]) -> None:
    events = [line for line in lines if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]", events[-3:]
    assert not any('"error"' in e for e in events)
    assert sum('"content"' in e for e in events) >= CHUNKS - 1


def test_sigterm_drains_in_flight_streams_and_refuses_new_connections(tmp_path: Path) -> None:
    body = chat_body(content=f"[[fake:chunks={CHUNKS},chunk_delay_ms=150]]", stream=True)
    with (
        _demo(tmp_path) as (proc, port, log),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):
        with http.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert '"privacy"' in first
            proc.send_signal(signal.SIGTERM)  # mid-stream: about 3 s of it remain
            _wait_refused(port)
            rest = [line for line in lines if line.startswith("data: ")]
        # every content chunk arrived (the first may carry the role only)
        _assert_complete([first, *rest])
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in log.read_text()


def test_sigterm_lets_every_stream_in_flight_finish(tmp_path: Path) -> None:
    streams = 6
    body = chat_body(content=f"[[fake:chunks={CHUNKS},chunk_delay_ms=100]]", stream=True)
    with _demo(tmp_path) as (proc, port, log), ExitStack() as stack:
        http = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        responses = [
            stack.enter_context(http.stream("POST", "/v1/chat/completions", json=body, headers=AUTH))
            for _ in range(streams)
        ]
        readers = [response.iter_lines() for response in responses]
        seen = [[next(line for line in lines if line.startswith("data: "))] for lines in readers]
        assert all(response.status_code == 200 for response in responses)
        proc.send_signal(signal.SIGTERM)  # every stream has begun; about 2 s of each remain
        _wait_refused(port)
        for lines, first in zip(readers, seen, strict=True):
            _assert_complete(first + list(lines))
        stack.close()
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in log.read_text()


def _request(sock: socket.socket, raw: bytes) -> bytes:
    """Send `raw`, then read what comes back until the server closes the connection or one whole
    response has arrived; a server that leaves the request hanging fails the socket's timeout."""
    try:
        sock.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        return b""
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data
        head, sep, rest = received.partition(b"\r\n\r\n")
        if sep and (b"0\r\n\r\n" in rest or b"content-length: " + str(len(rest)).encode() in head.lower()):
            return received


def _refused_or_closing(answer: bytes) -> None:
    """Closed without an answer, or an answer that closes the connection: never a hang."""
    if answer:
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\nconnection: close" in head, head


def test_after_sigterm_an_open_keep_alive_connection_gets_no_new_work(tmp_path: Path) -> None:
    healthz = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    payload = json.dumps(chat_body(content=f"[[fake:chunks={CHUNKS},chunk_delay_ms=100]]", stream=True))
    stream = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"authorization: Bearer {DEMO_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n{payload}"
    ).encode()
    with (
        _demo(tmp_path) as (proc, port, _),
        socket.create_connection(("127.0.0.1", port), timeout=5) as idle,
        socket.create_connection(("127.0.0.1", port), timeout=5) as busy,
    ):
        first = _request(idle, healthz)
        assert first.startswith(b"HTTP/1.1 200 ") and b"connection: close" not in first.lower()
        busy.sendall(stream)
        started = b""
        while b"data: " not in started:
            started += busy.recv(65536)
        assert started.startswith(b"HTTP/1.1 200 ")
        proc.send_signal(signal.SIGTERM)  # the stream keeps the server draining for about 2 s
        _wait_refused(port)
        # An idle keep-alive connection: closed by the shutdown; a new request on it gets no work.
        _refused_or_closing(_request(idle, healthz))
        # The connection whose stream was in flight: the stream ends whole, then nothing more.
        rest = b""
        while not rest.endswith(b"0\r\n\r\n"):
            data = busy.recv(65536)
            assert data, "the stream was cut"
            rest += data
        assert b"data: [DONE]" in rest
        _refused_or_closing(_request(busy, healthz))
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
