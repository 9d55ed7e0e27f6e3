"""Load figures against a real Sluice: overload refusals (L2), breaker timing (U4), a soak (L4).

    .venv/bin/python scripts/load.py overload [--cap 50] [--extra 100] [--rounds 5]
    .venv/bin/python scripts/load.py breaker [--fault both|status503|refused] [--fast-fails 200]
    .venv/bin/python scripts/load.py soak [--minutes 60] [--concurrency 32] [--fault-share 0.01]

Each run starts the fake upstream (its own process, recording nothing) and `sluice demo --upstream`
in front of it (scripts/demo_stack.py), both on 127.0.0.1, with `SLUICE_METRICS_PUBLIC=true` so
the script can read `GET /metrics`. Requests go over bare HTTP/1.1 keep-alive connections
(scripts/load_wire.py).

- overload: `SLUICE_MAX_CONCURRENCY=cap`. One burst of exactly `cap` slow streams (none may be
  refused), then `--rounds` bursts of `cap + extra`: every connection is opened first, then every
  request is written before any answer is read. Each answer must be a complete stream or a 429
  with `Retry-After` in the OpenAI envelope, and no burst may admit more than `cap`. Reports the
  refusals' latency (request written to answer head), the event-loop lag Sluice measured during
  the bursts (`sluice_event_loop_lag_seconds`) and `GET /healthz` latency timed from another
  process every 50 ms (event loop plus HTTP).
- breaker: one deployment whose upstream fails, `status503` (the fake answers 503) or `refused`
  (nothing listens on the upstream port). Failing requests one after another until the circuit
  opens (time-to-open), then `--fast-fails` requests one after another while it is open: each must
  be a 502 `circuit open` with `Retry-After`, with no upstream attempt (`/metrics`). With
  `status503`, after the cool-down a healthy request must close the circuit again.
- soak (scripts/load_soak.py): `--concurrency` workers for `--minutes`, each on its own
  keep-alive connection: streams and non-streams, gpt-4o-mini (pass-through) and claude-sonnet
  (through litellm), with `--fault-share` of them told to fail upstream (a reset, or a 503).
  Every request kind is sent once first, so code loaded on first use is in memory before the
  soak starts. Every `--sample-every` s: Sluice's RSS and open descriptors by kind (/proc) and
  its asyncio tasks and loop lag (/metrics). RSS growth is measured from the first minute's
  steady state (the median of the samples at 30-60 s) to the last sample under load;
  descriptors and tasks are also compared idle, before and after.

Prints one JSON summary with the machine and its load average during the run (the figures are
upper bounds on a shared machine); the soak also prints each sample to stderr as it goes. Exits 1
when a check fails or a checklist target is missed (overload: loop lag p99 under 100 ms; breaker:
fast-fail p99 under 10 ms; soak: RSS growth under 5 %). Bounded in time; traffic only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs
from scripts.demo_stack import chat_body, fake_upstream_process, pct, sluice_demo
from scripts.load_host import HealthzProbe, LoadAverage, Scheduling, machine
from scripts.load_soak import Sluice, soak
from scripts.load_wire import (
    CHAT,
    Connection,
    Reply,
    Scrape,
    fetch_metrics,
    histogram_between,
    request_bytes,
    scrape,
    spread,
    stream_ok,
    target,
    warm_up,
)

LAG = "sluice_event_loop_lag_seconds"
LAG_P99_TARGET_MS = 100.0
FAST_FAIL_P99_TARGET_MS = 10.0


# -- overload (L2, and L1 at the cap) ------------------------------------------------------------
@dataclass
class Burst:
    size: int
    admitted: int = 0
    refused: int = 0
    lost: int = 0
    refusal_ms: list[float] = field(default_factory=list)
    admitted_head_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def tally(result: Burst, reply: Reply | BaseException, chunks: int) -> None:
    """A complete stream is admitted; a 429 in the envelope with Retry-After is refused; else lost."""
    if isinstance(reply, BaseException):
        result.lost += 1
        result.problems.append(type(reply).__name__)
    elif reply.status == 429:
        error = reply.error()
        retry_after = reply.headers.get(b"retry-after", b"")
        if error is None or error.get("code") != "rate_limited" or not retry_after.isdigit():
            result.problems.append(f"malformed refusal: retry-after {retry_after!r}, {reply.body[:200]!r}")
        result.refused += 1
        result.refusal_ms.append(reply.head_ms)
    elif (problem := stream_ok(reply, chunks)) is None:
        result.admitted += 1
        result.admitted_head_ms.append(reply.head_ms)
    else:
        result.lost += 1
        result.problems.append(problem)


def slow_stream(port: int, args: argparse.Namespace) -> bytes:
    content = f"[[fake:chunks={args.chunks},chunk_delay_ms={args.chunk_delay_ms}]]"
    return request_bytes("POST", CHAT, port, chat_body(content))


async def burst(port: int, size: int, args: argparse.Namespace) -> Burst:
    """`size` slow streams at once: every connection open first, every request written before any
    answer is read."""
    result = Burst(size)
    conns = await asyncio.gather(*(Connection.open(port) for _ in range(size)))
    raw = slow_stream(port, args)
    sent = [conn.send(raw) for conn in conns]
    replies = await asyncio.gather(
        *(asyncio.wait_for(c.receive(t), 120) for c, t in zip(conns, sent, strict=True)),
        return_exceptions=True,
    )
    await asyncio.gather(*(c.close() for c in conns))
    for reply in replies:
        tally(result, reply, args.chunks)
    return result


async def held(port: int, args: argparse.Namespace) -> Burst:
    """`cap` slow streams hold every slot; meanwhile `extra` requests, one after another on one
    connection: the cost of a refusal itself, outside a burst."""
    result = Burst(args.cap + args.extra)
    conns = await asyncio.gather(*(Connection.open(port) for _ in range(args.cap)))
    raw = slow_stream(port, args)
    streams = [asyncio.ensure_future(asyncio.wait_for(c.receive(c.send(raw)), 120)) for c in conns]
    for _ in range(100):  # bounded: 10 s for every stream to be admitted
        if (await fetch_metrics(port)).get("sluice_requests_in_flight") >= args.cap:
            break
        await asyncio.sleep(0.1)
    extra = await Connection.open(port)
    for _ in range(args.extra):
        try:
            reply: Reply | BaseException = await asyncio.wait_for(extra.send_and_receive(raw), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            reply = exc
        tally(result, reply, args.chunks)
        if isinstance(reply, BaseException) or not reply.keep_alive:
            await extra.close()
            extra = await Connection.open(port)
    await extra.close()
    for reply in await asyncio.gather(*streams, return_exceptions=True):
        tally(result, reply, args.chunks)
    await asyncio.gather(*(c.close() for c in conns))
    return result


async def overload(args: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    await warm_up(port)
    at_cap = await burst(port, args.cap, args)
    before = await fetch_metrics(port)
    with HealthzProbe(port) as probe:
        started = time.monotonic()
        scheduling = Scheduling(pid)
        bursts = [await burst(port, args.cap + args.extra, args) for _ in range(args.rounds)]
        loop_thread = scheduling.report()
        seconds = time.monotonic() - started
    after = await fetch_metrics(port)
    healthz_ms, healthz_errors = probe.result()
    steady = await held(port, args)
    end = await fetch_metrics(port)
    everything = (at_cap, *bursts, steady)
    refusal = [v for b in bursts for v in b.refusal_ms]
    lag = histogram_between(before, after, LAG)
    problems = [p for b in everything for p in b.problems]
    over_cap = [b.admitted for b in (*bursts, steady) if b.admitted > args.cap]
    checks = {
        "lost": sum(b.lost for b in everything),
        "refused_at_the_cap": at_cap.refused,
        "rounds_admitting_more_than_cap": len(over_cap),
        "malformed_or_odd_answers": len(problems),
        "in_flight_after": end.get("sluice_requests_in_flight"),
    }
    stream_s = args.chunks * args.chunk_delay_ms / 1000
    return {
        "cap": args.cap,
        "stream_seconds": stream_s,
        "burst_at_cap": {"streams": at_cap.size, "complete": at_cap.admitted, "refused": at_cap.refused},
        "bursts_over_cap": {
            "rounds": args.rounds,
            "streams_each": args.cap + args.extra,
            "admitted_per_round": [b.admitted for b in bursts],
            "refused_per_round": [b.refused for b in bursts],
            "seconds": round(seconds, 2),
        },
        "refusal_latency_in_bursts_ms": spread(refusal),
        "refusals_answered_before_a_slot_freed": sum(v < stream_s * 1000 for v in refusal),
        "admitted_time_to_head_ms": spread([v for b in bursts for v in b.admitted_head_ms]),
        "event_loop_lag_during_bursts": lag,
        "event_loop_thread_during_bursts": loop_thread,
        "healthz_during_bursts_ms": {
            **(spread(healthz_ms) or {}),
            "requests": len(healthz_ms),
            "errors": healthz_errors,
        },
        "slots_held": {
            "streams_complete": steady.admitted,
            "refused_one_by_one": steady.refused,
            "refusal_latency_ms": spread(steady.refusal_ms),
        },
        "checks": checks,
        "problems": problems[:10],
        "targets": {"event_loop_lag_p99_ms": target(lag.get("p99_ms"), LAG_P99_TARGET_MS)},
        "ok": checks["lost"] == 0
        and checks["refused_at_the_cap"] == 0
        and not over_cap
        and not problems
        and checks["in_flight_after"] == 0
        and all(b.refused == args.extra for b in (*bursts, steady)),
    }


# -- breaker (U4) ---------------------------------------------------------------------------------
def breaker_open(scrape_: Scrape, deployment: str = "gpt-4o-mini#0") -> bool:
    return scrape_.get(f'sluice_circuit_breaker_state{{deployment="{deployment}",state="open"}}') == 1


def attempts(scrape_: Scrape) -> float:
    return scrape_.get('sluice_upstream_attempts_total{endpoint="chat",model="gpt-4o-mini"}')


def fast_failed(reply: Reply) -> bool:
    error = reply.error() or {}
    return (
        reply.status == 502
        and "circuit open" in str(error.get("message", ""))
        and reply.headers.get(b"retry-after", b"").isdigit()
    )


async def breaker(args: argparse.Namespace, port: int, fault: str) -> dict[str, Any]:
    healthy = chat_body("Hello", stream=False)
    failing = chat_body("Hello [[fake:status=503]]", stream=False) if fault == "status503" else healthy
    conn = await Connection.open(port)
    try:
        baseline: list[float] = []
        if fault == "status503":
            await warm_up(port, ("gpt-4o-mini",))
            baseline = [(await conn.request("POST", CHAT, healthy)).total_ms for _ in range(args.fast_fails)]
        start = await scrape(conn)
        failures: list[Reply] = []
        while True:
            reply = await conn.request("POST", CHAT, failing)
            if fast_failed(reply) or len(failures) >= 50:
                break
            failures.append(reply)
        opened = await scrape(conn)
        fast = [await conn.request("POST", CHAT, healthy) for _ in range(args.fast_fails)]
        during = await scrape(conn)
        recovery: dict[str, Any] | None = None
        if fault == "status503":
            recovery = await recover(conn, float(fast[-1].headers.get(b"retry-after", b"0")))
    finally:
        await conn.close()
    fast_ms = [r.total_ms for r in fast]
    not_fast = sum(not fast_failed(r) for r in fast)
    upstream_during_open = attempts(during) - attempts(opened)
    report = {
        "fault": fault,
        "healthy_baseline_ms": spread(baseline),
        "failures_to_open": len(failures),
        "failing_request_ms": spread([r.total_ms for r in failures]),
        "failing_statuses": dict(Counter(r.status for r in failures)),
        "time_to_open_ms": round((failures[-1].done - failures[0].sent) * 1000, 2) if failures else None,
        "open_per_metrics": breaker_open(opened),
        "upstream_attempts_while_failing": attempts(opened) - attempts(start),
        "fast_fails": len(fast),
        "fast_fail_ms": spread(fast_ms),
        "fast_fail_mean_ms": round(statistics.fmean(fast_ms), 2),
        "not_fast_failed": not_fast,
        "upstream_attempts_while_open": upstream_during_open,
        "retry_after_s": fast[0].headers.get(b"retry-after", b"").decode(),
        "recovery": recovery,
        "targets": {"fast_fail_p99_ms": target(pct(fast_ms, 0.99), FAST_FAIL_P99_TARGET_MS)},
    }
    report["ok"] = (
        breaker_open(opened)
        and len(failures) == args.breaker_failures
        and not_fast == 0
        and upstream_during_open == 0
        and (recovery is None or recovery["closed"])
    )
    return report


async def recover(conn: Connection, retry_after: float) -> dict[str, Any]:
    """After the cool-down, healthy requests until one is served (the half-open trial closes it)."""
    waited = time.monotonic()
    await asyncio.sleep(max(0.0, retry_after - 0.5))
    for _ in range(200):
        reply = await conn.request("POST", CHAT, chat_body("Hello", stream=False))
        if reply.status == 200:
            closed = await scrape(conn)
            state = 'sluice_circuit_breaker_state{deployment="gpt-4o-mini#0",state="closed"}'
            return {"served_after_s": round(time.monotonic() - waited, 2), "closed": closed.get(state) == 1}
        await asyncio.sleep(0.1)
    return {"served_after_s": None, "closed": False}


# -- main -------------------------------------------------------------------------------------------
async def run(args: argparse.Namespace, upstream: str, workdir: Path) -> dict[str, Any]:
    """One Sluice per measurement, so no phase inherits another's circuits, memory or caches."""
    env = {"SLUICE_METRICS_PUBLIC": "true", "SLUICE_BREAKER_FAILURES": str(args.breaker_failures)}
    load = LoadAverage()
    load.start()
    results: dict[str, Any] = {}
    if args.command == "overload":
        env["SLUICE_MAX_CONCURRENCY"] = str(args.cap)
        with sluice_demo(upstream, workdir=workdir, env=env) as server:
            results = await overload(args, server.port, server.proc.pid)
    elif args.command == "breaker":
        env["SLUICE_BREAKER_COOLDOWN"] = str(args.cooldown)
        for fault in ("status503", "refused") if args.fault == "both" else (args.fault,):
            target_url = upstream if fault == "status503" else f"http://{procs.HOST}:{procs.free_port()}"
            with sluice_demo(target_url, workdir=workdir / fault, env=env) as server:
                results[fault] = await breaker(args, server.port, fault)
        results["ok"] = all(r["ok"] for r in results.values())
    else:
        upstream_port = int(upstream.rsplit(":", 1)[1])
        with sluice_demo(upstream, workdir=workdir, env=env) as server:
            results = await soak(args, Sluice(server.port, server.proc.pid, upstream_port))
    return {"command": args.command, "machine": machine(), "load_average": await load.stop(), **results}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--breaker-failures", type=int, default=5, help="SLUICE_BREAKER_FAILURES")
    sub = parser.add_subparsers(dest="command", required=True)
    over = sub.add_parser("overload", help="L2: C+delta concurrent streams against SLUICE_MAX_CONCURRENCY=C")
    over.add_argument("--cap", type=int, default=50)
    over.add_argument("--extra", type=int, default=100)
    over.add_argument("--rounds", type=int, default=5)
    over.add_argument("--chunks", type=int, default=20)
    over.add_argument("--chunk-delay-ms", type=int, default=100)
    brk = sub.add_parser("breaker", help="U4: time-to-open and fast-fail latency of the circuit breaker")
    brk.add_argument("--fault", choices=("both", "status503", "refused"), default="both")
    brk.add_argument("--fast-fails", type=int, default=200)
    brk.add_argument("--cooldown", type=float, default=5.0, help="SLUICE_BREAKER_COOLDOWN")
    soak_ = sub.add_parser("soak", help="L4: mixed load with injected faults; RSS, fd and task drift")
    soak_.add_argument("--minutes", type=float, default=60.0)
    soak_.add_argument("--concurrency", type=int, default=32)
    soak_.add_argument("--fault-share", type=float, default=0.01)
    soak_.add_argument("--litellm-share", type=float, default=0.25, help="share sent to claude-sonnet")
    soak_.add_argument("--chunks", type=int, default=20)
    soak_.add_argument("--chunk-delay-ms", type=int, default=20)
    soak_.add_argument("--non-stream-delay-ms", type=int, default=100)
    soak_.add_argument("--sample-every", type=float, default=10.0)
    soak_.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix=f"sluice-load-{args.command}-"))
    with fake_upstream_process(workdir) as upstream:
        summary = asyncio.run(run(args, upstream.url, workdir))
    summary["workdir"] = str(workdir)
    print(json.dumps(summary, indent=2))
    targets = [
        t
        for r in (summary, *(v for v in summary.values() if isinstance(v, dict)))
        for t in r.get("targets", {}).values()
    ]
    return 0 if summary["ok"] and all(t["met"] for t in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
