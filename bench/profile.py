"""Profile Sluice under load with py-spy: where one worker's CPU goes, per path.

    .venv/bin/pip install py-spy          # once; py-spy needs ptrace (root, or CAP_SYS_PTRACE)
    .venv/bin/python bench/profile.py [--duration 10] [--out /tmp/profile.md]

Starts the fake upstream and Sluice (one worker, pinned as in bench/run.py), warms it up, then
for each path (non-stream pass-through, stream pass-through, litellm translation; c=64 load from
bench/loadgen.py) records `py-spy record --format raw --nolineno` of the worker and summarises
the collapsed stacks: self time by function, inclusive time by function, self time by package.
The raw stacks (and flame graphs with `--svg`) stay in the work directory. bench/PROFILE.md is
the reading of one such run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/profile.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs, report
from bench.drivers import LOADGEN
from bench.run import READY_PATHS, SLUICE_CONFIG, Layout, log, sluice_command
from bench.scenarios import BY_ID, SLUICE, RequestSpec, request_for

DEFAULT_SCENARIOS = ("ns_c64", "st_c64", "tr_c64", "trst_c64", "ns_c1")
TWO_LEVEL = ("gateway", "policies", "litellm")  # packages shown with their sub-package
STRIP = ("site-packages/", "lib/python3.11/", "lib/python3.12/", "lib/python3.13/")


def short(frame: str) -> str:
    """`func (path)` with the path cut to its package-relative part."""
    name, _, path = frame.partition(" (")
    path = path.rstrip(")")
    for marker in STRIP:
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.split("/work/main/", 1)[-1]
    return f"{name} ({path})" if path else name


def package(frame: str) -> str:
    """The top-level package (or stdlib module) a frame belongs to."""
    path = short(frame).partition(" (")[2].rstrip(")")
    if not path:
        return "?"
    head = path.split("/", 1)[0]
    if head.endswith(".py"):
        head = head[:-3]
    if head in TWO_LEVEL and path.count("/") >= 2:
        return "/".join(path.split("/")[:2]).removesuffix(".py")
    return head


# Where the time goes, by what it is for: (label, substrings of frames; a sample counts once
# when any frame on its stack contains any of them). Inclusive, so rows overlap.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("uvicorn: the ASGI request task (not work in tasks it spawns)", ("RequestResponseCycle.run_asgi",)),
    ("uvicorn: sending response bytes (`send`)", ("RequestResponseCycle.send ",)),
    ("FastAPI/Starlette app and middleware (the request task)", ("FastAPI.__call__",)),
    ("Sluice hot path handler (gateway/hotpath.py, its own task)", ("HotPath._handle",)),
    ("request body read + JSON parse + validation", ("read_body ", "parse_chat", "parse_body", "parse_json")),
    ("authentication (key hash, lookup)", ("Authenticator.authenticate",)),
    ("policy and routing", ("effective_policy", "Router.plan", "for_request")),
    ("httpx AsyncClient layer, all (send)", ("AsyncClient.send ",)),
    ("httpx build_request (URL, headers objects)", ("BaseClient.build_request",)),
    ("httpx cookie extraction per response", ("Cookies.extract_cookies",)),
    ("Sluice FastTransport (the wire, httptools)", ("FastTransport.handle_async_request",)),
    ("per-chunk asyncio.timeout in the relay", ("Timeout.__aenter__", "Timeout.__aexit__", "timeouts.py)")),
    ("Starlette StreamingResponse (relay loop, sends, task group)", ("StreamingResponse.__call__",)),
    ("JSON response (starlette Response)", ("Response.__call__ (starlette/responses.py)",)),
    ("audit: building the record (request path)", ("Call.event", "LedgerSink.record", "ChatService._served")),
    ("audit: ledger writer (SQLAlchemy, aiosqlite)", ("LedgerSink._run",)),
    ("litellm: acompletion (all of it)", ("acompletion (litellm",)),
    ("litellm: logging object, cost, success handlers", ("litellm_logging.py", "cost_calculator.py")),
    ("litellm: stream wrapper (CustomStreamWrapper)", ("CustomStreamWrapper",)),
    ("litellm: work in its thread pool", ("concurrent/futures/thread.py",)),
    ("pydantic (models built and dumped)", ("pydantic/",)),
    ("copy.deepcopy", ("copy.py)",)),
)


def components(rows: list[tuple[list[str], int]], total: int) -> list[list[str]]:
    found: list[list[str]] = []
    for label, needles in COMPONENTS:
        count = sum(n for frames, n in rows if any(k in f for f in frames for k in needles))
        if count:
            found.append([label, f"{100 * count / total:.1f}%"])
    return found


def summarise(raw: str, top: int) -> tuple[int, list[str]]:
    """Tables of one py-spy raw (collapsed) profile."""
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    incl_pkg: Counter[str] = Counter()
    total = 0
    stacks: list[tuple[list[str], int]] = []
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += count
        stacks.append(([short(f) for f in frames], count))
        leaf = short(frames[-1])
        self_fn[leaf] += count
        self_pkg[package(frames[-1])] += count
        for name in {short(f) for f in frames}:
            incl_fn[name] += count
        for name in {package(f) for f in frames}:
            incl_pkg[name] += count

    def rows(counter: Counter[str], skip_base: bool = False) -> list[list[str]]:
        # Inclusive tables skip the frames under every sample (entry point, event loop): no news.
        kept = [(k, n) for k, n in counter.most_common() if not (skip_base and n >= 0.95 * total)]
        return [[f"`{name}`", f"{100 * n / total:.1f}%"] for name, n in kept[:top]]

    lines = [
        f"{total} samples",
        "",
        "By component (inclusive; rows overlap):",
        "",
        *report.table(["component", "% of samples"], components(stacks, total)),
        "",
        "Self time by package (the leaf frame's package):",
        "",
        *report.table(["package", "% of samples"], rows(self_pkg)),
        "",
        "Inclusive time by package (a sample counts once for every package on its stack; "
        "packages under 95% or more of all samples left out):",
        "",
        *report.table(["package", "% of samples"], rows(incl_pkg, skip_base=True)),
        "",
        "Self time by function:",
        "",
        *report.table(["function (file)", "% of samples"], rows(self_fn)),
        "",
        "Inclusive time by function (functions under 95% or more of all samples left out):",
        "",
        *report.table(["function (file)", "% of samples"], rows(incl_fn, skip_base=True)),
        "",
    ]
    return total, lines


def py_spy() -> str:
    found = Path(sys.executable).with_name("py-spy")
    if found.exists():
        return str(found)
    which = shutil.which("py-spy")
    if not which:
        raise SystemExit("bench: py-spy not found; .venv/bin/pip install py-spy")
    return which


NATIVE = {
    "uvloop": "uvloop/loop.",
    "httptools": "httptools/parser/parser.",
    "orjson": "orjson/orjson.",
    "pydantic_core": "pydantic_core/_pydantic_core.",
    "aiohttp (C parser)": "aiohttp/_http_parser.",
}


def native_modules(pid: int) -> list[str]:
    """Which native speed-ups the process has loaded (from /proc/PID/maps of the whole tree)."""
    found = set()
    for member in procs.tree(pid):
        try:
            maps = (Path("/proc") / str(member) / "maps").read_text()
        except OSError:
            continue
        found |= {name for name, marker in NATIVE.items() if marker in maps}
    return [f"{name}: {'loaded' if name in found else 'NOT loaded'}" for name in NATIVE]


def load_command(spec: RequestSpec, concurrency: int, seconds: float) -> list[str]:
    """bench/loadgen.py in throughput mode for `seconds`."""
    return [
        sys.executable,
        str(LOADGEN),
        "throughput",
        "--url",
        spec.url,
        "--body",
        spec.body,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(seconds),
        "--max-requests",
        "2000000",
        *(a for h in spec.headers for a in ("--header", h)),
        *(["--stream"] if spec.stream else []),
    ]


def spy_command(pid: int, seconds: int, rate: int, fmt: str, out: Path, gil: bool = True) -> list[str]:
    """py-spy record; with `gil`, only samples of the thread holding the GIL (CPU, not waiting)."""
    return [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--nolineno",
        "--full-filenames",
        "--format",
        fmt,
        "-o",
        str(out),
        *(["--gil"] if gil else []),
    ]


def profile(
    scenarios: Sequence[str], duration: float, rate: int, top: int, svg: bool, gil: bool, workdir: Path
) -> list[str]:
    layout = Layout.choose(pin=True)
    env = procs.clean_env(("SLUICE_", "LITELLM_"))
    upstream = procs.start_upstream(sys.executable, cpus=layout.client, workdir=workdir, env=env)
    port = procs.free_port()
    command = procs.pinned(layout.gateway, sluice_command(upstream.url, port, 1))
    sluice = procs.start_server("sluice-profile", command, port=port, workdir=workdir, env=env)
    out = [
        f"Sluice `{SLUICE_CONFIG.name}`, one worker on CPU {layout.gateway}; load from bench/loadgen.py; "
        f"py-spy at {rate} Hz for {duration:g} s per path"
        + (", samples holding the GIL only (CPU work, not waiting threads)." if gil else ", all threads."),
        "",
    ]
    try:
        procs.wait_ready(sluice, READY_PATHS[SLUICE], 180)
        for scenario_id in scenarios:
            scenario = BY_ID[scenario_id]
            spec = request_for(SLUICE, sluice.url, scenario)
            warm = subprocess.run(
                procs.pinned(layout.client, load_command(spec, scenario.concurrency, 2)),
                capture_output=True,
                timeout=60,
                check=False,
            )
            if warm.returncode != 0:
                raise SystemExit(f"bench: warm-up failed: {warm.stderr.decode()[-300:]}")
            procs.wait_idle(sluice.proc.pid)
            log(f"profiling {scenario_id} for {duration:g} s")
            with subprocess.Popen(
                procs.pinned(layout.client, load_command(spec, scenario.concurrency, duration + 4)),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            ) as load:
                time.sleep(1.5)
                raw_file = workdir / f"{scenario_id}.collapsed.txt"
                spy = spy_command(sluice.proc.pid, int(duration), rate, "raw", raw_file, gil)
                subprocess.run(spy, capture_output=True, timeout=duration + 60, check=True)
                if svg:
                    svg_file = workdir / f"{scenario_id}.svg"
                    seconds = max(1, int(duration // 2))
                    spy = spy_command(sluice.proc.pid, seconds, rate, "flamegraph", svg_file, gil)
                    subprocess.run(spy, capture_output=True, timeout=duration + 60, check=True)
                stdout, _ = load.communicate(timeout=duration + 60)
            total, lines = summarise(raw_file.read_text(), top)
            out += [f"## {scenario_id}: {scenario.title}", "", f"load: {stdout.decode().strip()}", "", *lines]
            log(f"{scenario_id}: {total} samples; raw stacks in {raw_file}")
        # After every path ran, everything the request paths import is loaded.
        out[2:2] = ["Native modules in the worker: " + "; ".join(native_modules(sluice.proc.pid)) + ".", ""]
    finally:
        procs.stop(sluice)
        procs.stop(upstream)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/profile.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of py-spy per path")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    parser.add_argument("--svg", action="store_true", help="also record flame graphs (a second run per path)")
    parser.add_argument("--all-threads", action="store_true", help="sample waiting threads too (no --gil)")
    parser.add_argument("--out", type=Path, help="write the tables here (default: stdout)")
    parser.add_argument("--workdir", type=Path, help="raw stacks and logs (default: a new temp dir)")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in BY_ID]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="sluice-profile-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    text = (
        "\n".join(
            profile(scenarios, args.duration, args.rate, args.top, args.svg, not args.all_threads, workdir)
        )
        + "\n"
    )
    if args.out:
        args.out.write_text(text)
        log(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
