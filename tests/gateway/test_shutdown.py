"""SIGTERM: in-flight streams finish, new connections are refused. Against a real `sluice demo` process."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx

from gateway.testing.fake_upstream import FakeUpstream
from tests.conftest import AUTH, chat_body
from tests.gateway.support import free_port, start_demo, stop_process, wait_healthy

CHUNKS = 20


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def test_sigterm_drains_in_flight_streams_and_refuses_new_connections(tmp_path: Path) -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    log = tmp_path / "demo.log"
    env = {
        **os.environ,
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(tmp_path / "audit.spool"),
    }
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=env, upstream=fake.url)
        try:
            wait_healthy(proc, root, log)
            body = chat_body(content=f"[[fake:chunks={CHUNKS},chunk_delay_ms=150]]", stream=True)
            with (
                httpx.Client(base_url=root, timeout=60) as http,
                http.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response,
            ):
                assert response.status_code == 200
                lines = response.iter_lines()
                first = next(line for line in lines if line.startswith("data: "))
                assert '"privacy"' in first
                proc.send_signal(signal.SIGTERM)  # mid-stream: about 3 s of it remain
                deadline = time.monotonic() + 10
                while not _refused(port):
                    assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
                    time.sleep(0.05)
                rest = [line for line in lines if line.startswith("data: ")]
            assert rest[-1] == "data: [DONE]"
            assert not any('"error"' in line for line in rest)
            contents = [line for line in [first, *rest] if '"content"' in line]
            assert (
                len(contents) >= CHUNKS - 1
            )  # every content chunk arrived (the first may carry the role only)
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
            assert "Application shutdown complete" in log.read_text()
        finally:
            stop_process(proc)
