"""The benchmark in one command: direct vs Sluice vs LiteLLM Proxy, side by side, into bench/RESULTS.md.

    .venv/bin/python bench/run.py                     # full run: 10 s cells, 3 repeats, --workers 2
    .venv/bin/python bench/run.py --quick --skip-litellm --out /tmp/RESULTS.md   # ~1 s cells

What it does, in order (see bench/README.md):

1. creates bench/.venv with LiteLLM Proxy from PyPI if it is missing (never shared with Sluice);
2. starts the fake upstream (sluice_fakes.fake_upstream) as its own process;
3. measures start-up to ready of Sluice (`sluice demo --upstream ...`, bench/sluice-bench.yaml)
   and LiteLLM Proxy (bench/litellm-bench.yaml), each its own process with one worker;
4. warms every target up, then runs every scenario (bench/scenarios.py) against direct, Sluice
   and LiteLLM Proxy in turn (A B C A B C ...), `--repeats` times, each cell bounded in
   requests and seconds, and takes medians; reads RSS after load;
5. with `--workers N` (N > 1), measures the c=64 throughput of N-worker gateways as well;
6. writes the table (bench/report.py) to `--out` and the raw numbers next to it as JSON.

The gateways run on one core and the upstream plus the load generator on the other (taskset),
when the machine has two or more; `--no-pin` turns that off. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import drivers, procs, report
from bench.scenarios import BY_ID, DIRECT, LITELLM, SCENARIOS, SLUICE, Scenario, request_for

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SLUICE_CONFIG = BENCH / "sluice-bench.yaml"
LITELLM_CONFIG = BENCH / "litellm-bench.yaml"
LITELLM_VENV = BENCH / ".venv"
# 1.110.2 is the newest 1.x; on an index without its `litellm-proxy` companion package the newest
# release whose [proxy] extra resolves is used (1.108.7 is also what the baseline measured).
# Never 1.82.7 / 1.82.8 (compromised releases).
LITELLM_SPECS = ("litellm[proxy]==1.110.2", "litellm[proxy]==1.108.7")
BAD_LITELLM = {"1.82.7", "1.82.8"}
READY_PATHS = {SLUICE: "/readyz", LITELLM: "/health/readiness"}
READY_TIMEOUT = 180.0
WARMUP_CONCURRENCY = 8


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    duration: float
    repeats: int
    workers: int
    skip_litellm: bool
    loadgen: str
    pin: bool
    out: Path
    warmup: float
    warmup_requests: int
    ramp: float
    startup_samples: int
    max_requests: int
    scenarios: tuple[Scenario, ...]
    litellm_specs: tuple[str, ...]
    workdir: Path
    translation: str = "auto"  # SLUICE_TRANSLATION of the Sluice under test


@dataclass
class Layout:
    """Which cores the gateways and the client side (upstream + load generator) may use."""

    gateway: str | None
    client: str | None

    @classmethod
    def choose(cls, pin: bool) -> Layout:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls(None, None)
        return cls(str(cpus[-1]), ",".join(str(c) for c in cpus[:-1]))


@dataclass
class Run:
    options: Options
    layout: Layout
    use_wrk: bool
    upstream: procs.Server | None = None
    servers: dict[str, procs.Server] = field(default_factory=dict)
    facts: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cells: list[dict[str, Any]] = field(default_factory=list)

    def fact(self, target: str, name: str, value: float) -> None:
        self.facts.setdefault(target, {}).setdefault(name, []).append(value)


# --- set-up --------------------------------------------------------------------------------------


def ensure_litellm_venv(specs: Sequence[str]) -> Path:
    """bench/.venv/bin/litellm, installing LiteLLM Proxy from PyPI into bench/.venv if missing."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    log(f"creating {LITELLM_VENV} for LiteLLM Proxy (one time, a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)
    pip = str(LITELLM_VENV / "bin" / "pip")
    subprocess.run([pip, "install", "-q", "--upgrade", "pip"], check=False, timeout=600)
    for spec in specs:
        log(f"pip install {spec}")
        if subprocess.run([pip, "install", "-q", spec], check=False, timeout=1800).returncode == 0:
            break
        log(f"{spec} did not install; trying the next")
    else:
        raise SystemExit(f"bench: none of {', '.join(specs)} installed into {LITELLM_VENV}")
    version = litellm_proxy_version()
    if version in BAD_LITELLM:
        raise SystemExit(f"bench: litellm {version} is a known-compromised release; remove {LITELLM_VENV}")
    return exe


def litellm_proxy_version() -> str:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        return "not installed"
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip()
    return ""


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
    }


