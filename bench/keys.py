"""A database key against the config key: the same gateway, the same request, on SQLite and PostgreSQL.

    .venv/bin/python bench/keys.py [--duration 10] [--repeats 3] [--out bench/KEYS.md] [--no-pin]

What it does: one fake upstream; then, per backend, `sluice demo --config bench/sluice-bench.yaml`
(one worker) on a SQLite file or a scratch PostgreSQL database (127.0.0.1:5432, dropped afterwards),
with a master key; a database key is created through `POST /admin/keys`. Each repetition runs, in
turn, non-stream c=1 latency and c=64 throughput (bench/loadgen.py; wrk when installed) with the
config key `sk-sluice-bench` and with the database key, interleaved, the order swapped on every
repetition (a cell that follows another inherits its ledger backlog), so drift hits both alike.
The table shows medians over repetitions and the database/config ratio.
Pinning as bench/run.py: the gateway on the last CPU, upstream and load generator on the others.
Writes the Markdown table to `--out` (raw numbers beside it as `.json`). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import drivers, procs
from bench.scenarios import BY_ID, SLUICE, request_for

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "bench" / "sluice-bench.yaml"
MASTER_KEY = "sk-sluice-bench-master-" + secrets.token_hex(8)
BACKENDS = ("sqlite", "postgresql")


def layout(pin: bool) -> tuple[str | None, str | None]:
    cpus = os.cpu_count() or 1
    if not pin or cpus < 2:
        return None, None
    return str(cpus - 1), f"0-{cpus - 2}" if cpus > 2 else "0"


@contextlib.contextmanager
def gateway(upstream: str, url: str, workdir: Path, cpus: str | None) -> Iterator[procs.Server]:
    port = procs.free_port()
    exe = Path(sys.executable).with_name("sluice")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli.main"]
    command = [*base, "demo", "--config", str(CONFIG), "--upstream", upstream, "--host", procs.HOST]
    command += ["--port", str(port), "--workers", "1"]
    env = procs.clean_env(("SLUICE_", "LITELLM_"))
    env.update(
        SLUICE_DATABASE_URL=url, SLUICE_MASTER_KEY=MASTER_KEY, SLUICE_AUDIT_SPOOL=str(workdir / "spool")
    )
    server = procs.start_server("sluice", procs.pinned(cpus, command), port=port, workdir=workdir, env=env)
    try:
        procs.wait_ready(server, "/readyz", 120)
        yield server
    finally:
        procs.stop(server)


async def _pg(statement: str) -> None:
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'bench-keys.db'}"
        return
    name = f"sluice_bench_keys_{secrets.token_hex(4)}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_key(server: procs.Server) -> str:
    created = httpx.post(
        f"{server.url}/admin/keys",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"name": "bench-db"},
        timeout=30,
    )
    created.raise_for_status()
    key: str = created.json()["key"]
    return key


def cell(
    server: procs.Server, key: str | None, scenario_id: str, args: argparse.Namespace, client: str | None
) -> Any:
    scenario = BY_ID[scenario_id]
    spec = request_for(SLUICE, server.url, scenario)
    if key is not None:
        spec = dataclasses.replace(spec, headers=(f"authorization: Bearer {key}",))
    procs.wait_idle(server.proc.pid)
    if scenario.kind == "latency":
        result = drivers.run_loadgen(
            "latency", spec, concurrency=1, duration=args.duration, max_requests=1_000_000, cpus=client
        )
        return result["total_ms"].get("p50"), result["errors"]
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
    return result["rps"], result["errors"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "KEYS.md")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    args.workdir = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    gateway_cpus, client = layout(not args.no_pin)
    raw: dict[str, dict[str, list[Any]]] = {}
    upstream = procs.start_upstream(sys.executable, cpus=client, workdir=args.workdir, env=procs.clean_env())
    load_before = os.getloadavg()
    try:
        for backend in BACKENDS:
            with (
                database(backend, args.workdir) as url,
                gateway(upstream.url, url, args.workdir, gateway_cpus) as gw,
            ):
                keys = {"config key": None, "database key": database_key(gw)}
                for key in keys.values():  # warm-up: first litellm/DB use, the cache filled
                    drivers.run_loadgen(
                        "throughput",
                        dataclasses.replace(
                            request_for(SLUICE, gw.url, BY_ID["ns_c64"]),
                            headers=(f"authorization: Bearer {key or 'sk-sluice-bench'}",),
                        ),
                        concurrency=8,
                        duration=2,
                        max_requests=400,
                        cpus=client,
                    )
                for repeat in range(args.repeats):
                    for scenario_id in ("ns_c1", "ns_c64"):
                        # config first on odd repetitions, database first on even ones
                        order = list(keys.items()) if repeat % 2 == 0 else list(keys.items())[::-1]
                        for label, key in order:
                            value = cell(gw, key, scenario_id, args, client)
                            raw.setdefault(f"{backend}|{scenario_id}|{label}", []).append(value)
                            print(f"{backend} {scenario_id} {label} #{repeat + 1}: {value}", file=sys.stderr)
    finally:
        procs.stop(upstream)
    load_after = os.getloadavg()
    write(args, raw, load_before, load_after)
    return 0


def write(
    args: argparse.Namespace, raw: dict[str, list[Any]], before: tuple[float, ...], after: tuple[float, ...]
) -> None:
    def median(backend: str, scenario: str, label: str) -> float:
        return statistics.median(v[0] for v in raw[f"{backend}|{scenario}|{label}"])

    def errors(backend: str, scenario: str, label: str) -> int:
        return sum(v[1] for v in raw[f"{backend}|{scenario}|{label}"])

    lines = [
        "# A database key beside the config key (bench/keys.py)",
        "",
        f"Command: `.venv/bin/python bench/keys.py --duration {args.duration:g} --repeats {args.repeats}`"
        + (" --no-pin" if args.no_pin else ""),
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; load average "
        f"{before[0]:.2f} before, {after[0]:.2f} after; c=64 driver: "
        f"{'wrk' if drivers.wrk_available() else 'bench/loadgen.py'}.",
        "",
        "| backend | key | non-stream c=1 p50 (ms) | non-stream c=64 (req/s) | errors | c=64 vs config key "
        "(ratio of medians; median of per-repetition ratios) |",
        "|---|---|---|---|---|---|",
    ]
    for backend in BACKENDS:
        config_rps = median(backend, "ns_c64", "config key")
        for label in ("config key", "database key"):
            rps = median(backend, "ns_c64", label)
            failed = errors(backend, "ns_c1", label) + errors(backend, "ns_c64", label)
            pairs = zip(raw[f"{backend}|ns_c64|{label}"], raw[f"{backend}|ns_c64|config key"], strict=True)
            paired = statistics.median(mine[0] / theirs[0] for mine, theirs in pairs)
            lines.append(
                f"| {backend} | {label} | {median(backend, 'ns_c1', label):.2f} | {rps:.0f} | "
                f"{failed} | {rps / config_rps:.2f}x; {paired:.2f}x |"
            )
    lines += ["", f"Medians of {args.repeats} interleaved repetitions of {args.duration:g} s cells.", ""]
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
