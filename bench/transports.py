"""The pass-through's HTTP client, measured: Sluice's FastTransport against httpx and aiohttp.

What belongs here: a focused micro-benchmark of the one thing `gateway/upstream/transport.py` is
for, sending OpenAI-wire chat calls to an upstream and reading their answers, with the three
clients the pass-through could use:

- `fast`: `httpx.AsyncClient(transport=FastTransport())`, what the pass-through runs today;
- `httpx`: httpx's own pool (httpcore + h11), tuned: keep-alive for every connection, no proxy
  lookups, no connection cap below the load;
- `aiohttp`: `aiohttp.ClientSession` on a `TCPConnector` with the same keep-alive, no cap, used
  directly (the floor: no httpx objects at all);
- `fast-bare`: FastTransport called without httpx's client (an `httpx.Request` handed straight to
  `handle_async_request`): the transport's own cost, beside aiohttp's;
- `httpx+aiohttp`: httpx's client API over an aiohttp session (`AiohttpTransport` below, the
  smallest honest adapter), the shape a replacement would take to keep the pass-through's httpx
  interface (`CappedTransport`, respx at the seam, httpx's exception types).

The fake upstream (`sluice_fakes.fake_upstream`) runs as its own process; the clients run here,
one after another, interleaved over the repetitions, on uvloop as the gateway does. For each cell
(non-stream or 20-chunk stream; 1 or 64 requests in flight) it records the client's CPU time per
request (what the gateway pays, and the figure least disturbed by other load on the machine),
the requests per second, and at c=1 the median latency. Medians over the repetitions.

    .venv/bin/python bench/transports.py --duration 2 --repeats 3     # writes bench/TRANSPORTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procs import clean_env, start_upstream, stop  # noqa: E402
from gateway.upstream.transport import FastTransport  # noqa: E402

HEADERS = {"authorization": "Bearer sk-fake-upstream", "content-type": "application/json"}
MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
CLIENTS = ("fast", "fast-bare", "httpx", "aiohttp", "httpx+aiohttp")
CELLS = (("ns", False, 1), ("ns", False, 64), ("st", True, 1), ("st", True, 64))
POOL = 256  # connections kept alive per client: more than any cell keeps in flight

Send = Callable[[], Awaitable[int]]


class _AiohttpBody(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.response.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        self.response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over an aiohttp session (bodies streamed, not decoded)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.session.request(
            request.method,
            str(request.url),
            data=await request.aread(),
            headers=list(request.headers.multi_items()),
            allow_redirects=False,
            auto_decompress=False,
        )
        return httpx.Response(response.status, headers=response.raw_headers, stream=_AiohttpBody(response))

    async def aclose(self) -> None:
        await self.session.close()


@dataclass
class Cell:
    client: str
    stream: bool
    concurrency: int
    requests: int
    cpu: float
    wall: float
    latencies: list[float]

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.requests * 1e6

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


class Client:
    """One client kind: `send()` makes one call and reads its whole answer; returns its size."""

    def __init__(self, kind: str, url: str, stream: bool) -> None:
        self.kind = kind
        self.url = f"{url}/v1/chat/completions"
        body: dict[str, Any] = {"model": "gpt-4o-mini", "max_tokens": 64, "messages": MESSAGES}
        if stream:
            body["stream"] = True
        self.body = json.dumps(body).encode()
        self.stream = stream
        self.httpx: httpx.AsyncClient | None = None
        self.aiohttp: aiohttp.ClientSession | None = None
        self.bare: FastTransport | None = None

    async def __aenter__(self) -> Client:
        if self.kind == "fast-bare":
            self.bare = FastTransport()
        elif self.kind == "fast":
            self.httpx = httpx.AsyncClient(transport=FastTransport(), trust_env=False, timeout=30)
        elif self.kind == "httpx":
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=POOL, keepalive_expiry=60)
            self.httpx = httpx.AsyncClient(limits=limits, trust_env=False, timeout=30)
        else:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
            session = aiohttp.ClientSession(
                connector=connector, trust_env=False, timeout=aiohttp.ClientTimeout(total=30)
            )
            if self.kind == "aiohttp":
                self.aiohttp = session
            else:
                self.httpx = httpx.AsyncClient(
                    transport=AiohttpTransport(session), trust_env=False, timeout=30
                )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.httpx is not None:
            await self.httpx.aclose()
        if self.aiohttp is not None:
            await self.aiohttp.close()
        if self.bare is not None:
            await self.bare.aclose()

    async def send(self) -> int:
        if self.bare is not None:
            request = httpx.Request("POST", self.url, content=self.body, headers=HEADERS)
            response = await self.bare.handle_async_request(request)
            assert response.status_code == 200
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
            await response.aclose()
            return size
        if self.httpx is not None:
            if not self.stream:
                answer = await self.httpx.post(self.url, content=self.body, headers=HEADERS)
                assert answer.status_code == 200
                return len(answer.content)
            size = 0
            async with self.httpx.stream("POST", self.url, content=self.body, headers=HEADERS) as answer:
                assert answer.status_code == 200
                async for chunk in answer.aiter_raw():
                    size += len(chunk)
            return size
        assert self.aiohttp is not None
        async with self.aiohttp.post(self.url, data=self.body, headers=HEADERS) as reply:
            assert reply.status == 200
            if not self.stream:
                return len(await reply.read())
            size = 0
            async for chunk in reply.content.iter_any():
                size += len(chunk)
            return size


async def measure(kind: str, url: str, stream: bool, concurrency: int, duration: float) -> Cell:
    async with Client(kind, url, stream) as client:
        latencies: list[float] = []
        done = 0

        async def worker(until: float, record: bool) -> None:
            nonlocal done
            while time.perf_counter() < until:
                started = time.perf_counter()
                await client.send()
                if record:
                    done += 1
                    if concurrency == 1:
                        latencies.append(time.perf_counter() - started)

        warm = time.perf_counter() + min(1.0, duration / 2)
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(wall + duration, True) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Cell(kind, stream, concurrency, done, cpu, wall, latencies)


def table(results: dict[tuple[str, str, int], list[Cell]], repeats: int, duration: float) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# The pass-through's HTTP client: FastTransport against httpx and aiohttp",
        "",
        f"Generated by `bench/transports.py --duration {duration:g} --repeats {repeats}` on "
        f"{datetime.now(UTC):%Y-%m-%dT%H:%M}Z; {os.cpu_count()} CPUs, "
        f"load average (1, 5, 15 min) at the end {load}. "
        "Clients as in the script's docstring; the fake upstream in its own process.",
        "",
        "| cell | client | CPU per request (µs) | requests/s | p50 latency (ms) | vs fast (CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for name, _, concurrency in CELLS:
        base = statistics.median(c.cpu_us for c in results[("fast", name, concurrency)])
        for kind in CLIENTS:
            cells = results[(kind, name, concurrency)]
            cpu = statistics.median(c.cpu_us for c in cells)
            rate = statistics.median(c.rate for c in cells)
            p50 = statistics.median(c.p50_ms for c in cells) if concurrency == 1 else None
            label = f"{'stream (20 chunks)' if name == 'st' else 'non-stream'}, c={concurrency}"
            lines.append(
                f"| {label} | {kind} | {cpu:,.0f} | {rate:,.0f} | "
                f"{'' if p50 is None else f'{p50:.3f}'} | {cpu / base:.2f}x |"
            )
    lines.append("")
    lines.append(f"{repeats} repetitions of {duration:g} s per cell, medians; clients interleaved.")
    return "\n".join(lines)


async def run(url: str, duration: float, repeats: int) -> dict[tuple[str, str, int], list[Cell]]:
    results: dict[tuple[str, str, int], list[Cell]] = {}
    for _ in range(repeats):
        for name, stream, concurrency in CELLS:
            for kind in CLIENTS:
                cell = await measure(kind, url, stream, concurrency, duration)
                results.setdefault((kind, name, concurrency), []).append(cell)
                print(
                    f"{kind:8} {name} c={concurrency:<3} {cell.cpu_us:8.0f} µs CPU/req "
                    f"{cell.rate:8.0f} req/s",
                    flush=True,
                )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "TRANSPORTS.md", help="the report")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        upstream = start_upstream(sys.executable, cpus=None, workdir=Path(work), env=clean_env())
        try:
            results = uvloop.run(run(upstream.url, args.duration, args.repeats))
        finally:
            stop(upstream)
    text = table(results, args.repeats, args.duration)
    print(text)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