def versions(skip_litellm: bool) -> dict[str, str]:
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    found = {
        "Python": platform.python_version(),
        "Sluice": f"{_version('sluice')}, commit {commit or 'unknown'}",
        "litellm (inside Sluice)": _version("litellm"),
        "LiteLLM Proxy (bench/.venv)": "skipped" if skip_litellm else litellm_proxy_version(),
        "wrk": drivers.wrk_version(),
    }
    for name in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "httpx", "orjson"):
        found[name] = _version(name)
    return found


# --- processes -----------------------------------------------------------------------------------


def sluice_command(upstream: str, port: int, workers: int) -> list[str]:
    exe = Path(sys.executable).with_name("sluice")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli.main"]
    return demo_command(base, SLUICE_CONFIG, upstream, port, workers)


def demo_command(base: Sequence[str], config: Path, upstream: str, port: int, workers: int) -> list[str]:
    """`sluice demo` as the bench starts it: `base` runs the CLI (an executable, or python and it)."""
    return [
        *base,
        "demo",
        "--config",
        str(config),
        "--upstream",
        upstream,
        "--host",
        procs.HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def litellm_command(port: int, workers: int) -> list[str]:
    return [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        str(LITELLM_CONFIG),
        "--host",
        procs.HOST,
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]


def start_gateway(run: Run, target: str, workers: int, cpus: str | None, tag: str) -> procs.Server:
    assert run.upstream is not None
    port = procs.free_port()
    workdir = run.options.workdir / f"{target}-{tag}"
    workdir.mkdir(parents=True, exist_ok=True)
    if target == SLUICE:
        command = sluice_command(run.upstream.url, port, workers)
        env = procs.clean_env(("SLUICE_", "LITELLM_"))
        env["SLUICE_TRANSLATION"] = run.options.translation
    else:
        command = litellm_command(port, workers)
        env = procs.clean_env(("SLUICE_", "LITELLM_"))
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_OFFLINE_MODE="true",
            BENCH_OPENAI_BASE=f"{run.upstream.url}/v1",
            BENCH_ANTHROPIC_BASE=run.upstream.url,
        )
    server = procs.start_server(
        f"{target}-{tag}", procs.pinned(cpus, command), port=port, workdir=workdir, env=env
    )
    try:
        procs.wait_ready(server, READY_PATHS[target], READY_TIMEOUT)
    except procs.StartError:
        procs.stop(server)
        raise
    return server


def gateways(options: Options) -> list[str]:
    return [SLUICE] if options.skip_litellm else [SLUICE, LITELLM]


# --- measuring -----------------------------------------------------------------------------------


def base_url(run: Run, target: str) -> str:
    if target == DIRECT:
        assert run.upstream is not None
        return run.upstream.url
    return run.servers[target].url


def pid_of(run: Run, target: str) -> int:
    server = run.upstream if target == DIRECT else run.servers[target]
    assert server is not None
    return server.proc.pid


def warm_up(run: Run, target: str) -> None:
    """Every request kind at low concurrency, for `warmup` seconds or `warmup_requests` requests,
    whichever comes first (the first litellm call in a process takes about half a second). Streams
    warm up with 20 unpaced chunks: a 1,000-chunk stream through LiteLLM Proxy at c=8 outlasts a round."""
    seen: set[tuple[str, bool, str]] = set()
    for scenario in run.options.scenarios:
        if (scenario.wire, scenario.stream, scenario.api) in seen:
            continue
        seen.add((scenario.wire, scenario.stream, scenario.api))
        spec = request_for(
            target, base_url(run, target), dataclasses.replace(scenario, chunks=20, chunk_delay_ms=0)
        )
        for _ in range(5):  # litellm loads in the background: on a busy machine that outlasts one round
            result = drivers.run_loadgen(
                "throughput",
                spec,
                concurrency=WARMUP_CONCURRENCY,
                duration=run.options.warmup,
                max_requests=run.options.warmup_requests,
                cpus=run.layout.client,
            )
            if result["requests"]:
                break
        if result["requests"] == 0:
            raise SystemExit(
                f"bench: {target} answered no {scenario.title} request during warm-up; "
                f"see the logs in {run.options.workdir}"
            )


def quiesce(run: Run) -> None:
    """Let every gateway finish work left over from the previous cell (abandoned requests)."""
    for server in run.servers.values():
        procs.wait_idle(server.proc.pid)


