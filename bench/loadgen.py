"""A small HTTP/1.1 load generator for the benchmark, run as its own process (standard library only).

Two modes, both bounded in requests and in time, both for 127.0.0.1 only:

- ``latency``: one keep-alive connection, requests one after another (c=1, no coordinated
  omission to correct for). Records, per request, the time to the complete response and the
  time to the first SSE ``data:`` line (a stream's time to first token), then prints p50/p90/p99.
- ``throughput``: ``--concurrency`` keep-alive connections on one asyncio loop (uvloop when it is
  installed), each sending its next request as soon as the previous one finished, for
  ``--ramp`` + ``--duration`` seconds; prints the requests per second completed in the window
  after the ramp (the steady state: a gateway that serves 64 requests concurrently finishes
  none of them in the first request-latency of the run) and the errors over the whole run (a
  status other than 200, a broken connection, a stream without its final event, a non-stream
  body that is not a JSON object). Requests still in flight at the end are abandoned.

Usage (bench/run.py builds these command lines)::

    python bench/loadgen.py latency --url http://127.0.0.1:8080/v1/chat/completions \\
        --body '{"model": "m", "messages": [...]}' --header 'authorization: Bearer k' --duration 5

The result is one JSON object on standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ALLOWED_HOSTS = ("127.0.0.1", "localhost", "::1")
READ_SIZE = 65536
DONE = b"[DONE]"
ANTHROPIC_DONE = b"message_stop"
RESPONSES_DONE = b"event: response.completed"  # its data, the whole response, follows it


class ResponseError(Exception):
    """The response was not a complete, successful answer."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    request: bytes
    stream: bool


