"""The client side of scripts/load.py: a bare HTTP/1.1 connection, answers judged, GET /metrics read back.

What belongs here: `Connection` (one keep-alive connection to 127.0.0.1 that can send a request
and read its answer separately, so a burst writes every request before reading any, and records
when the request left, when the answer's head arrived and when it ended); `stream_ok` (is a stream
complete); `Scrape` (the samples of one `GET /metrics`, and quantiles of a histogram between two
scrapes); `warm_up`; and the small report helpers every subcommand shares. Standard library only,
plus `bench.loadgen`'s header parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import parse_headers
from scripts.demo_stack import HOST, KEY, chat_body, pct

CHAT = "/v1/chat/completions"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$")


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    sent: float  # time.perf_counter() when the request was written
    head: float  # ... when the status line and headers had arrived
    done: float  # ... when the body had arrived
    keep_alive: bool

    @property
    def head_ms(self) -> float:
        return (self.head - self.sent) * 1000

    @property
    def total_ms(self) -> float:
        return (self.done - self.sent) * 1000

    def events(self) -> list[str]:
        """The SSE `data:` lines of a stream."""
        return [line for line in self.body.decode(errors="replace").split("\n") if line.startswith("data: ")]

    def error(self) -> dict[str, Any] | None:
        """The OpenAI error envelope's `error` object, or None when the body is not one."""
        try:
            body = json.loads(self.body)
        except ValueError:
            return None
        error = body.get("error") if isinstance(body, dict) else None
        return error if isinstance(error, dict) else None


def stream_ok(reply: Reply, chunks: int) -> str | None:
    """None for a complete stream (every chunk, `finish_reason: stop`, then `[DONE]`, no error event);
    else what is wrong with it."""
    events = reply.events()
    if reply.status != 200:
        return f"status {reply.status}"
    if not events or events[-1] != "data: [DONE]":
        return f"no [DONE] (last event {events[-1:]!r})"
    if any('"error"' in e for e in events):
        return "an error event"
    contents = sum('"content"' in e for e in events)
    if contents < chunks - 1 or not any('"finish_reason":"stop"' in e for e in events):
        return "truncated without an error"
    return None


def request_bytes(method: str, path: str, port: int, body: dict[str, Any] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {HOST}:{port}", f"authorization: Bearer {KEY}"]
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        lines += ["content-type: application/json", f"content-length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Connection:
    """One keep-alive HTTP/1.1 connection to Sluice on 127.0.0.1."""

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.port = port
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(port, reader, writer)

    def send(self, raw: bytes) -> float:
        """Write a whole request (no await: a burst writes all of its requests first)."""
        sent = time.perf_counter()
        self.writer.write(raw)
        return sent

    async def receive(self, sent: float) -> Reply:
        head = await self.reader.readuntil(b"\r\n\r\n")
        head_at = time.perf_counter()
        status_line, _, block = head[:-4].partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers = parse_headers(block)
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts: list[bytes] = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        keep = headers.get(b"connection", b"").lower() != b"close"
        return Reply(status, headers, body, sent, head_at, time.perf_counter(), keep)

    async def send_and_receive(self, raw: bytes) -> Reply:
        return await self.receive(self.send(raw))

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        return await self.send_and_receive(request_bytes(method, path, self.port, body))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


# -- GET /metrics ---------------------------------------------------------------------------------
@dataclass
class Scrape:
    """The samples of one scrape, by series as rendered: `name` or `name{label="v",...}`."""

    samples: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls()
        for line in text.splitlines():
            match = SAMPLE.match(line)
            if match and not line.startswith("#"):
                scrape.samples[match.group(1)] = float(match.group(2))
        return scrape

    def get(self, series: str) -> float:
        return self.samples.get(series, 0.0)

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of an unlabelled histogram, by bound."""
        found = []
        for series, value in self.samples.items():
            match = re.fullmatch(rf'{name}_bucket\{{le="([^"]+)"\}}', series)
            if match:
                found.append((math.inf if match.group(1) == "+Inf" else float(match.group(1)), value))
        return sorted(found)


async def scrape(conn: Connection) -> Scrape:
    reply = await conn.request("GET", "/metrics")
    if reply.status != 200:
        raise RuntimeError(f"GET /metrics answered {reply.status}; is SLUICE_METRICS_PUBLIC set?")
    return Scrape.parse(reply.body.decode())


async def fetch_metrics(port: int) -> Scrape:
    """One scrape on a connection of its own."""
    conn = await Connection.open(port)
    try:
        return await scrape(conn)
    finally:
        await conn.close()


def histogram_between(before: Scrape, after: Scrape, name: str) -> dict[str, Any]:
    """Samples of histogram `name` taken between two scrapes: count, mean, and p50/p99/max as
    Prometheus' histogram_quantile() estimates them (linear within a bucket), each with the
    bucket bound it cannot exceed."""
    old = dict(before.buckets(name))
    cumulative = [(bound, count - old.get(bound, 0.0)) for bound, count in after.buckets(name)]
    total = cumulative[-1][1] if cumulative else 0.0
    if total <= 0:
        return {"samples": 0}
    sum_s = after.get(f"{name}_sum") - before.get(f"{name}_sum")

    def quantile(q: float) -> tuple[float, float]:
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in cumulative:
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound, bound
                share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
                return lower_bound + (bound - lower_bound) * share, bound
            lower_bound, lower_count = bound, count
        return lower_bound, math.inf

    report: dict[str, Any] = {"samples": int(total), "mean_ms": round(sum_s / total * 1000, 2)}
    for label, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        estimate, bound = quantile(q)
        report[f"{label}_ms"] = round(estimate * 1000, 2)
        report[f"{label}_at_most_ms"] = None if math.isinf(bound) else round(bound * 1000, 2)
    return report


async def warm_up(port: int, models: tuple[str, ...] = ("claude-sonnet", "gpt-4o-mini")) -> Scrape:
    """A few requests per model (litellm loads on first use), then a scrape (starts the lag probe)."""
    conn = await Connection.open(port)
    try:
        for model in models:
            for _ in range(5):
                reply = await conn.request("POST", CHAT, chat_body("warm-up", stream=False, model=model))
                if reply.status != 200:
                    raise SystemExit(f"warm-up: {model} answered {reply.status}: {reply.body[:200]!r}")
        await asyncio.sleep(0.5)
        return await scrape(conn)
    finally:
        await conn.close()


# -- reports ----------------------------------------------------------------------------------------
def spread(values: list[float]) -> dict[str, float] | None:
    """p50, p99 (nearest rank) and max of some milliseconds."""
    if not values:
        return None
    return {"p50": pct(values, 0.5), "p99": pct(values, 0.99), "max": round(max(values), 2)}


def target(measured: float | None, limit: float) -> dict[str, Any]:
    return {"measured": measured, "target_below": limit, "met": measured is not None and measured < limit}
