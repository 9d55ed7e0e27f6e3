"""Render bench/run.py's raw results as bench/RESULTS.md: medians, ratios, targets met or missed.

What belongs here: turning the list of measured cells (one per scenario, target and repeat)
into the side-by-side table (direct, Sluice, LiteLLM Proxy, Sluice/LiteLLM, Sluice minus
direct), the targets of the performance issue with met / missed, per-cell details (spread,
errors, CPU per request) and the scale-out table. Pure: no processes, no I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bench.scenarios import BY_ID, DIRECT, LITELLM, SLUICE, TARGET_NAMES

Cell = dict[str, Any]
Getter = Callable[[Cell], float | None]


def _stat(metric: str, stat: str) -> Getter:
    def get(cell: Cell) -> float | None:
        value = cell.get(metric, {}).get(stat)
        return float(value) if value is not None else None

    return get


def _rps(cell: Cell) -> float | None:
    return float(cell["rps"]) if "rps" in cell else None


@dataclass(frozen=True)
class Row:
    label: str
    scenario: str
    get: Getter
    unit: str  # "ms" or "req/s"


ROWS: tuple[Row, ...] = (
    Row("non-stream, c=1, latency p50", "ns_c1", _stat("total_ms", "p50"), "ms"),
    Row("non-stream, c=1, latency p99", "ns_c1", _stat("total_ms", "p99"), "ms"),
    Row("non-stream, c=64, throughput", "ns_c64", _rps, "req/s"),
    Row("stream (20 chunks), c=1, time to first token p50", "st_c1", _stat("first_ms", "p50"), "ms"),
    Row("stream (20 chunks), c=1, time to first token p99", "st_c1", _stat("first_ms", "p99"), "ms"),
    Row("stream (20 chunks), c=1, whole stream p50", "st_c1", _stat("total_ms", "p50"), "ms"),
    Row("stream (20 chunks), c=64, throughput", "st_c64", _rps, "req/s"),
    Row(
        "translation (Anthropic wire), non-stream, c=1, latency p50", "tr_c1", _stat("total_ms", "p50"), "ms"
    ),
    Row(
        "translation (Anthropic wire), non-stream, c=1, latency p99", "tr_c1", _stat("total_ms", "p99"), "ms"
    ),
    Row("translation (Anthropic wire), non-stream, c=64, throughput", "tr_c64", _rps, "req/s"),
    Row("translation (Anthropic wire), stream, c=64, throughput", "trst_c64", _rps, "req/s"),
    Row("Responses API, non-stream, c=1, latency p50", "rs_c1", _stat("total_ms", "p50"), "ms"),
    Row("Responses API, non-stream, c=1, latency p99", "rs_c1", _stat("total_ms", "p99"), "ms"),
    Row("Responses API, non-stream, c=64, throughput", "rs_c64", _rps, "req/s"),
    Row("Responses API, stream, c=1, time to first event p50", "rsst_c1", _stat("first_ms", "p50"), "ms"),
    Row("Responses API, stream, c=1, whole stream p50", "rsst_c1", _stat("total_ms", "p50"), "ms"),
    Row("Responses API, stream, c=64, throughput", "rsst_c64", _rps, "req/s"),
    Row("Messages pass-through, non-stream, c=1, latency p50", "msg_c1", _stat("total_ms", "p50"), "ms"),
    Row("Messages pass-through, non-stream, c=1, latency p99", "msg_c1", _stat("total_ms", "p99"), "ms"),
    Row("Messages pass-through, non-stream, c=64, throughput", "msg_c64", _rps, "req/s"),
    Row(
        "Messages pass-through, stream, c=1, time to first token p50",
        "msgst_c1",
        _stat("first_ms", "p50"),
        "ms",
    ),
    Row("Messages pass-through, stream, c=1, whole stream p50", "msgst_c1", _stat("total_ms", "p50"), "ms"),
    Row("Messages pass-through, stream, c=64, throughput", "msgst_c64", _rps, "req/s"),
    Row("stream (1,000 chunks), c=1, whole stream p50", "long_c1", _stat("total_ms", "p50"), "ms"),
    Row(
        "translation (Anthropic wire), stream (1,000 chunks), c=1, whole stream p50",
        "trlong_c1",
        _stat("total_ms", "p50"),
        "ms",
    ),
    Row(
        "paced stream (200 chunks, 1 ms apart), c=1, whole stream p50",
        "paced_c1",
        _stat("total_ms", "p50"),
        "ms",
    ),
    Row(
        "translation (Anthropic wire), paced stream (200 chunks, 1 ms apart), c=1, whole stream p50",
        "trpaced_c1",
        _stat("total_ms", "p50"),
        "ms",
    ),
)
ROWS_BY_LABEL = {r.label: r for r in ROWS}
# The long streams' added cost per chunk, in µs: wall = (gateway - direct) whole-stream p50 over the
# chunks; CPU = the gateway's CPU per stream over the chunks (the request's own fixed cost, a few µs
# per chunk at most, is in both). The paced streams bring one event per network read (the realistic
# case); the long ones many events per read.
PER_CHUNK_ROWS = (
    ("pass-through stream, added cost per chunk", "long_c1"),
    ("translated stream, added cost per chunk", "trlong_c1"),
    ("paced pass-through stream, added cost per chunk", "paced_c1"),
    ("paced translated stream, added cost per chunk", "trpaced_c1"),
)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def cells_of(results: dict[str, Any], phase: str, scenario: str, target: str) -> list[Cell]:
    return [
        c
        for c in results["cells"]
        if c["phase"] == phase and c["scenario"] == scenario and c["target"] == target
    ]


def value(results: dict[str, Any], phase: str, row: Row, target: str) -> float | None:
    found = [v for v in (row.get(c) for c in cells_of(results, phase, row.scenario, target)) if v is not None]
    return median(found)


def errors(results: dict[str, Any], phase: str, scenario: str, target: str) -> int | None:
    cells = cells_of(results, phase, scenario, target)
    return sum(int(c.get("errors", 0)) for c in cells) if cells else None


def cpu_per_chunk(results: dict[str, Any], scenario: str, target: str) -> float | None:
    """The gateway's CPU per chunk of a long stream, in µs (its CPU per request over the chunks; the
    request's own fixed cost, a few ms, is in it). Unlike wall time, a busy machine hardly moves it."""
    found = [
        float(c["cpu_ms_per_request"])
        for c in cells_of(results, "main", scenario, target)
        if c.get("cpu_ms_per_request") is not None
    ]
    per_request = median(found)
    return None if per_request is None else per_request * 1000 / BY_ID[scenario].chunks