def measure(run: Run, target: str, scenario: Scenario, repeat: int, phase: str) -> dict[str, Any]:
    quiesce(run)
    spec = request_for(target, base_url(run, target), scenario)
    pid = pid_of(run, target)
    cpu_before = procs.cpu_seconds(pid)
    core_before = procs.core_busy_seconds(run.layout.gateway)
    wall_before = time.monotonic()
    options = run.options
    if scenario.kind == "latency":
        result = drivers.run_loadgen(
            "latency",
            spec,
            concurrency=1,
            duration=options.duration,
            max_requests=options.max_requests,
            cpus=run.layout.client,
        )
    elif run.use_wrk:
        result = drivers.run_wrk(
            spec,
            concurrency=scenario.concurrency,
            duration=options.duration,
            max_requests=options.max_requests,
            cpus=run.layout.client,
            workdir=options.workdir,
            ramp=options.ramp,
        )
    else:
        result = drivers.run_loadgen(
            "throughput",
            spec,
            concurrency=scenario.concurrency,
            duration=options.duration,
            max_requests=options.max_requests,
            cpus=run.layout.client,
            ramp=options.ramp,
        )
    cpu = procs.cpu_seconds(pid) - cpu_before
    core_after = procs.core_busy_seconds(run.layout.gateway)
    foreign = None
    if core_before is not None and core_after is not None and target != DIRECT and phase == "main":
        # CPU used on the gateway core by anything but the measured gateway (other gateways
        # idling, other work on the machine): interference, as a share of one core.
        foreign = round(max(0.0, core_after - core_before - cpu) / (time.monotonic() - wall_before), 3)
    result.update(
        foreign_cpu_share=foreign,
        scenario=scenario.id,
        target=target,
        repeat=repeat,
        phase=phase,
        cpu_s=round(cpu, 3),
        cpu_ms_per_request=round(cpu * 1000 / result["requests"], 3) if result["requests"] else None,
    )
    return result


def describe(result: dict[str, Any]) -> str:
    if result["mode"] == "throughput":
        return f"{result['rps']:.0f} req/s, {result['errors']} errors"
    key = f"{BY_ID[result['scenario']].metric}_ms"
    stats = result[key]
    return f"p50 {stats.get('p50', float('nan')):.3f} ms, p99 {stats.get('p99', float('nan')):.3f} ms"


def run_cells(run: Run, targets: Sequence[str], scenarios: Sequence[Scenario], phase: str) -> None:
    for repeat in range(1, run.options.repeats + 1):
        for scenario in scenarios:
            for target in targets:  # interleaved: A B C, A B C, ... so drift hits every target alike
                result = measure(run, target, scenario, repeat, phase)
                run.cells.append(result)
                log(f"{phase} {repeat}/{run.options.repeats} {scenario.id:8} {target:8} {describe(result)}")


def compile_sluice() -> None:
    """Sluice's bytecode, as an installation has it (pip and the Docker image compile at install).
    A checkout under PYTHONDONTWRITEBYTECODE=1 would otherwise compile its ~100 modules at every
    start, ~0.1 s of CPU that no installed Sluice, nor LiteLLM Proxy (from wheels), pays."""
    for package in ("gateway", "policies"):
        compileall.compile_dir(REPO / package, quiet=1)


def startup_samples(run: Run) -> None:
    """Extra start/stop cycles for the start-up time (the main start gives one more sample)."""
    for _ in range(run.options.startup_samples - 1):
        for target in gateways(run.options):
            server = start_gateway(run, target, 1, run.layout.gateway, "startup")
            assert server.ready_after is not None
            run.fact(target, "startup_s", round(server.ready_after, 3))
            log(f"start-up {target}: {server.ready_after:.2f} s")
            procs.stop(server)


@contextlib.contextmanager
def started(run: Run, workers: int, cpus: str | None, tag: str) -> Iterator[None]:
    try:
        for target in gateways(run.options):
            server = start_gateway(run, target, workers, cpus, tag)
            run.servers[target] = server
            assert server.ready_after is not None
            suffix = "" if tag == "main" else f"_{tag}"
            if tag == "main":
                run.fact(target, "startup_s", round(server.ready_after, 3))
            # Idle means done starting: Sluice imports litellm in the background after it is ready
            # (~150 MB over a few seconds), so wait until the process stops using CPU.
            time.sleep(1.0)
            procs.wait_idle(server.proc.pid)
            run.fact(target, f"rss_idle_mb{suffix}", procs.rss_mb(server.proc.pid))
            log(f"{server.name} ready after {server.ready_after:.2f} s at {server.url}")
        yield
    finally:
        for server in run.servers.values():
            procs.stop(server)
        run.servers.clear()


def rss_after_load(run: Run, suffix: str = "") -> None:
    for target, server in run.servers.items():
        run.fact(target, f"rss_load_mb{suffix}", procs.rss_mb(server.proc.pid))