def build_target(url: str, body: bytes, headers: Sequence[str], stream: bool) -> Target:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in ALLOWED_HOSTS:
        raise SystemExit(f"loadgen: refusing to send traffic to {host!r}; only 127.0.0.1 is allowed")
    port = parts.port or 80
    path = parts.path or "/"
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "accept: text/event-stream" if stream else "accept: application/json",
    ]
    lines += [h.strip() for h in headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Target(host, port, path, head + body, stream)


def check_body(body: bytes, stream: bool) -> None:
    if stream:
        if (
            DONE not in body[-256:]
            and ANTHROPIC_DONE not in body[-512:]
            and RESPONSES_DONE not in body[-8192:]
        ):
            raise ResponseError("the stream ended without its final event")
    elif not body.lstrip().startswith(b"{"):
        raise ResponseError("the body is not a JSON object")


# --- blocking client (latency mode) ------------------------------------------------------------


class BlockingConnection:
    """One keep-alive connection with a read buffer; parses Content-Length and chunked bodies."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.target = target
        self.sock = socket.create_connection((target.host, target.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(READ_SIZE)
        if not data:
            raise ResponseError("the server closed the connection")
        self.buf += data

    def _until(self, sep: bytes) -> bytes:
        while True:
            at = self.buf.find(sep)
            if at >= 0:
                out, self.buf = self.buf[:at], self.buf[at + len(sep) :]
                return out
            self._fill()

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self) -> tuple[float, float, bool]:
        """Send the request; return (total seconds, seconds to first data line, keep-alive)."""
        started = time.perf_counter()
        first: float | None = None
        self.sock.sendall(self.target.request)
        head = self._until(b"\r\n\r\n")
        status_line, _, header_block = head.partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers = parse_headers(header_block)
        parts: list[bytes] = []
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self._until(b"\r\n"):
                        pass  # trailers
                    break
                chunk = self._exactly(size)
                self._exactly(2)
                if first is None and b"data:" in chunk:
                    first = time.perf_counter()
                parts.append(chunk)
        else:
            length = int(headers.get(b"content-length", b"0"))
            parts.append(self._exactly(length))
        done = time.perf_counter()
        body = b"".join(parts)
        if status != 200:
            raise ResponseError(f"HTTP {status}")
        check_body(body, self.target.stream)
        keep = headers.get(b"connection", b"").lower() != b"close"
        return done - started, (first if first is not None else done) - started, keep


def parse_headers(block: bytes) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for line in block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return headers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def run_latency(target: Target, duration: float, max_requests: int, timeout: float) -> dict[str, Any]:
    totals: list[float] = []
    firsts: list[float] = []
    errors = 0
    conn: BlockingConnection | None = None
    deadline = time.perf_counter() + duration
    started = time.perf_counter()
    while time.perf_counter() < deadline and len(totals) + errors < max_requests:
        try:
            if conn is None:
                conn = BlockingConnection(target, timeout)
            total, first, keep = conn.request()
        except (OSError, ResponseError, ValueError, IndexError):
            errors += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
            continue
        totals.append(total * 1000)
        firsts.append(first * 1000)
        if not keep:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    elapsed = time.perf_counter() - started
    return {
        "mode": "latency",
        "requests": len(totals),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "total_ms": summary(totals),
        "first_ms": summary(firsts),
    }


def summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50), 4),
        "p90": round(percentile(values, 90), 4),
        "p99": round(percentile(values, 99), 4),
        "mean": round(statistics.fmean(values), 4),
        "max": round(max(values), 4),
    }


# --- asyncio client (throughput mode) ----------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head[:-4].partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = parse_headers(header_block)
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        body = b"".join(parts)
    else:
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, body, headers.get(b"connection", b"").lower() != b"close"


@dataclass
class Counters:
    ok: int = 0
    errors: int = 0
    budget: int = 0
    window_start: float = 0.0
    in_window: int = 0
    last: float = 0.0


async def _worker(target: Target, deadline: float, counters: Counters, request_timeout: float) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    loop = asyncio.get_running_loop()
    try:
        while loop.time() < deadline and counters.budget > 0:
            counters.budget -= 1
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(target.host, target.port), request_timeout
                    )
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                writer.write(target.request)
                status, body, keep = await asyncio.wait_for(_read_response(reader), request_timeout)
                if status != 200:
                    raise ResponseError(f"HTTP {status}")
                check_body(body, target.stream)
                now = loop.time()
                counters.ok += 1
                if counters.window_start <= now < deadline:
                    counters.in_window += 1
                    counters.last = now
                if not keep:
                    writer.close()
                    reader = writer = None
            except (
                OSError,
                ResponseError,
                ValueError,
                IndexError,
                asyncio.IncompleteReadError,
                TimeoutError,
            ):
                counters.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
    finally:
        if writer is not None:
            writer.close()


async def _throughput(
    target: Target,
    concurrency: int,
    duration: float,
    ramp: float,
    max_requests: int,
    request_timeout: float,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    counters = Counters(budget=max_requests, window_start=started + ramp)
    deadline = started + ramp + duration
    workers = [
        asyncio.create_task(_worker(target, deadline, counters, request_timeout)) for _ in range(concurrency)
    ]
    # Stop at the deadline: requests still in flight then are neither counted nor waited for.
    await asyncio.wait(workers, timeout=max(0.0, deadline - loop.time()))
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    ended = min(loop.time(), deadline)
    window = (counters.last if counters.budget <= 0 else ended) - counters.window_start
    return {
        "mode": "throughput",
        "requests": counters.ok,
        "errors": counters.errors,
        "seconds": round(ended - started, 3),
        "window_s": round(window, 3),
        "rps": round(counters.in_window / window, 2) if window > 0 else 0.0,
    }


def run_throughput(
    target: Target, concurrency: int, duration: float, ramp: float, max_requests: int, timeout: float
) -> dict[str, Any]:
    job = _throughput(target, concurrency, duration, ramp, max_requests, timeout)
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.run(job)
    return uvloop.run(job)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("latency", "throughput"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="the JSON request body")
    parser.add_argument("--header", action="append", default=[], help="'name: value', repeatable")
    parser.add_argument("--stream", action="store_true", help="the answer is an SSE stream")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (upper bound)")
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="throughput: seconds of load before the counted window"
    )
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="request budget (upper bound)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    args = parser.parse_args(argv)
    target = build_target(args.url, args.body.encode(), args.header, args.stream)
    if args.mode == "latency":
        result = run_latency(target, args.duration, args.max_requests, args.timeout)
    else:
        result = run_throughput(
            target, args.concurrency, args.duration, args.ramp, args.max_requests, args.timeout
        )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
