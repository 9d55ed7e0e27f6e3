"""Streaming fault run: many concurrent streams through a real Sluice, a few upstream resets, and
client disconnects, measuring what clients see and how fast Sluice lets go of the upstream.

    .venv/bin/python scripts/stream_faults.py [--streams 200] [--rounds 5] [--reset-share 0.01]

Starts the fake upstream (in this process, so its records share our clock) and `sluice demo`
against it (a real process on 127.0.0.1), then:

1. `--rounds` rounds of `--streams` concurrent streams (20 chunks each); in each round a share of
   them ask the fake to reset the connection mid-stream. Every stream must end either complete
   (all chunks, `[DONE]`, no error) or, for the reset ones, with an SSE error event then `[DONE]`.
   Anything else is counted as lost or silently truncated.
2. `--disconnects` streams that the client abandons after the first chunk: the time from the
   client closing its socket to the fake upstream seeing Sluice close the upstream connection.

Prints a JSON summary. Bounded in requests and time; traffic only to 127.0.0.1.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluice_fakes.fake_upstream import FakeUpstream

from scripts.demo_stack import KEY, chat_body, pct, sluice_demo

CHUNKS = 20


@dataclass
class Tally:
    complete: int = 0
    error_then_done: int = 0
    lost: int = 0
    truncated: int = 0
    problems: list[str] = field(default_factory=list)


async def one_stream(http: httpx.AsyncClient, reset: bool, tally: Tally) -> None:
    marker = "[[fake:reset_after=6]]" if reset else f"[[fake:chunks={CHUNKS},chunk_delay_ms=10]]"
    try:
        async with http.stream("POST", "/v1/chat/completions", json=chat_body(marker)) as response:
            events = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    except httpx.HTTPError as exc:
        tally.lost += 1
        tally.problems.append(f"transport error {type(exc).__name__}")
        return
    if response.status_code != 200 or not events or events[-1] != "data: [DONE]":
        tally.lost += 1
        tally.problems.append(f"status {response.status_code}, last event {events[-1:]!r}")
        return
    errored = any('"error"' in e for e in events)
    contents = sum('"content"' in e for e in events)
    if errored:
        tally.error_then_done += 1
    elif contents >= CHUNKS - 1 and any('"finish_reason":"stop"' in e for e in events):
        tally.complete += 1
    else:
        tally.truncated += 1
        tally.problems.append(f"{contents} content events, no error")


async def abandon(http: httpx.AsyncClient, fake: FakeUpstream, tag: str) -> float | None:
    """Open a slow stream, read one chunk, hang up; return ms until Sluice closed the upstream."""
    content = f"{tag} [[fake:chunks=400,chunk_delay_ms=50]]"
    async with http.stream("POST", "/v1/chat/completions", json=chat_body(content)) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break
        closed_at = time.time()
    # leaving the block closes our connection; wait (bounded) for the fake to see Sluice hang up
    for _ in range(200):
        record = next((r for r in fake.requests if tag in r.body.decode(errors="replace")), None)
        if record is not None and record.client_closed_at is not None:
            return (record.client_closed_at - closed_at) * 1000
        await asyncio.sleep(0.02)
    return None


async def run(args: argparse.Namespace, base: str, fake: FakeUpstream) -> dict[str, Any]:
    tally = Tally()
    limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=args.streams)
    headers = {"authorization": f"Bearer {KEY}"}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as http:
        resets_per_round = max(1, round(args.streams * args.reset_share))
        for _ in range(args.rounds):
            await asyncio.gather(
                *(one_stream(http, i < resets_per_round, tally) for i in range(args.streams))
            )
        streams_s = time.monotonic() - started
    delays: list[float] = []
    missing = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        for i in range(args.disconnects):
            delay = await abandon(http, fake, f"abandon-{i}-{time.time_ns()}")
            if delay is None:
                missing += 1
            else:
                delays.append(delay)
    return {
        "streams": args.streams * args.rounds,
        "concurrency": args.streams,
        "resets_injected": resets_per_round * args.rounds,
        "complete": tally.complete,
        "error_event_then_done": tally.error_then_done,
        "lost": tally.lost,
        "silently_truncated": tally.truncated,
        "problems": tally.problems[:10],
        "streams_seconds": round(streams_s, 2),
        "disconnects": args.disconnects,
        "disconnect_to_upstream_close_ms": {
            "p50": pct(delays, 0.5) if delays else None,
            "p99": pct(delays, 0.99) if delays else None,
            "max": round(max(delays), 2) if delays else None,
            "mean": round(statistics.fmean(delays), 2) if delays else None,
            "never_closed": missing,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reset-share", type=float, default=0.01)
    parser.add_argument("--disconnects", type=int, default=100)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sluice-stream-faults-"))
    env = {"SLUICE_MAX_CONCURRENCY": str(args.streams * 4)}
    with FakeUpstream.in_thread() as fake, sluice_demo(fake.url, workdir=workdir, env=env) as sluice:
        summary = asyncio.run(run(args, sluice.url, fake))
    summary["nproc"] = os.cpu_count()
    print(json.dumps(summary, indent=2))
    bad = (
        summary["lost"]
        + summary["silently_truncated"]
        + summary["disconnect_to_upstream_close_ms"]["never_closed"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