def wall_per_chunk(results: dict[str, Any], scenario: str, target: str) -> float | None:
    """What the gateway adds per chunk of a long stream to its whole duration, in µs: (gateway -
    direct) whole-stream p50 over the chunks. On a shared machine this moves with the load."""
    whole = Row("whole stream p50", scenario, _stat("total_ms", "p50"), "ms")
    t, d = value(results, "main", whole, target), value(results, "main", whole, DIRECT)
    return None if t is None or d is None else (t - d) * 1000 / BY_ID[scenario].chunks


def fact(results: dict[str, Any], target: str, name: str) -> float | None:
    return median(results["facts"].get(target, {}).get(name, []))


# --- formatting ----------------------------------------------------------------------------------


def fmt(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    if unit == "req/s":
        return f"{x:,.0f}"
    if unit in ("MB",):
        return f"{x:,.0f}"
    if unit == "s":
        return f"{x:.2f}"
    if abs(x) < 1:
        return f"{x:.3f}"
    return f"{x:.2f}" if abs(x) < 100 else f"{x:,.0f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    ratio = a / b
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def fmt_diff(a: float | None, b: float | None, unit: str) -> str:
    if a is None or b is None:
        return "-"
    diff = a - b
    sign = "+" if diff >= 0 else "-"
    return f"{sign}{fmt(abs(diff), unit)}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# --- sections ------------------------------------------------------------------------------------


def main_table(results: dict[str, Any]) -> list[str]:
    rows: list[list[str]] = []
    for row in ROWS:
        d, s, x = (value(results, "main", row, t) for t in (DIRECT, SLUICE, LITELLM))
        if d is None and s is None and x is None:
            continue
        unit = row.unit
        rows.append(
            [
                f"{row.label} ({unit})",
                fmt(d, unit),
                fmt(s, unit),
                fmt(x, unit),
                fmt_ratio(s, x),
                fmt_diff(s, d, unit),
            ]
        )
    for label, scenario in PER_CHUNK_ROWS:
        for kind, get in (("wall", wall_per_chunk), ("gateway CPU", cpu_per_chunk)):
            s, x = get(results, scenario, SLUICE), get(results, scenario, LITELLM)
            if s is not None or x is not None:
                rows.append([f"{label}, {kind} (µs)", "-", fmt(s, "µs"), fmt(x, "µs"), fmt_ratio(s, x), "-"])
    for label, name, unit in (
        ("start-up to ready", "startup_s", "s"),
        ("RSS idle", "rss_idle_mb", "MB"),
        ("RSS after load", "rss_load_mb", "MB"),
    ):
        s, x = fact(results, SLUICE, name), fact(results, LITELLM, name)
        if s is None and x is None:
            continue
        rows.append([f"{label} ({unit})", "-", fmt(s, unit), fmt(x, unit), fmt_ratio(s, x), "-"])
    header = ["scenario", "direct", "Sluice", "LiteLLM Proxy", "Sluice/LiteLLM", "Sluice - direct"]
    return table(header, rows)


@dataclass(frozen=True)
class Target:
    """One target of a performance issue, checked against a run.

    `kind` says how: `added` = Sluice minus direct on the latency row `source`, at most `limit` ms;
    `faster` = Sluice / LiteLLM Proxy on the throughput row `source`, at least `limit`, and no
    Sluice errors; `per_chunk` = Sluice's CPU per chunk of the long- or paced-stream scenario
    `source`, at most `limit` µs; `fact` = Sluice / LiteLLM Proxy of the process fact `source`, at
    most `limit`.
    """

    issue: str
    text: str
    kind: Literal["added", "faster", "per_chunk", "fact"]
    source: str
    limit: float


_NS, _ST = "non-stream, c=1, latency p50", "stream (20 chunks), c=1, time to first token p50"
_TR = "translation (Anthropic wire)"
_RS, _MSG = "Responses API", "Messages pass-through"
# Issue 15: the pass-through and translation paths; issue 14: the Responses and Messages
# pass-throughs; "1": the first benchmark issue's p99 bound, which no later issue restated.
TARGETS: tuple[Target, ...] = (
    Target("15", "pass-through non-stream, c=1: added latency p50 <= 0.5 ms", "added", _NS, 0.5),
    Target("15", "pass-through stream, c=1: added time to first token p50 <= 0.5 ms", "added", _ST, 0.5),
    Target(
        "15",
        "pass-through non-stream, c=64: req/s >= 20x LiteLLM Proxy, 0 errors",
        "faster",
        "non-stream, c=64, throughput",
        20,
    ),
    Target(
        "15",
        "pass-through stream, c=64: req/s >= 20x LiteLLM Proxy, 0 errors",
        "faster",
        "stream (20 chunks), c=64, throughput",
        20,
    ),
    Target(
        "15",
        "translation non-stream, c=64: req/s >= 5x LiteLLM Proxy, 0 errors",
        "faster",
        f"{_TR}, non-stream, c=64, throughput",
        5,
    ),
    Target(
        "15",
        "translation stream, c=64: req/s >= 5x LiteLLM Proxy, 0 errors",
        "faster",
        f"{_TR}, stream, c=64, throughput",
        5,
    ),
    Target(
        "15",
        "translated stream: cost per chunk <= 50 µs (Sluice CPU, 1,000 chunks, c=1)",
        "per_chunk",
        "trlong_c1",
        50,
    ),
    Target(
        "15",
        "translated stream, paced: cost per chunk <= 50 µs (Sluice CPU, 200 chunks 1 ms apart, c=1)",
        "per_chunk",
        "trpaced_c1",
        50,
    ),
    Target("15", "RSS after load <= 0.5x LiteLLM Proxy's", "fact", "rss_load_mb", 0.5),
    Target("15", "start-up to ready <= 0.2x LiteLLM Proxy's", "fact", "startup_s", 0.2),
    Target("14", "Responses non-stream, c=1: added latency p50 <= 1 ms", "added", f"{_RS}, {_NS}", 1.0),
    Target(
        "14",
        "Responses stream, c=1: added time to first event p50 <= 1 ms",
        "added",
        f"{_RS}, stream, c=1, time to first event p50",
        1.0,
    ),
    Target(
        "14",
        "Responses non-stream, c=64: req/s >= 10x LiteLLM Proxy, 0 errors",
        "faster",
        f"{_RS}, non-stream, c=64, throughput",
        10,
    ),
    Target(
        "14",
        "Responses stream, c=64: req/s >= 10x LiteLLM Proxy, 0 errors",
        "faster",
        f"{_RS}, stream, c=64, throughput",
        10,
    ),
    Target("14", "Messages non-stream, c=1: added latency p50 <= 1 ms", "added", f"{_MSG}, {_NS}", 1.0),
    Target(
        "14",
        "Messages stream, c=1: added time to first token p50 <= 1 ms",
        "added",
        f"{_MSG}, stream, c=1, time to first token p50",
        1.0,
    ),
    Target(
        "14",
        "Messages non-stream, c=64: req/s >= 10x LiteLLM Proxy, 0 errors",
        "faster",
        f"{_MSG}, non-stream, c=64, throughput",
        10,
    ),
    Target(
        "14",
        "Messages stream, c=64: req/s >= 10x LiteLLM Proxy, 0 errors",
        "faster",
        f"{_MSG}, stream, c=64, throughput",
        10,
    ),
    Target(
        "1",
        "pass-through non-stream, c=1: added latency p99 <= 3 ms",
        "added",
        "non-stream, c=1, latency p99",
        3.0,
    ),
)


@dataclass(frozen=True)
class Verdict:
    target: Target
    measured: str
    met: bool | None  # None: not measured
    close: bool = False  # within 10% of the limit: one noisy run can flip it


def _near(got: float, limit: float) -> bool:
    return abs(got - limit) <= 0.1 * limit


def _check_added(results: dict[str, Any], target: Target) -> Verdict:
    row = ROWS_BY_LABEL[target.source]
    s, d = value(results, "main", row, SLUICE), value(results, "main", row, DIRECT)
    if s is None or d is None:
        return Verdict(target, "not run", None)
    got = s - d
    return Verdict(target, f"{got:+.3f} ms", got <= target.limit, _near(got, target.limit))


def _check_faster(results: dict[str, Any], target: Target) -> Verdict:
    row = ROWS_BY_LABEL[target.source]
    s, x = value(results, "main", row, SLUICE), value(results, "main", row, LITELLM)
    if s is None or x is None:
        return Verdict(
            target, "not run" if s is None else f"{fmt(s, 'req/s')} req/s; LiteLLM Proxy not run", None
        )
    if x == 0:  # a cell shorter than one LiteLLM Proxy request at c=64 (--quick): no ratio to judge
        return Verdict(target, f"{fmt(s, 'req/s')} / 0 req/s (LiteLLM Proxy finished none)", None)
    ratio = s / x
    errs = errors(results, "main", row.scenario, SLUICE) or 0
    measured = f"{ratio:.1f}x ({fmt(s, 'req/s')} / {fmt(x, 'req/s')} req/s), {errs} errors"
    return Verdict(target, measured, ratio >= target.limit and errs == 0, _near(ratio, target.limit))


def _check_per_chunk(results: dict[str, Any], target: Target) -> Verdict:
    got = cpu_per_chunk(results, target.source, SLUICE)
    if got is None:
        return Verdict(target, "not run", None)
    wall = wall_per_chunk(results, target.source, SLUICE)
    measured = f"{got:.1f} µs" + ("" if wall is None else f" (wall: {wall:+.1f} µs over direct)")
    return Verdict(target, measured, got <= target.limit, _near(got, target.limit))


def _check_fact(results: dict[str, Any], target: Target) -> Verdict:
    s, x = fact(results, SLUICE, target.source), fact(results, LITELLM, target.source)
    if s is None or x is None or x == 0:
        return Verdict(target, "not run", None)
    return Verdict(target, f"{s / x:.2f}x", s <= target.limit * x, _near(s / x, target.limit))


CHECKS: dict[str, Callable[[dict[str, Any], Target], Verdict]] = {
    "added": _check_added,
    "faster": _check_faster,
    "per_chunk": _check_per_chunk,
    "fact": _check_fact,
}


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    return [CHECKS[t.kind](results, t) for t in TARGETS]


def _verdict_text(v: Verdict) -> str:
    if v.met is None:
        return "n/a"
    text = "**met**" if v.met else "**missed**"
    return text + (" (within 10% of the limit: borderline)" if v.close else "")


def targets_section(results: dict[str, Any]) -> list[str]:
    rows = [[v.target.issue, v.target.text, v.measured, _verdict_text(v)] for v in verdicts(results)]
    return table(["issue", "target (one worker each)", "measured", "verdict"], rows)


def details_section(results: dict[str, Any], phase: str, targets: Sequence[str]) -> list[str]:
    rows: list[list[str]] = []
    for scenario_id, scenario in BY_ID.items():
        for target in targets:
            cells = cells_of(results, phase, scenario_id, target)
            if not cells:
                continue
            if scenario.kind == "throughput":
                vals = [float(c["rps"]) for c in cells]
                unit = "req/s"
            else:
                key = "first_ms" if scenario.metric == "first" else "total_ms"
                vals = [float(c[key]["p50"]) for c in cells if c.get(key)]
                unit = "ms p50"
            cpu = median([c["cpu_ms_per_request"] for c in cells if c.get("cpu_ms_per_request") is not None])
            other = median([c["foreign_cpu_share"] for c in cells if c.get("foreign_cpu_share") is not None])
            spread = f"{fmt(min(vals), unit[:5])} - {fmt(max(vals), unit[:5])}" if vals else "-"
            rows.append(
                [
                    scenario.title,
                    TARGET_NAMES[target],
                    f"{fmt(median(vals), unit[:5])} {unit}",
                    spread,
                    f"{sum(int(c['requests']) for c in cells):,}",
                    str(sum(int(c["errors"]) for c in cells)),
                    "-" if cpu is None else f"{cpu:.2f}",
                    "-" if other is None else f"{100 * other:.0f}%",
                    ", ".join(sorted({str(c.get("driver", "?")) for c in cells})),
                ]
            )
    header = [
        "scenario",
        "target",
        "median",
        "min - max over repeats",
        "requests",
        "errors",
        "server CPU ms/request",
        "other CPU on gateway core",
        "driver",
    ]
    return table(header, rows)


def scale_section(results: dict[str, Any]) -> list[str]:
    scale = results.get("scale")
    if not scale:
        return []
    workers, phase = scale["workers"], scale["phase"]
    rows: list[list[str]] = []
    gateways = [t for t in (SLUICE, LITELLM) if t in results["targets"]]
    for row in ROWS:
        if row.unit != "req/s" or all(not cells_of(results, phase, row.scenario, t) for t in gateways):
            continue
        line = [row.label]
        for target in gateways:
            one, many = value(results, "main", row, target), value(results, phase, row, target)
            errs = errors(results, phase, row.scenario, target)
            line += [fmt(one, row.unit), f"{fmt(many, row.unit)} ({errs or 0} errors)", fmt_ratio(many, one)]
        rows.append(line)
    mem = ["RSS after load (MB)"]
    for target in gateways:
        one, many = fact(results, target, "rss_load_mb"), fact(results, target, f"rss_load_mb_w{workers}")
        mem += [fmt(one, "MB"), fmt(many, "MB"), fmt_ratio(many, one)]
    rows.append(mem)
    header = ["req/s"]
    for target in gateways:
        name = TARGET_NAMES[target]
        header += [f"{name}, 1 worker", f"{name}, {workers} workers", "ratio"]
    return [
        f"## Scale-out: {workers} workers against one",
        "",
        f"The 1-worker numbers are the main table's (gateway pinned to its own core). The {workers}-worker "
        "gateways are not pinned: their workers share both cores with the fake upstream and the load "
        "generator, which stay on their core.",
        "",
        *table(header, rows),
        "",
    ]


def interference(results: dict[str, Any]) -> str:
    """How much of the gateway core other processes took while a gateway was measured."""
    shares = [c["foreign_cpu_share"] for c in results["cells"] if c.get("foreign_cpu_share") is not None]
    if not shares:
        return "interference on the gateway core not measured (not pinned)"
    return (
        "other processes' use of the gateway core during gateway cells: median "
        f"{100 * statistics.median(shares):.0f}%, max {100 * max(shares):.0f}% of the core"
    )


def spread_notes(results: dict[str, Any]) -> list[str]:
    """Gateway cells whose repeats differ by more than 30% (max / min of the row's value)."""
    notes: list[str] = []
    for row in ROWS:
        for target in (SLUICE, LITELLM):
            vals = [v for v in (row.get(c) for c in cells_of(results, "main", row.scenario, target)) if v]
            if len(vals) > 1 and max(vals) / min(vals) > 1.3:
                low, high = fmt(min(vals), row.unit), fmt(max(vals), row.unit)
                notes.append(f"{TARGET_NAMES[target]}, {row.label}: {low} to {high} {row.unit}")
    if not notes:
        return []
    return [
        "Repeats that differ by more than 30% (machine noise; the table shows the median):",
        "",
        *[f"- {n}" for n in notes],
        "",
    ]


ENDPOINTS = (
    "- direct = the fake upstream itself, on the wire the gateway speaks to it: `/v1/chat/completions` "
    "(pass-through rows), `/v1/messages` (translation and Messages rows), `/v1/responses` "
    "(Responses rows)",
    "- every gateway gets the same endpoint as the row's client: `/v1/chat/completions` (pass-through "
    "and translation rows), `/v1/responses` (LiteLLM Proxy: its native Responses API for an `openai/` "
    "model, to the fake's `/v1/responses`), `/v1/messages` (LiteLLM Proxy: its `anthropic_messages` "
    "pass-through for an `anthropic/` model, to the fake's `/v1/messages`)",
)


def partial_note(scenarios: Sequence[str] | None) -> str:
    """A warning for a run of some scenarios only: its RSS after load followed less traffic."""
    if scenarios is None or len(scenarios) >= len(BY_ID):
        return ""
    return (
        f" This run measured {len(scenarios)} of the {len(BY_ID)} scenarios: its RSS after load "
        "followed fewer kinds of traffic than a full run's."
    )


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    settings = meta["settings"]
    mach = meta["machine"]
    lines = [
        "# Benchmark: direct vs Sluice vs LiteLLM Proxy",
        "",
        f"Generated by `{meta.get('command', 'bench/run.py')}` on {meta['date']} "
        f"({meta['wall_seconds']:.0f} s wall). Raw numbers: the `.json` file next to this one. "
        "How it is measured: bench/README.md.",
        "",
        "`bench/run.py` rewrites this file whole. Measurements made by hand or by the other scripts "
        "(the pass-through's HTTP client, database keys, per-key limits through Redis, partial reruns) "
        "are in bench/OTHER.md.",
        "",
        "## Machine and versions",
        "",
        f"- machine: {mach['cpu']}, {mach['nproc']} CPUs (nproc), {mach['memory_gb']} GB; {mach['os']}",
    ]
    lines += [f"- {name}: {version}" for name, version in meta["versions"].items()]
    pin = (
        f"gateway on CPU {settings['gateway_cpus']}, fake upstream + load generator on CPU "
        f"{settings['client_cpus']} (taskset)"
        if settings["gateway_cpus"]
        else "not pinned"
    )
    lines += [
        "",
        "## Set-up",
        "",
        f"- one worker per gateway; processes {pin}",
        f"- {settings['duration_s']:g} s per cell, {settings['repeats']} repeat(s), targets interleaved "
        "(direct, Sluice, LiteLLM Proxy, direct, ...), medians over repeats; "
        f"warm-up per target and request kind before measuring: {settings['warmup_s']:g} s or "
        f"{settings.get('warmup_requests', '?')} requests, whichever comes first",
        f"- c=1 latency and time to first token: {settings['latency_driver']}; "
        f"c=64 throughput: {settings['throughput_driver']}, 64 connections",
        f"- c=64 throughput: requests per second completed after a {settings.get('ramp_s', 0):g} s ramp "
        "(the steady state; requests still in flight at the end are not counted), errors over the whole "
        "cell; before each cell the harness waits until every gateway is idle",
        "- load average (1, 5, 15 min) of the machine before / after the run: "
        f"{meta.get('loadavg_before', '?')} / {meta.get('loadavg_after', '?')}; {interference(results)}",
        *ENDPOINTS,
        "- Sluice: `sluice demo --config bench/sluice-bench.yaml --upstream <fake>`; "
        "LiteLLM Proxy: `bench/.venv/bin/litellm --config bench/litellm-bench.yaml --num_workers 1` "
        "(LITELLM_LOCAL_MODEL_COST_MAP=True, LITELLM_OFFLINE_MODE=true, no database)",
        "- each gateway with its own default logging (Sluice: no access log, `SLUICE_ACCESS_LOG`; "
        "LiteLLM Proxy: uvicorn's access log; the baseline found LiteLLM's unchanged without it)",
        "",
        "## Results",
        "",
        "Latency rows: lower is better, so Sluice/LiteLLM below 1 means Sluice is faster. Throughput rows: "
        'higher is better. "Sluice - direct" on a latency row is the latency Sluice adds.',
        "",
        *main_table(results),
        "",
        *spread_notes(results),
        "## Targets",
        "",
        "Issue 15 (pass-through and translation), issue 14 (the Responses and Messages "
        "pass-throughs) and the first benchmark issue's p99 bound, judged on this run's medians; n/a "
        "where a scenario or LiteLLM Proxy was not run, or LiteLLM Proxy finished no request in a cell."
        + partial_note(settings.get("scenarios")),
        "",
        *targets_section(results),
        "",
        *scale_section(results),
        "## Per-cell details",
        "",
        "Server CPU is the user + system time of the target's process tree during the cell "
        "(for direct: the fake upstream's), divided by the requests it completed. \"Other CPU on "
        "gateway core\": what other processes used of the gateway's core meanwhile (interference).",
        "",
        *details_section(results, "main", results["targets"]),
        "",
    ]
    if results.get("scale"):
        scale = results["scale"]
        lines += [
            f"### {scale['workers']} workers",
            "",
            *details_section(results, scale["phase"], [t for t in results["targets"] if t != DIRECT]),
            "",
        ]
    return "\n".join(lines)
