"""What a key's limit check costs: the same gateway and request with no limits, with per-process
limits, and with limits shared through Redis.

    .venv/bin/python bench/limits.py [--duration 5] [--repeats 3] [--redis redis://127.0.0.1:6379/0]
        [--no-pin] [--redis-only] [--compare /work/main] [--paired ROUNDS] [--script-only]

What it does: one fake upstream; three `sluice demo --config bench/sluice-bench.yaml` gateways (one
worker each, started one after the other, all pinned to the same CPU and never loaded at the same
time): no limits, `rpm` only, and `rpm` + `tpm` + `max_concurrency` (limits so high that nothing is
refused: every request runs the whole check, and for the last the token count and the lease's
release), each per process and with SLUICE_REDIS_URL (one Lua script per check, one more per answer
with tpm or max_concurrency; a scratch key prefix, deleted afterwards). Each repetition runs non-stream c=1
latency (p50, p99; bench/loadgen.py, with the gateway's and Redis's CPU time per request, which a
loaded machine disturbs less than wall time) and c=64 throughput (wrk when installed) on each
gateway, the order rotated per repetition (`--redis-only`: the no-limits row and the two Redis
rows with limits, so more repetitions fit). `--compare /work/main`: also those two Redis rows from
another checkout (its .venv), in the same rotation, for a before/after in one period. Prints a
Markdown table (medians over repetitions) to paste into bench/OTHER.md. `--paired ROUNDS`: c=1
only, the gateways taking turns request by request, each one's cost the median of its paired
differences from the no-limits gateway (a shared machine's load swings hit all alike).
`--script-only`: just the check's round trip as the gateway makes it (`RedisState.admit`, 3,000
calls in a row, no gateway). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import drivers, procs
from bench.keys import layout
from bench.scenarios import BY_ID, SLUICE, request_for

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "bench" / "sluice-bench.yaml"
RPM = {"SLUICE_KEY_RPM": "1000000000"}
HIGH = {**RPM, "SLUICE_KEY_TPM": "1000000000000", "SLUICE_KEY_MAX_CONCURRENCY": "100000"}


@contextlib.contextmanager
def gateway(
    upstream: str, env_extra: dict[str, str], workdir: Path, cpus: str | None, tree: Path | None = None
) -> Iterator[procs.Server]:
    """One gateway; `tree`: from another checkout (its .venv and its bench config) instead of this one."""
    port = procs.free_port()
    exe = tree / ".venv" / "bin" / "sluice" if tree else Path(sys.executable).with_name("sluice")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli.main"]
    config = tree / "bench" / "sluice-bench.yaml" if tree else CONFIG
    command = [*base, "demo", "--config", str(config), "--upstream", upstream, "--host", procs.HOST]
    command += ["--port", str(port), "--workers", "1"]
    env = procs.clean_env(("SLUICE_", "LITELLM_"))
    env.update(
        SLUICE_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / f'limits-{port}.db'}",
        SLUICE_AUDIT_SPOOL=str(workdir / f"spool-{port}"),
        **env_extra,
    )
    server = procs.start_server("sluice", procs.pinned(cpus, command), port=port, workdir=workdir, env=env)
    try:
        procs.wait_ready(server, "/readyz", 120)
        yield server
    finally:
        procs.stop(server)


def cell(
    server: procs.Server, scenario_id: str, args: argparse.Namespace, client: str | None
) -> dict[str, Any]:
    spec = request_for(SLUICE, server.url, BY_ID[scenario_id])
    procs.wait_idle(server.proc.pid)
    if scenario_id == "ns_c1":
        cpu, redis_cpu = procs.cpu_seconds(server.proc.pid), _redis_cpu(args.redis)
        result = drivers.run_loadgen(
            "latency", spec, concurrency=1, duration=args.duration, max_requests=1_000_000, cpus=client
        )
        count = max(1, result["requests"])
        return {
            "p50": result["total_ms"]["p50"],
            "p99": result["total_ms"]["p99"],
            "cpu_us": (procs.cpu_seconds(server.proc.pid) - cpu) / count * 1e6,
            "redis_us": (_redis_cpu(args.redis) - redis_cpu) / count * 1e6,
            "errors": result["errors"],
        }
    if drivers.wrk_available():
        result = drivers.run_wrk(
            spec,
            concurrency=64,
            duration=args.duration,
            max_requests=1_000_000,
            cpus=client,
            workdir=args.workdir,
            ramp=2,
        )
    else:
        result = drivers.run_loadgen(
            "throughput",
            spec,
            concurrency=64,
            duration=args.duration,
            max_requests=1_000_000,
            cpus=client,
            ramp=2,
        )
    return {"rps": result["rps"], "errors": result["errors"]}


def paired(servers: dict[str, procs.Server], rounds: int, client: str | None) -> dict[str, dict[str, float]]:
    """c=1 latency with the gateways taking turns, one request each per round (the order rotated
    every round): a load that comes and goes on a shared machine hits every gateway alike. Per
    gateway: p50, and the median over rounds of its latency minus the first gateway's."""
    if client and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in client.split("-")[0].split(",")})
    labels = list(servers)
    specs = {label: request_for(SLUICE, server.url, BY_ID["ns_c1"]) for label, server in servers.items()}
    took: dict[str, list[float]] = {label: [] for label in labels}
    with contextlib.ExitStack() as stack:
        connections = {}
        for label, spec in specs.items():
            url = httpx.URL(spec.url)
            connections[label] = stack.enter_context(
                contextlib.closing(http.client.HTTPConnection(url.host, url.port))
            )
        headers = {
            label: dict(h.split(": ", 1) for h in spec.headers) | {"content-type": "application/json"}
            for label, spec in specs.items()
        }
        for turn in range(rounds + 50):  # the first 50 rounds warm up
            shift = turn % len(labels)
            for label in labels[shift:] + labels[:shift]:
                connection, spec = connections[label], specs[label]
                started = time.perf_counter()
                connection.request("POST", httpx.URL(spec.url).raw_path.decode(), spec.body, headers[label])
                answer = connection.getresponse()
                answer.read()
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status == 200, (label, answer.status)
                if turn >= 50:
                    took[label].append(elapsed)
    base = took[labels[0]]
    return {
        label: {
            "p50": statistics.median(values),
            "added": statistics.median(v - b for v, b in zip(values, base, strict=True)),
        }
        for label, values in took.items()
    }


