"""Slowloris run: many trickling connections against a real Sluice while legitimate requests flow.

    .venv/bin/python scripts/slowloris.py [--connections 1000] [--seconds 30] [--rate 50]
        [--body-share 0.1] [--trickle-every 2]

Starts the fake upstream and `sluice demo --upstream` (real processes on 127.0.0.1, Sluice with its
default deadlines unless SLUICE_HEADER_TIMEOUT / SLUICE_BODY_TIMEOUT are set), then:

1. warm-up (a few requests, then until the server's RSS is at rest), then a baseline: legitimate
   chat requests at `--rate` per second for `--baseline` seconds, each on a fresh connection;
   the server's RSS and open file descriptors afterwards ("before").
2. attack: `--connections` trickling connections, held for `--seconds`: most send a request line,
   then one header line every `--trickle-every` s, forever; a `--body-share` of them send complete
   headers with the demo key and then trickle the body one byte at a time (each holds a slot of the
   in-flight cap while Sluice waits). A connection Sluice cuts is reopened at once, so the attack
   stays at full strength. Legitimate requests keep flowing at the same rate.
3. after: the tricklers stop; RSS and descriptors once the server has settled ("after").

Prints a JSON summary: legitimate success rate and latency (baseline and under attack), how the
trickling connections ended (408, closed without an answer) and how long they lived, and server
RSS and descriptors before, once every trickler is connected, at peak and after. Exits 1 if
fewer than 99 % of the legitimate requests under attack succeeded. Bounded in time; traffic only
to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402
from bench.loadgen import percentile  # noqa: E402

KEY = "sk-sluice-demo"
LEGIT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
BODY_HEAD = (
    HEAD
    + f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n".encode()
    + b"Content-Length: 100000\r\n\r\n"
    + b'{"model": "gpt-4o-mini", "messages": ['
)


@dataclass
class Kind:
    """The trickling connections of one kind (headers or body)."""

    opened: int = 0
    alive: int = 0
    answered_408: int = 0
    answered_other: int = 0
    closed_silently: int = 0
    lifetimes: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "connections_opened": self.opened,
            "ended_with_408": self.answered_408,
            "ended_with_other_answer": self.answered_other,
            "closed_without_answer": self.closed_silently,
            "lifetime_s": {
                "p50": round(percentile(self.lifetimes, 50), 2) if self.lifetimes else None,
                "max": round(max(self.lifetimes), 2) if self.lifetimes else None,
            },
        }


@dataclass
class Legit:
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        total = len(self.latencies_ms) + len(self.failures)
        return {
            "requests": total,
            "succeeded": len(self.latencies_ms),
            "success_rate": round(len(self.latencies_ms) / total, 4) if total else None,
            "latency_ms": {
                "p50": round(percentile(self.latencies_ms, 50), 1),
                "p99": round(percentile(self.latencies_ms, 99), 1),
                "max": round(max(self.latencies_ms), 1),
            }
            if self.latencies_ms
            else None,
            "failures": sorted(set(self.failures))[:10],
        }


async def trickler(port: int, body: bool, every: float, stop: asyncio.Event, kind: Kind) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(every)
            continue
        opened = time.monotonic()
        kind.opened += 1
        kind.alive += 1
        writer.write(BODY_HEAD if body else HEAD)
        data = b""
        try:
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(65536), every)
                except TimeoutError:
                    writer.write(b" " if body else b"X-Slow: 1\r\n")
                    continue
                kind.lifetimes.append(time.monotonic() - opened)
                if data.startswith(b"HTTP/1.1 408 "):
                    kind.answered_408 += 1
                elif data:
                    kind.answered_other += 1
                else:
                    kind.closed_silently += 1
                break
        except ConnectionError:
            kind.lifetimes.append(time.monotonic() - opened)
            kind.closed_silently += 1
        finally:
            kind.alive -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def legit_request(http: httpx.AsyncClient, legit: Legit) -> None:
    started = time.perf_counter()
    try:
        response = await http.post("/v1/chat/completions", json=LEGIT_BODY)
        content = response.json()["choices"][0]["message"]["content"] if response.status_code == 200 else ""
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        legit.failures.append(type(exc).__name__)
        return
    if response.status_code == 200 and content:
        legit.latencies_ms.append((time.perf_counter() - started) * 1000)
    else:
        legit.failures.append(f"status {response.status_code}")


async def legit_traffic(base: str, rate: float, seconds: float) -> Legit:
    """Open loop: one request every 1/rate s, each on a fresh connection, whatever the answers take."""
    legit = Legit()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as http:
        tasks = []
        started = time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(legit_request(http, legit)))
        await asyncio.gather(*tasks)
    return legit


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def warm_up(base: str, pid: int) -> None:
    """A few requests (one through litellm, which loads in the background), then RSS at rest."""
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        for model in ["claude-sonnet"] + ["gpt-4o-mini"] * 20:
            (await http.post("/v1/chat/completions", json={**LEGIT_BODY, "model": model})).raise_for_status()
    previous = procs.rss_mb(pid)
    for _ in range(30):
        await asyncio.sleep(1)
        current = procs.rss_mb(pid)
        if abs(current - previous) < 0.5:
            return
        previous = current


async def run(args: argparse.Namespace, server: procs.Server) -> dict[str, Any]:
    pid = server.proc.pid
    await warm_up(server.url, pid)
    baseline = await legit_traffic(server.url, args.rate, args.baseline)
    before = {"rss_mb": procs.rss_mb(pid), "fds": fds(pid)}

    stop = asyncio.Event()
    headers_kind, body_kind = Kind(), Kind()
    bodies = round(args.connections * args.body_share)
    kinds = [body_kind if i < bodies else headers_kind for i in range(args.connections)]
    tricklers = [
        asyncio.create_task(trickler(server.port, kind is body_kind, args.trickle_every, stop, kind))
        for kind in kinds
    ]
    for _ in range(200):  # until every trickler is connected (bounded: 10 s)
        if headers_kind.alive + body_kind.alive >= args.connections:
            break
        await asyncio.sleep(0.05)
    connected = {"rss_mb": procs.rss_mb(pid), "fds": fds(pid)}
    peak = dict(connected)
    alive: list[int] = []

    async def sample() -> None:
        while not stop.is_set():
            alive.append(headers_kind.alive + body_kind.alive)
            peak["rss_mb"] = max(peak["rss_mb"], procs.rss_mb(pid))
            peak["fds"] = max(peak["fds"], fds(pid))
            await asyncio.sleep(1)

    sampler = asyncio.create_task(sample())
    attacked = await legit_traffic(server.url, args.rate, args.seconds)
    stop.set()
    await asyncio.gather(sampler, *tricklers)
    await asyncio.sleep(3)  # let the server notice the closed connections
    after = {"rss_mb": procs.rss_mb(pid), "fds": fds(pid)}
    return {
        "trickling_connections": args.connections,
        "of_which_body": bodies,
        "trickle_every_s": args.trickle_every,
        "attack_seconds": args.seconds,
        "tricklers_alive_during_attack": {"min": min(alive), "max": max(alive)} if alive else None,
        "legit_rate_per_s": args.rate,
        "legit_baseline": baseline.report(),
        "legit_under_attack": attacked.report(),
        "tricklers_headers": headers_kind.report(),
        "tricklers_body": body_kind.report(),
        "server": {"before": before, "tricklers_connected": connected, "peak": peak, "after": after},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the attack")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of traffic before it")
    parser.add_argument("--rate", type=float, default=50.0, help="legitimate requests per second")
    parser.add_argument("--body-share", type=float, default=0.1)
    parser.add_argument("--trickle-every", type=float, default=2.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-slowloris-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(workdir / "audit.spool"),
    }
    upstream = procs.start_upstream(sys.executable, cpus=None, workdir=workdir, env=env)
    port = procs.free_port()
    command = [sys.executable, "-m", "gateway.cli.main", "demo", "--config", str(ROOT / "config/demo.yaml")]
    command += ["--host", procs.HOST, "--port", str(port), "--upstream", upstream.url]
    server = procs.start_server("sluice", command, port=port, workdir=workdir, env=env)
    try:
        procs.wait_ready(server, "/healthz", 90)
        summary = asyncio.run(run(args, server))
    finally:
        procs.stop(server)
        procs.stop(upstream)
    summary["nproc"] = os.cpu_count()
    print(json.dumps(summary, indent=2))
    rate = summary["legit_under_attack"]["success_rate"]
    return 0 if rate is not None and rate >= 0.99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
