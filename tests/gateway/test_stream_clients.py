"""Streams seen from the client's side (checklist T3 to T6), against a real `sluice demo` process.

One `sluice demo` (uvicorn on uvloop with Sluice's HTTP protocol: what `sluice serve` runs) sits in
front of a `FakeUpstream` running in a thread of this process, so the fake's records (when Sluice
opened an upstream call, and when it closed it) are on the test's clock. Clients are bare sockets
(the test chooses when to read and when to hang up), httpx, and the official `openai` SDK. The
ledger (the demo's SQLite file) must say what happened to every request.

The server runs with short deadlines so the file stays fast: a 1.5 s idle gap between upstream
chunks, a 2 s write deadline for clients that stop reading, and `*-impatient` model aliases whose
deployments wait 1.5 s for an answer. Faults ride in the prompt as `[[fake:...]]` markers.

No test asserts on how long anything took (DESIGN.md, Testing): they order events (the client
left, then Sluice closed the upstream call before the upstream finished its answer) and check who
ended a call (a deadline of the server, not the client's own timeout, which is longer than any of
them). The delays measured are printed for the record, not judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import openai
import pytest
import yaml
from sluice_fakes.fake_content import TRICKY_TEXT
from sluice_fakes.fake_state import RecordedRequest
from sluice_fakes.fake_upstream import FakeUpstream

from tests.conftest import AUTH, DEMO_CONFIG, DEMO_KEY, chat_body
from tests.gateway.support import (
    assert_badge_headers,
    demo_env,
    error_of,
    free_port,
    sse_events,
    start_demo,
    stop_process,
    wait_healthy,
)
from tests.helpers import wait_until
from tests.scrape import parse

pytestmark = pytest.mark.e2e

IDLE_TIMEOUT = 1.5  # SLUICE_STREAM_IDLE_TIMEOUT of the server under test
WRITE_TIMEOUT = 2.0  # SLUICE_CLIENT_WRITE_TIMEOUT
IMPATIENT = 1.5  # the read timeout of the *-impatient deployments
# The clients' own timeout: longer than every deadline of the server under test, shorter than the
# defaults those deadlines replace (120 s read timeout), so only the server's deadline can end a call.
CLIENT_TIMEOUT = 60.0
# A stream far larger than anything Sluice may hold for one client: about 33 MB of SSE.
LONG_STREAM = "chunks=150000"
RSS_GROWTH_LIMIT = 16 * 1024 * 1024
WIRES = {
    "gpt-4o-mini": "openai.api",
    "claude-sonnet": "anthropic.api",
    "gemini-flash": "google.gemini_api_paid",
}


@dataclass
class Gateway:
    root: str
    port: int
    pid: int
    fake: FakeUpstream
    database: Path


def impatient_config(tmp: Path) -> Path:
    """config/demo.yaml plus a `<model>-impatient` alias of each wire, whose deployment waits 1.5 s."""
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    by_name = {m["name"]: m for m in config["models"]}
    for name in WIRES:
        [deployment] = by_name[name]["deployments"]
        config["models"].append(
            {"name": f"{name}-impatient", "deployments": [{**deployment, "timeout": IMPATIENT}]}
        )
    path = tmp / "demo-impatient.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("stream-clients")
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    log = tmp / "demo.log"
    env = demo_env(
        tmp,
        stream_idle_timeout=str(IDLE_TIMEOUT),
        client_write_timeout=str(WRITE_TIMEOUT),
        breaker_failures="1000",  # the faults below must never open a circuit for the next test
        metrics_public="true",
    )
    with FakeUpstream.in_thread() as fake, log.open("w") as sink:
        proc = start_demo(port, sink, env=env, upstream=fake.url, config=impatient_config(tmp))
        try:
            wait_healthy(proc, root, log)
            # litellm is imported in the background at start-up; a translated call waits for it.
            warm = httpx.post(
                f"{root}/v1/chat/completions", json=chat_body("claude-sonnet"), headers=AUTH, timeout=120
            )
            assert warm.status_code == 200, warm.text
            gateway = Gateway(root, port, proc.pid, fake, tmp / "sluice.db")
            record_of(gateway, warm.headers["x-request-id"])  # the ledger is written and readable
            yield gateway
        finally:
            code = stop_process(proc)
    assert code in (0, -signal.SIGTERM), f"sluice demo exited with {code}: {log.read_text()[-3000:]}"


# -- helpers ----------------------------------------------------------------------------------------
class RawStream:
    """A streamed chat request on a bare socket: the test decides when to read and when to hang up."""

    def __init__(self, port: int, body: dict[str, Any], *, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        payload = json.dumps(body).encode()
        self.sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (DEMO_KEY.encode(), len(payload))
            + payload
        )
        self.received = b""

    def __enter__(self) -> RawStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.sock.close()

    def read_until(self, marker: bytes, count: int = 1) -> None:
        while self.received.count(marker) < count:
            data = self.sock.recv(65536)
            assert data, f"the connection ended before {marker!r}: {self.received[-500:]!r}"
            self.received += data

    def head(self) -> tuple[int, dict[str, str]]:
        self.read_until(b"\r\n\r\n")
        status_line, *lines = self.received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split(" ")[1]), headers

    def hang_up(self) -> float:
        """Close the socket now; the moment just before it closed, on the fake upstream's clock.

        Read before the close: Sluice (another process) may see the hang-up and close its upstream
        call before this thread runs again, so a clock read after the close can come too late."""
        left = time.time()
        self.sock.close()
        return left


def stream_body(model: str, tag: str, directives: str) -> dict[str, Any]:
    return chat_body(model, content=f"{tag} [[fake:{directives}]]", stream=True)


def new_tag() -> str:
    return f"tag-{uuid.uuid4().hex}"


def upstream_call(fake: FakeUpstream, tag: str) -> RecordedRequest:
    """The fake's record of the one upstream call whose prompt carries `tag`."""

    def find() -> RecordedRequest | None:
        return next((r for r in fake.requests if tag.encode() in r.body), None)

    found: RecordedRequest = wait_until(find, f"the upstream call {tag}")
    return found