def _redis_cpu(url: str) -> float:
    """Redis's own CPU time so far (user + system seconds, from INFO): its share of each request."""

    async def read() -> float:
        client = aioredis.Redis.from_url(url)
        try:
            info = await client.info("cpu")
        finally:
            await client.aclose()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    return asyncio.run(read())


async def _flush(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        names = [n async for n in client.scan_iter(match=f"{prefix}:*")]
        if names:
            await client.delete(*names)
    finally:
        await client.aclose()


async def _script_latency(url: str, prefix: str, calls: int = 3000) -> dict[str, float]:
    """The ADMIT script's round trip as the gateway makes it (`RedisState.admit`, Redis up)."""
    from gateway.core.limits import KeyLimits
    from gateway.core.resilience import Resilience
    from gateway.storage.redis_state import RedisState

    state = RedisState(url, Resilience(), prefix=prefix, timeout=1.0)
    await state.start()
    limits = KeyLimits(rpm=10**9, tpm=10**12)
    took: list[float] = []
    try:
        assert state.up, state.status()
        for i in range(calls):
            started = time.perf_counter()
            await state.admit("k", limits, f"l{i}")
            took.append((time.perf_counter() - started) * 1000)
    finally:
        await state.stop()
    took.sort()
    return {"p50": took[len(took) // 2], "p99": took[int(len(took) * 0.99)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--script-only", action="store_true")
    parser.add_argument(
        "--paired", type=int, metavar="ROUNDS", help="only c=1, the gateways taking turns (see `paired`)"
    )
    parser.add_argument(
        "--redis-only", action="store_true", help="only the no-limits row and the Redis rows (more repeats)"
    )
    parser.add_argument(
        "--compare", type=Path, help="another checkout (e.g. /work/main): its Redis rows too, interleaved"
    )
    args = parser.parse_args()
    if args.script_only:
        prefix = f"sluice-bench-{secrets.token_hex(4)}"
        try:
            found = asyncio.run(_script_latency(args.redis, prefix))
        finally:
            asyncio.run(_flush(args.redis, prefix))
        print(
            f"ADMIT round trip (rpm + tpm), 3,000 in a row: p50 {found['p50']:.3f} ms, "
            f"p99 {found['p99']:.3f} ms; load average {os.getloadavg()[0]:.2f}"
        )
        return 0
    args.workdir = Path(tempfile.mkdtemp(prefix="bench-limits-"))
    gateway_cpus, client = layout(not args.no_pin)
    prefix = f"sluice-bench-{secrets.token_hex(4)}"
    redis = {"SLUICE_REDIS_URL": args.redis, "SLUICE_REDIS_PREFIX": prefix}
    targets = {
        "no limits": {},
        "no limits, Redis": redis,
        "rpm, per process": RPM,
        "rpm, Redis": {**RPM, **redis},
        "rpm + tpm + max_concurrency, per process": HIGH,
        "rpm + tpm + max_concurrency, Redis": {**HIGH, **redis},
    }
    if args.redis_only:
        targets = {
            k: v for k, v in targets.items() if k == "no limits" or k.endswith("max_concurrency, Redis")
        }
        targets["rpm, Redis"] = {**RPM, **redis}
    trees: dict[str, Path | None] = dict.fromkeys(targets)
    if args.compare:
        for label in ("rpm, Redis", "rpm + tpm + max_concurrency, Redis"):
            other = f"{label} [{args.compare.name}]"
            targets[other], trees[other] = targets[label], args.compare.resolve()
    raw: dict[str, list[dict[str, Any]]] = {}
    upstream = procs.start_upstream(sys.executable, cpus=client, workdir=args.workdir, env=procs.clean_env())
    load_before = os.getloadavg()
    try:
        with contextlib.ExitStack() as stack:
            servers = {
                label: stack.enter_context(
                    gateway(upstream.url, env, args.workdir, gateway_cpus, trees[label])
                )
                for label, env in targets.items()
            }
            shared = httpx.get(f"{servers['rpm, Redis'].url}/readyz", timeout=10).json()["shared_state"]
            assert shared["status"] == "ok", shared
            for server in servers.values():  # warm-up
                drivers.run_loadgen(
                    "throughput",
                    request_for(SLUICE, server.url, BY_ID["ns_c64"]),
                    concurrency=8,
                    duration=2,
                    max_requests=2000,
                    cpus=client,
                )
            labels = list(servers)
            if args.paired:
                pairs = paired(servers, args.paired, client)
                print(write_paired(args, pairs, load_before, os.getloadavg()))
                return 0
            for repeat in range(args.repeats):
                shift = repeat % len(labels)
                order = labels[shift:] + labels[:shift]
                for scenario_id in ("ns_c1", "ns_c64"):
                    for label in order:
                        value = cell(servers[label], scenario_id, args, client)
                        raw.setdefault(f"{scenario_id}|{label}", []).append(value)
                        print(f"{scenario_id} {label} #{repeat + 1}: {value}", file=sys.stderr)
    finally:
        procs.stop(upstream)
        asyncio.run(_flush(args.redis, prefix))
    write(args, raw, load_before, os.getloadavg(), list(targets))
    return 0


def write_paired(
    args: argparse.Namespace,
    found: dict[str, dict[str, float]],
    before: tuple[float, ...],
    after: tuple[float, ...],
) -> str:
    lines = [
        f"Command: `.venv/bin/python bench/limits.py --paired {args.paired}"
        + (" --redis-only" if args.redis_only else "")
        + (f" --compare {args.compare}" if args.compare else "")
        + "`",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; load average "
        f"{before[0]:.2f} before, {after[0]:.2f} after; Redis on the same host.",
        "",
        "| gateway | non-stream c=1 p50 (ms) | added: median of paired differences (ms) |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {v['p50']:.3f} | {v['added']:+.3f} |" for label, v in found.items()]
    lines += ["", f"{args.paired:,} rounds, one request to each gateway per round, in turn.", ""]
    return "\n".join(lines)


def write(
    args: argparse.Namespace,
    raw: dict[str, list[dict[str, Any]]],
    before: tuple[float, ...],
    after: tuple[float, ...],
    labels: list[str],
) -> None:
    def median(scenario: str, label: str, field: str) -> float:
        return statistics.median(v[field] for v in raw[f"{scenario}|{label}"])

    base = labels[0]
    lines = [
        f"Command: `.venv/bin/python bench/limits.py --duration {args.duration:g} --repeats {args.repeats}"
        + (" --no-pin" if args.no_pin else "")
        + (" --redis-only" if args.redis_only else "")
        + (f" --compare {args.compare}" if args.compare else "")
        + "`",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; load average "
        f"{before[0]:.2f} before, {after[0]:.2f} after; Redis on the same host; c=64 driver: "
        f"{'wrk' if drivers.wrk_available() else 'bench/loadgen.py'}.",
        "",
        "| gateway | non-stream c=1 p50 (ms) | added p50 | c=1 p99 (ms) | added p99 | gateway CPU per "
        "request, c=1 (µs) | added | Redis CPU per request (µs) | c=64 (req/s) | vs no limits | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        p50, p99, cpu, rps = (
            median("ns_c1", label, "p50"),
            median("ns_c1", label, "p99"),
            median("ns_c1", label, "cpu_us"),
            median("ns_c64", label, "rps"),
        )
        errors = sum(v["errors"] for k in ("ns_c1", "ns_c64") for v in raw[f"{k}|{label}"])
        lines.append(
            f"| {label} | {p50:.3f} | {p50 - median('ns_c1', base, 'p50'):+.3f} | {p99:.3f} | "
            f"{p99 - median('ns_c1', base, 'p99'):+.3f} | {cpu:.0f} | "
            f"{cpu - median('ns_c1', base, 'cpu_us'):+.0f} | {median('ns_c1', label, 'redis_us'):.0f} | "
            f"{rps:,.0f} | "
            f"{rps / median('ns_c64', base, 'rps'):.2f}x | {errors} |"
        )
    lines += ["", f"Medians of {args.repeats} rotated repetitions of {args.duration:g} s cells.", ""]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