def benchmark(options: Options) -> dict[str, Any]:
    use_wrk = options.loadgen == "wrk" or (options.loadgen == "auto" and drivers.wrk_available())
    if options.loadgen == "wrk" and not drivers.wrk_available():
        raise SystemExit("bench: --loadgen wrk, but wrk is not installed (apt-get install -y wrk)")
    run = Run(options, Layout.choose(options.pin), use_wrk)
    if not options.skip_litellm:
        ensure_litellm_venv(options.litellm_specs)
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    t0 = time.monotonic()
    env = procs.clean_env(("SLUICE_", "LITELLM_"))
    run.upstream = procs.start_upstream(
        sys.executable, cpus=run.layout.client, workdir=options.workdir, env=env
    )
    log(f"fake upstream at {run.upstream.url}; logs in {options.workdir}")
    targets = [DIRECT, *gateways(options)]
    scale: dict[str, Any] | None = None
    try:
        compile_sluice()
        startup_samples(run)
        with started(run, 1, run.layout.gateway, "main"):
            for target in targets:
                warm_up(run, target)
            run_cells(run, targets, options.scenarios, "main")
            rss_after_load(run)
        throughput = [s for s in options.scenarios if s.kind == "throughput"]
        if options.workers > 1 and throughput:
            suffix = f"_w{options.workers}"
            with started(run, options.workers, None, f"w{options.workers}"):
                for target in gateways(options):
                    warm_up(run, target)
                run_cells(run, gateways(options), throughput, f"w{options.workers}")
                rss_after_load(run, suffix)
            scale = {"workers": options.workers, "phase": f"w{options.workers}"}
    finally:
        procs.stop(run.upstream)
    return {
        "meta": {
            "date": started_at.isoformat(timespec="seconds"),
            "wall_seconds": round(time.monotonic() - t0, 1),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "machine": machine(),
            "versions": versions(options.skip_litellm),
            "settings": {
                "duration_s": options.duration,
                "repeats": options.repeats,
                "warmup_s": options.warmup,
                "warmup_requests": options.warmup_requests,
                "ramp_s": options.ramp,
                "max_requests_per_cell": options.max_requests,
                "throughput_driver": "wrk -t1" if use_wrk else "bench/loadgen.py (asyncio)",
                "latency_driver": "bench/loadgen.py (sequential, one keep-alive connection)",
                "gateway_cpus": run.layout.gateway,
                "client_cpus": run.layout.client,
                "skip_litellm": options.skip_litellm,
                "sluice_translation": options.translation,
                "scenarios": [s.id for s in options.scenarios],
                "workdir": str(options.workdir),
            },
        },
        "targets": targets,
        "cells": run.cells,
        "facts": run.facts,
        "scale": scale,
    }


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--duration", type=float, help="seconds of load per cell (default 10; --quick 1)")
    parser.add_argument("--repeats", type=int, help="repetitions of every cell, medians reported (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="1 s cells, 1 repeat, short warm-up, no scale-out"
    )
    parser.add_argument(
        "--workers", type=int, help="also measure throughput with this many workers (default 2; 1: skip)"
    )
    parser.add_argument("--skip-litellm", action="store_true", help="direct and Sluice only")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="c=64 driver")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md", help="the Markdown report")
    parser.add_argument("--scenarios", help=f"comma-separated subset of {','.join(s.id for s in SCENARIOS)}")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="request budget per cell")
    parser.add_argument("--litellm-spec", action="append", help="pip requirement(s) for bench/.venv")
    parser.add_argument("--workdir", type=Path, help="logs and scratch files (default: a new temp dir)")
    parser.add_argument(
        "--translation",
        choices=("auto", "litellm"),
        default="auto",
        help="Sluice's translation path (SLUICE_TRANSLATION): auto = litellm's transformations on\n"
        "Sluice's transport; litellm = litellm.acompletion (the path before issue 15)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    chosen = SCENARIOS
    if args.scenarios:
        wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {s.id for s in SCENARIOS})
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(unknown)}")
        chosen = tuple(s for s in SCENARIOS if s.id in wanted)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    repeats = args.repeats or (1 if quick else 3)
    return Options(
        duration=args.duration or (1.0 if quick else 10.0),
        repeats=repeats,
        workers=args.workers or (1 if quick else 2),
        skip_litellm=args.skip_litellm,
        loadgen=args.loadgen,
        pin=not args.no_pin,
        out=args.out,
        warmup=15.0 if quick else 3.0,
        warmup_requests=40 if quick else 3000,
        ramp=0.0 if quick else 2.0,
        startup_samples=1 if quick else repeats,
        max_requests=args.max_requests,
        scenarios=chosen,
        litellm_specs=tuple(args.litellm_spec or LITELLM_SPECS),
        workdir=workdir.resolve(),
        translation=args.translation,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    results = benchmark(options)
    results["meta"]["command"] = " ".join(["bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(report.render(results))
    options.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {options.out} and {options.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