def closed_by_sluice(fake: FakeUpstream, tag: str, *, timeout: float = 30.0) -> float:
    """When Sluice closed the upstream call carrying `tag` (waits for it, bounded); fails at once if
    Sluice instead read the upstream's answer to its end."""
    record = upstream_call(fake, tag)
    wait_until(
        lambda: record.client_closed_at or record.completed, f"upstream call {tag} to end", timeout=timeout
    )
    assert not record.completed, f"Sluice read the whole upstream answer of {tag} instead of closing it"
    assert record.client_closed_at is not None
    return record.client_closed_at


def ledger(gateway: Gateway, where: str = "1", *params: object) -> list[dict[str, Any]]:
    """Audit records of the demo's ledger (its SQLite file, read as the CLI reads it)."""
    columns = "id, request_id, status, stream, client_cancelled, error_code, channel"
    with contextlib.closing(sqlite3.connect(gateway.database, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(f"SELECT {columns} FROM audit_events WHERE {where} ORDER BY id", params)  # noqa: S608
        return [dict(row) for row in rows]


def cancelled_record(gateway: Gateway, after: int, channel: str) -> dict[str, Any]:
    """The one record of a request cancelled before its answer started (status 499), after id `after`."""
    where = "id > ? AND status = 499 AND channel = ?"
    rows = wait_until(
        lambda: ledger(gateway, where, after, channel), "the ledger record of the cancelled call"
    )
    [row] = rows
    return row


def last_record_id(gateway: Gateway) -> int:
    rows = ledger(gateway)
    return int(rows[-1]["id"]) if rows else 0


def record_of(gateway: Gateway, request_id: str) -> dict[str, Any]:
    rows = wait_until(
        lambda: ledger(gateway, "request_id = ?", request_id), f"the ledger record {request_id}"
    )
    [row] = rows
    return row


def in_flight(gateway: Gateway) -> float:
    scrape = parse(httpx.get(f"{gateway.root}/metrics", timeout=30).text)
    assert scrape.types.get("sluice_requests_in_flight") == "gauge", scrape.text[:500]
    return scrape.value("sluice_requests_in_flight")


def vm_rss(pid: int) -> int:
    """The resident set of process `pid`, in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def content_of(events: list[dict[str, Any]]) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for event in events
        for choice in event.get("choices", [])
    )


# -- T4: the client hangs up mid-stream ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "directives"),
    [
        pytest.param("gpt-4o-mini", "chunks=400,chunk_delay_ms=50", id="openai-trickling"),
        # An upstream that sends as fast as it can: the relay always has bytes buffered.
        pytest.param("gpt-4o-mini", LONG_STREAM, id="openai-flooding"),
        pytest.param("claude-sonnet", "chunks=400,chunk_delay_ms=50", id="litellm-trickling"),
    ],
)
def test_t4_client_leaving_mid_stream_closes_the_upstream(
    gateway: Gateway, model: str, directives: str
) -> None:
    tag = new_tag()
    with RawStream(gateway.port, stream_body(model, tag, directives)) as client:
        status, headers = client.head()
        assert status == 200
        assert headers["content-type"].startswith("text/event-stream")
        client.read_until(b'"content":', count=3)  # well into the stream
        left = client.hang_up()
    closed = closed_by_sluice(gateway.fake, tag)  # closed by Sluice, before the upstream finished
    assert left <= closed, "the upstream call was closed before the client left"
    delay = closed - left
    row = record_of(gateway, headers["x-request-id"])
    assert row["client_cancelled"] == 1 and row["stream"] == 1, row
    assert row["channel"] == WIRES[model]
    wait_until(lambda: in_flight(gateway) == 0, "the in-flight gauge to drop")
    print(f"T4 {model} {directives}: upstream closed {delay * 1000:.1f} ms after the hang-up")


# -- T5: the client hangs up before the first token -----------------------------------------------------
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
@pytest.mark.parametrize(
    "directives",
    [
        pytest.param("delay_ms=20000", id="before-headers"),
        pytest.param("stall_after=0", id="headers-but-no-chunk"),
    ],
)
def test_t5_client_leaving_before_the_first_token_cancels_the_upstream(
    gateway: Gateway, model: str, directives: str
) -> None:
    before = last_record_id(gateway)
    tag = new_tag()
    with RawStream(gateway.port, stream_body(model, tag, directives)) as client:
        # The upstream has the whole request (with `stall_after=0` it then sends its head at once,
        # and nothing more); no token has come back.
        upstream_call(gateway.fake, tag)
        left = client.hang_up()
    closed = closed_by_sluice(gateway.fake, tag)  # closed by Sluice, before the upstream answered
    assert left <= closed, "the upstream call was closed before the client left"
    delay = closed - left
    row = cancelled_record(gateway, before, WIRES[model])
    assert (row["client_cancelled"], row["stream"]) == (1, 1), row
    print(f"T5 {model} {directives}: upstream closed {delay * 1000:.1f} ms after the hang-up")


# -- T3: the upstream stalls -----------------------------------------------------------------------------
# How many upstream frames get past the first content chunk of each wire (Anthropic's stream opens
# with message_start, content_block_start and ping frames that carry no content).
MID_STREAM = {"gpt-4o-mini": 3, "claude-sonnet": 6, "gemini-flash": 2}


async def test_t3_a_stall_mid_stream_ends_with_an_error_event_then_done_on_every_wire(
    gateway: Gateway,
) -> None:
    async def one(http: httpx.AsyncClient, model: str) -> None:
        tag = new_tag()
        body = stream_body(model, tag, f"stall_after={MID_STREAM[model]}")
        response = await http.post("/v1/chat/completions", json=body, headers=AUTH)
        assert response.status_code == 200, (model, response.text)
        assert_badge_headers(response.headers, "allowed")
        events = sse_events(response.text)
        assert events[-1] == "[DONE]", (model, events[-3:])
        chunks = [json.loads(e) for e in events[:-1]]
        assert content_of(chunks), f"{model}: the stream should have started before the stall"
        error = chunks[-1].get("error")
        assert error and error["type"] == "upstream_error", (model, chunks[-1])
        assert not any(c.get("finish_reason") for chunk in chunks for c in chunk.get("choices", []))
        # The idle deadline ended it: the upstream never ends a stalled stream, and the client's
        # timeout (CLIENT_TIMEOUT) would have raised first.
        await asyncio.to_thread(closed_by_sluice, gateway.fake, tag)
        row = await asyncio.to_thread(record_of, gateway, response.headers["x-request-id"])
        assert (row["status"], row["error_code"], row["channel"]) == (
            502,
            "upstream_unavailable",
            WIRES[model],
        )

    async with httpx.AsyncClient(base_url=gateway.root, timeout=CLIENT_TIMEOUT) as http:
        await asyncio.gather(*(one(http, model) for model in WIRES))


async def test_t3_a_stall_after_the_headers_before_the_first_chunk_is_a_504(gateway: Gateway) -> None:
    async def one(http: httpx.AsyncClient, model: str) -> None:
        tag = new_tag()
        body = stream_body(f"{model}-impatient", tag, "stall_after=0")
        # The deployment's own read timeout (IMPATIENT) ends it: the client's is far longer.
        response = await http.post("/v1/chat/completions", json=body, headers=AUTH)
        error_of(response, 504, "upstream_timeout")  # a real status, not a 200 with an error inside
        assert not response.headers["content-type"].startswith("text/event-stream")
        assert_badge_headers(response.headers, "allowed")
        await asyncio.to_thread(closed_by_sluice, gateway.fake, tag)
        row = await asyncio.to_thread(record_of, gateway, response.headers["x-request-id"])
        assert (row["status"], row["error_code"], row["channel"]) == (504, "upstream_timeout", WIRES[model])

    async with httpx.AsyncClient(base_url=gateway.root, timeout=CLIENT_TIMEOUT) as http:
        await asyncio.gather(*(one(http, model) for model in WIRES))


# -- T6: re-framing, and a client that does not read ---------------------------------------------------
@pytest.mark.parametrize("model", list(WIRES))
@pytest.mark.parametrize("split", [1, 7])
async def test_t6_content_split_across_upstream_chunks_arrives_exactly_as_sent(
    gateway: Gateway, model: str, split: int
) -> None:
    """Blank lines, `data: [DONE]`, `event:` and 2-, 3- and 4-byte characters in the content, the
    upstream writing its stream `split` bytes per HTTP chunk (so characters and frames are cut)."""
    tag = new_tag()
    body = stream_body(model, tag, f"tricky,split_bytes={split}")
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.root}/v1", api_key=DEMO_KEY, max_retries=0, timeout=60
    ) as sdk:
        stream = await sdk.chat.completions.create(model=model, messages=body["messages"], stream=True)
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(pieces) == TRICKY_TEXT, (model, split, pieces)
    assert f"split_bytes={split}" in upstream_call(gateway.fake, tag).directives

    async with (
        httpx.AsyncClient(base_url=gateway.root, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response,
    ):
        assert response.status_code == 200
        raw = await response.aread()
    text = raw.decode("utf-8")  # strict: a character mangled on the way (or cut and not rejoined) fails
    assert text.endswith("\n\n")
    frames = text[:-2].split("\n\n")  # SSE framing: events end at a blank line
    assert all(f.startswith("data: ") and "\n" not in f for f in frames), frames
    assert frames[-1] == "data: [DONE]" and frames.count("data: [DONE]") == 1
    events = [json.loads(f[len("data: ") :]) for f in frames[:-1]]
    assert not any("error" in e for e in events)
    assert content_of(events) == TRICKY_TEXT


def test_t6_a_client_reading_one_byte_a_second_is_back_pressured_then_cut_with_flat_memory(
    gateway: Gateway,
) -> None:
    """The upstream offers ~33 MB at once; the client reads one byte a second through a tiny
    receive window. Sluice must neither buffer the stream (RSS flat) nor hold the connection for
    ever: the upstream waits (back-pressure), then the write deadline cuts the client, the
    upstream call is closed and the ledger says client_cancelled."""
    tag = new_tag()
    baseline = vm_rss(gateway.pid)
    peak = baseline
    with RawStream(gateway.port, stream_body("gpt-4o-mini", tag, LONG_STREAM), receive_buffer=4096) as client:
        status, headers = client.head()
        assert status == 200
        started = time.time()
        cut_seen: float | None = None
        # A reset (or a close) shows at once as an event on the socket; the bytes already in the
        # receive buffer would take the reader hours to get through.
        events = select.poll()
        events.register(client.sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
        client.sock.settimeout(0.1)
        next_read = started + 1.0
        while cut_seen is None and time.time() - started < 30:
            peak = max(peak, vm_rss(gateway.pid))
            if events.poll(0):
                cut_seen = time.time()
            elif time.time() >= next_read:
                next_read += 1.0
                with contextlib.suppress(TimeoutError):
                    client.sock.recv(1)  # one byte a second
            else:
                time.sleep(0.05)
        assert cut_seen is not None, "Sluice held the connection of a client that does not read"
    closed = closed_by_sluice(gateway.fake, tag)
    held = closed - started
    growth = peak - baseline
    record = upstream_call(gateway.fake, tag)
    assert not record.completed, "the upstream sent its whole answer: Sluice read it into memory"
    assert started <= closed, "the upstream call was closed before the client began to stall"
    assert growth < RSS_GROWTH_LIMIT, f"Sluice's RSS grew by {growth / 2**20:.1f} MiB for one stalled stream"
    row = record_of(gateway, headers["x-request-id"])
    assert row["client_cancelled"] == 1 and row["stream"] == 1, row
    wait_until(lambda: in_flight(gateway) == 0, "the in-flight gauge to drop")
    print(
        f"T6 slow reader: reset seen by the client after {cut_seen - started:.2f} s, upstream closed after"
        f" {held:.2f} s (write deadline {WRITE_TIMEOUT} s);"
        f" RSS {baseline / 2**20:.1f} MiB -> peak {peak / 2**20:.1f} MiB (+{growth / 2**20:.2f} MiB)"
        " while the upstream offered ~33 MB"
    )
