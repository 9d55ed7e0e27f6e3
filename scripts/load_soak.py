"""`scripts/load.py soak` (checklist L4): sustained mixed load with injected upstream faults, and
Sluice's memory, descriptors and tasks sampled throughout.

What belongs here: the request mix, how each answer is judged, the workers, the sampler and the
report. `--concurrency` workers each keep one connection busy until the time is up: streams and
non-streams, gpt-4o-mini (pass-through) and claude-sonnet (through litellm); `--fault-share` of
the requests tell the fake upstream to fail (a connection reset, or a 503). A healthy request
must succeed in full; a faulty one must end in an explicit error (a 5xx in the OpenAI envelope,
or an SSE error event then `[DONE]`). Anything else is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import procs
from scripts.demo_stack import chat_body
from scripts.load_host import Scheduling, open_fds
from scripts.load_wire import (
    CHAT,
    Connection,
    Reply,
    Scrape,
    fetch_metrics,
    histogram_between,
    spread,
    stream_ok,
    target,
    warm_up,
)

LAG = "sluice_event_loop_lag_seconds"
RSS_GROWTH_TARGET_PCT = 5.0
# (stream, fault) -> the fake upstream's directives
CONTENT = {
    (True, None): "[[fake:chunks={chunks},chunk_delay_ms={delay}]]",
    (True, "reset"): "[[fake:chunks={chunks},chunk_delay_ms={delay},reset_after=3]]",
    (True, "503"): "[[fake:status=503]]",
    (False, None): "[[fake:delay_ms={delay}]]",
    (False, "reset"): "[[fake:reset]]",
    (False, "503"): "[[fake:status=503]]",
}


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"stream": [], "non_stream": []})
    problems: list[str] = field(default_factory=list)

    def lost(self, what: str) -> None:
        self.outcomes["lost"] += 1
        if len(self.problems) < 20:
            self.problems.append(what)


def judge(reply: Reply, stream: bool, fault: str | None, chunks: int, tally: Tally) -> None:
    kind = "stream" if stream else "non_stream"
    if fault is None:
        if stream:
            problem = stream_ok(reply, chunks)
        elif reply.status != 200 or b'"content"' not in reply.body:
            problem = f"status {reply.status}"
        else:
            problem = None
        if problem is None:
            tally.outcomes["ok"] += 1
            tally.latency_ms[kind].append(reply.total_ms)
        else:
            tally.lost(f"healthy {kind}: {problem}")
        return
    events = reply.events() if stream else []
    if reply.status >= 500 and reply.error() is not None:
        tally.outcomes[f"{fault}: error status"] += 1
    elif reply.status == 200 and events[-1:] == ["data: [DONE]"] and any('"error"' in e for e in events):
        tally.outcomes[f"{fault}: error event then [DONE]"] += 1
    else:
        tally.lost(f"{fault} fault, {kind}: status {reply.status}, not an explicit error")


async def worker(
    port: int, deadline: float, rng: random.Random, args: argparse.Namespace, tally: Tally
) -> None:
    conn: Connection | None = None
    while time.monotonic() < deadline:
        stream = rng.random() < 0.5
        model = "claude-sonnet" if rng.random() < args.litellm_share else "gpt-4o-mini"
        fault = rng.choice(("reset", "503")) if rng.random() < args.fault_share else None
        delay = args.chunk_delay_ms if stream else args.non_stream_delay_ms
        body = chat_body(
            CONTENT[stream, fault].format(chunks=args.chunks, delay=delay), stream=stream, model=model
        )
        try:
            conn = conn or await Connection.open(port)
            reply = await asyncio.wait_for(conn.request("POST", CHAT, body), 120)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            tally.lost(f"transport: {type(exc).__name__}")
            if conn is not None:
                await conn.close()
            conn = None
            continue
        judge(reply, stream, fault, args.chunks, tally)
        if not reply.keep_alive:
            await conn.close()
            conn = None
    if conn is not None:
        await conn.close()


@dataclass
class Sluice:
    port: int
    pid: int
    upstream_port: int
    scheduling: Scheduling = field(init=False)

    def __post_init__(self) -> None:
        self.scheduling = Scheduling(self.pid)

    async def sample(self, started: float, previous: Scrape | None) -> tuple[dict[str, Any], Scrape]:
        now = await fetch_metrics(self.port)
        point: dict[str, Any] = {
            "t_s": round(time.monotonic() - started),
            "rss_mb": procs.rss_mb(self.pid),
            "fds": open_fds(self.pid, own_port=self.port, upstream_port=self.upstream_port),
            "tasks": int(now.get("sluice_asyncio_tasks")),
            "in_flight": int(now.get("sluice_requests_in_flight")),
            "cpu_s": round(now.get("process_cpu_seconds_total"), 1),
            "load1": round(os.getloadavg()[0], 2),
        }
        if previous is not None:
            point["lag_p99_ms"] = histogram_between(previous, now, LAG).get("p99_ms")
            point["loop_thread"] = self.scheduling.report()
            self.scheduling.start()
        return point, now

    async def idle(self) -> dict[str, Any]:
        """Once nothing is in flight (bounded wait) and 2 s more: RSS, descriptors and tasks."""
        for _ in range(100):
            point, _ = await self.sample(time.monotonic(), None)
            if point["in_flight"] == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        point, _ = await self.sample(time.monotonic(), None)
        return {k: point[k] for k in ("rss_mb", "fds", "tasks")}


async def every_path_once(port: int, args: argparse.Namespace) -> None:
    """Each kind of request of the mix once, each fault followed by a healthy request (so no
    circuit opens): code that loads on first use loads now, not in the middle of the soak (the
    first mid-stream failure through litellm imports `tokenizers`, about 36 MB)."""
    conn = await Connection.open(port)
    try:
        for model in ("gpt-4o-mini", "claude-sonnet"):
            for stream, fault in CONTENT:
                for kind in ((stream, fault), (stream, None)):
                    delay = args.chunk_delay_ms if kind[0] else args.non_stream_delay_ms
                    content = CONTENT[kind].format(chunks=args.chunks, delay=delay)
                    reply = await conn.request("POST", CHAT, chat_body(content, stream=kind[0], model=model))
                    if not reply.keep_alive:
                        await conn.close()
                        conn = await Connection.open(port)
    finally:
        await conn.close()


async def soak(args: argparse.Namespace, sluice: Sluice) -> dict[str, Any]:
    await every_path_once(sluice.port, args)
    first = await warm_up(sluice.port)
    idle_before = await sluice.idle()
    tally = Tally()
    rng = random.Random(args.seed)  # noqa: S311 -- a reproducible mix, not a secret
    started = time.monotonic()
    deadline = started + args.minutes * 60
    workers = [
        asyncio.create_task(worker(sluice.port, deadline, random.Random(rng.random()), args, tally))  # noqa: S311
        for _ in range(args.concurrency)
    ]
    samples: list[dict[str, Any]] = []
    last = first
    whole_run = Scheduling(sluice.pid)
    sluice.scheduling.start()
    while time.monotonic() < deadline:
        await asyncio.sleep(min(args.sample_every, max(0.0, deadline - time.monotonic())))
        point, last = await sluice.sample(started, last)
        point["requests"] = sum(tally.outcomes.values())
        samples.append(point)
        print(json.dumps(point), file=sys.stderr, flush=True)  # progress, one line per sample
    await asyncio.gather(*workers)
    seconds = time.monotonic() - started
    loop_thread = whole_run.report()
    end = await fetch_metrics(sluice.port)
    idle_after = await sluice.idle()
    summary = report(args, tally, samples, seconds, first, end, idle_before, idle_after)
    return {**summary, "event_loop_thread": loop_thread}


def report(
    args: argparse.Namespace,
    tally: Tally,
    samples: list[dict[str, Any]],
    seconds: float,
    first: Scrape,
    end: Scrape,
    idle_before: dict[str, Any],
    idle_after: dict[str, Any],
) -> dict[str, Any]:
    steady = [p for p in samples if 30 <= p["t_s"] <= 60] or samples[:1]
    base = {k: statistics.median(p[k] for p in steady) for k in ("rss_mb", "tasks")}
    base["fds"] = statistics.median(p["fds"]["total"] for p in steady)
    last = samples[-1]
    growth = round((last["rss_mb"] - base["rss_mb"]) / base["rss_mb"] * 100, 2)
    total = sum(tally.outcomes.values())
    cpu = end.get("process_cpu_seconds_total") - first.get("process_cpu_seconds_total")
    # Idle, the upstream keep-alive pools may hold connections; any other new descriptor is a leak.
    stray = sum(v for k, v in idle_after["fds"].items() if k not in ("total", "upstream")) - sum(
        v for k, v in idle_before["fds"].items() if k not in ("total", "upstream")
    )
    return {
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "fault_share": args.fault_share,
        "litellm_share": args.litellm_share,
        "requests": total,
        "requests_per_s": round(total / seconds, 1),
        "outcomes": dict(tally.outcomes),
        "latency_ms": {kind: spread(values) for kind, values in tally.latency_ms.items()},
        "problems": tally.problems,
        "sluice_cpu_share_of_one_core": round(cpu / seconds, 2),
        "event_loop_lag": histogram_between(first, end, LAG),
        "steady_first_minute": base,
        "end": {"rss_mb": last["rss_mb"], "fds": last["fds"]["total"], "tasks": last["tasks"]},
        "rss_mb_max": max(p["rss_mb"] for p in samples),
        "rss_growth_pct": growth,
        "fds_range": [min(p["fds"]["total"] for p in samples), max(p["fds"]["total"] for p in samples)],
        "tasks_range": [min(p["tasks"] for p in samples), max(p["tasks"] for p in samples)],
        "idle_before": idle_before,
        "idle_after": idle_after,
        "stray_fds_after": stray,
        "samples": samples,
        "targets": {"rss_growth_pct": target(growth, RSS_GROWTH_TARGET_PCT)},
        "ok": tally.outcomes["lost"] == 0 and stray <= 2 and idle_after["tasks"] <= idle_before["tasks"] + 2,
    }
