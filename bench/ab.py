"""Two Sluice checkouts side by side: gateway CPU per request (every thread, from schedstat) and wall
p50 at c=1, interleaved, and, with `--instructions`, instructions per request under callgrind.

    .venv/bin/python bench/ab.py --a /work/main --b . --rounds 8 --requests 300
    .venv/bin/python bench/ab.py --a /work/main --b . --instructions --requests 200

Each checkout runs its own `sluice demo --config bench/sluice-bench.yaml` from its own `.venv`, in
front of one fake upstream. CPU mode: both gateways up at once on the last CPU (fake upstream and
client on the others), each round sends `--requests` requests per scenario to A then B (B then A on
odd rounds) on one keep-alive connection, after 20 warm-up requests; CPU is the gateway's run time
over the cell from /proc/PID/task/*/schedstat (ns, all threads, the ledger writer's included, its
batch waited for). Instructions mode: each gateway in turn under `valgrind --tool=callgrind
--instr-atstart=no`, instrumentation on only around the measured requests (start-up, litellm's
background import and warm-up left out): load-insensitive. bench/PROFILE.md has a reading.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/ab.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs
from bench.loadgen import BlockingConnection, build_target
from bench.run import demo_command
from bench.scenarios import BY_ID, SLUICE, request_for

DEFAULT_SCENARIOS = ("ns_c1", "st_c1", "rs_c1", "msg_c1")
WARM_UP = 20
INSTRUCTIONS_WARM_UP = 30
LEDGER_FLUSH = 0.3  # seconds: the ledger writes its batch (flush interval 0.2 s) within the cell
METRICS = ("cpu_us", "p50_ms", "first_ms")


def cpu_ns(pid: int) -> int:
    """Run time of every thread of the process tree, in ns (schedstat: no clock-tick rounding)."""
    total = 0
    for member in procs.tree(pid):
        for task in Path(f"/proc/{member}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def sluice(checkout: Path, upstream: str, port: int, wrapper: Sequence[str] = ()) -> list[str]:
    python = checkout / ".venv" / "bin"
    base = [str(python / "python"), str(python / "sluice")] if wrapper else [str(python / "sluice")]
    config = checkout / "bench" / "sluice-bench.yaml"
    return [*wrapper, *demo_command(base, config, upstream, port, 1)]


def connection(server: procs.Server, scenario: str) -> BlockingConnection:
    spec = request_for(SLUICE, server.url, BY_ID[scenario])
    return BlockingConnection(build_target(spec.url, spec.body.encode(), spec.headers, spec.stream), 120)


def cell(server: procs.Server, scenario: str, requests: int) -> dict[str, float]:
    conn = connection(server, scenario)
    try:
        for _ in range(WARM_UP):
            conn.request()
        time.sleep(LEDGER_FLUSH)
        before = cpu_ns(server.proc.pid)
        totals, firsts = [], []
        for _ in range(requests):
            total, first, _ = conn.request()
            totals.append(total)
            firsts.append(first)
        time.sleep(LEDGER_FLUSH)
        spent = cpu_ns(server.proc.pid) - before
    finally:
        conn.close()
    return {
        "cpu_us": spent / requests / 1000,
        "p50_ms": statistics.median(totals) * 1000,
        "first_ms": statistics.median(firsts) * 1000,
    }


@contextmanager
def upstream(workdir: Path) -> Iterator[procs.Server]:
    env = procs.clean_env(("SLUICE_", "LITELLM_"))
    server = procs.start_upstream(sys.executable, cpus="0", workdir=workdir, env=env)
    try:
        yield server
    finally:
        procs.stop(server)


def start(
    name: str, command: list[str], port: int, workdir: Path, *, ready: float = 180, malloc: bool = False
) -> procs.Server:
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    env = procs.clean_env(("SLUICE_", "LITELLM_"))
    if malloc:  # the C allocator, which valgrind sees through (pymalloc's arenas it does not)
        env["PYTHONMALLOC"] = "malloc"
    server = procs.start_server(name, command, port=port, workdir=directory, env=env)
    try:
        procs.wait_ready(server, "/readyz", ready)
        procs.wait_idle(server.proc.pid, longest=300)  # litellm's background import, the first cycle
    except BaseException:
        procs.stop(server)
        raise
    return server


def cpu_mode(
    checkouts: dict[str, Path], scenarios: Sequence[str], rounds: int, requests: int, workdir: Path
) -> None:
    with upstream(workdir) as fake:
        servers: dict[str, procs.Server] = {}
        try:
            for name, checkout in checkouts.items():
                port = procs.free_port()
                servers[name] = start(
                    name, procs.pinned("1", sluice(checkout, fake.url, port)), port, workdir
                )
            results: dict[tuple[str, str], list[dict[str, float]]] = {}
            for number in range(rounds):
                order = ("A", "B") if number % 2 == 0 else ("B", "A")
                for scenario in scenarios:
                    for name in order:
                        measured = cell(servers[name], scenario, requests)
                        results.setdefault((scenario, name), []).append(measured)
                        shown = ", ".join(f"{k} {v:.3f}" for k, v in measured.items())
                        print(f"round {number} {scenario} {name}: {shown}", flush=True)
        finally:
            for server in servers.values():
                procs.stop(server)
    print("\n| scenario | metric | A (median) | B (median) | B - A |\n|---|---|---|---|---|")
    for scenario in scenarios:
        for metric in METRICS:
            if metric == "first_ms" and not BY_ID[scenario].stream:
                continue
            a = statistics.median(r[metric] for r in results[(scenario, "A")])
            b = statistics.median(r[metric] for r in results[(scenario, "B")])
            print(f"| {scenario} | {metric} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")


def callgrind_total(path: Path) -> int:
    found = re.search(r"^totals:\s+(\d+)", path.read_text(errors="replace"), re.M)
    if found is None:
        raise SystemExit(f"bench: no totals in {path}")
    return int(found.group(1))


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def instructions_mode(
    checkouts: dict[str, Path], scenarios: Sequence[str], requests: int, workdir: Path
) -> None:
    if not shutil.which("valgrind"):
        raise SystemExit("bench: valgrind not found (apt-get install valgrind)")
    found: dict[tuple[str, str], float] = {}
    with upstream(workdir) as fake:
        for name, checkout in checkouts.items():
            out = workdir / f"callgrind.{name}"
            wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]
            port = procs.free_port()
            command = sluice(checkout, fake.url, port, wrapper)
            server = start(name, command, port, workdir, ready=900, malloc=True)
            pid = str(server.proc.pid)
            try:
                for scenario in scenarios:
                    conn = connection(server, scenario)
                    for _ in range(INSTRUCTIONS_WARM_UP):
                        conn.request()
                    time.sleep(1.0)
                    control("--zero", pid)
                    control("-i", "on", pid)
                    for _ in range(requests):
                        conn.request()
                    time.sleep(1.0)  # the ledger's batch
                    control("-i", "off", pid)
                    before = set(workdir.glob(f"callgrind.{name}.*"))
                    control(f"--dump={scenario}", pid)
                    time.sleep(1.0)
                    dumps = set(workdir.glob(f"callgrind.{name}.*")) - before
                    conn.close()
                    found[(scenario, name)] = sum(callgrind_total(p) for p in dumps) / requests / 1000
                    print(
                        f"{name} {scenario}: {found[(scenario, name)]:,.0f} k instructions/request",
                        flush=True,
                    )
            finally:
                procs.stop(server)
    print("\n| scenario | A (k instructions/request) | B | B / A |\n|---|---|---|---|")
    for scenario in scenarios:
        a, b = found[(scenario, "A")], found[(scenario, "B")]
        print(f"| {scenario} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/ab.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="checkout A (with its own .venv)")
    parser.add_argument("--b", type=Path, required=True, help="checkout B (with its own .venv)")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300, help="measured requests per cell")
    parser.add_argument("--instructions", action="store_true", help="callgrind instead of CPU time")
    parser.add_argument("--workdir", type=Path, help="logs and callgrind files (default: a new temp dir)")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in BY_ID or BY_ID[s].kind != "latency"]
    if unknown:
        parser.error(f"not a c=1 scenario: {', '.join(unknown)}")
    checkouts = {"A": args.a.resolve(), "B": args.b.resolve()}
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="sluice-ab-"))).resolve()
    if args.instructions:
        instructions_mode(checkouts, scenarios, args.requests, workdir)
    else:
        cpu_mode(checkouts, scenarios, args.rounds, args.requests, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
