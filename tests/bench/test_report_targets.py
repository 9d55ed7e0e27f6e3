"""bench/report.py's Targets table: every target of issues 14 and 15, judged from a run's cells.

Synthetic cells stand in for a run (no processes): each test states the medians and checks the
verdict the report draws from them.
"""

from __future__ import annotations

from typing import Any

from bench import report
from bench.scenarios import BY_ID, DIRECT, LITELLM, SLUICE


def _latency(scenario: str, target: str, p50: float, first: float | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"phase": "main", "scenario": scenario, "target": target, "errors": 0}
    cell["total_ms"] = {"p50": p50, "p99": p50 * 2}
    if first is not None:
        cell["first_ms"] = {"p50": first, "p99": first * 2}
    return cell


def _rate(scenario: str, target: str, rps: float, errors: int = 0) -> dict[str, Any]:
    return {"phase": "main", "scenario": scenario, "target": target, "rps": rps, "errors": errors}


def _results(
    cells: list[dict[str, Any]], facts: dict[str, dict[str, list[float]]] | None = None
) -> dict[str, Any]:
    return {"cells": cells, "facts": facts or {}, "targets": [DIRECT, SLUICE, LITELLM]}


def _verdict(results: dict[str, Any], text: str) -> report.Verdict:
    return next(v for v in report.verdicts(results) if v.target.text == text)


def test_every_issue_14_and_15_target_is_listed_once_with_a_real_source() -> None:
    texts = [t.text for t in report.TARGETS]
    assert len(texts) == len(set(texts))
    assert sum(t.issue == "15" for t in report.TARGETS) == 10
    assert sum(t.issue == "14" for t in report.TARGETS) == 8
    for target in report.TARGETS:
        if target.kind in ("added", "faster"):
            assert target.source in report.ROWS_BY_LABEL, target.text
        elif target.kind == "per_chunk":
            scenario = BY_ID[target.source]
            assert scenario.chunks == 1000 or (scenario.chunks, scenario.chunk_delay_ms) == (200, 1)
    limits = {t.text: t.limit for t in report.TARGETS}
    assert limits["pass-through non-stream, c=1: added latency p50 <= 0.5 ms"] == 0.5
    assert limits["pass-through stream, c=64: req/s >= 20x LiteLLM Proxy, 0 errors"] == 20
    assert limits["translation stream, c=64: req/s >= 5x LiteLLM Proxy, 0 errors"] == 5
    assert limits["start-up to ready <= 0.2x LiteLLM Proxy's"] == 0.2
    paced = "translated stream, paced: cost per chunk <= 50 µs (Sluice CPU, 200 chunks 1 ms apart, c=1)"
    assert limits[paced] == 50
    assert limits["Messages stream, c=64: req/s >= 10x LiteLLM Proxy, 0 errors"] == 10


def test_added_latency_is_sluice_minus_direct_against_the_limit() -> None:
    results = _results(
        [
            _latency("ns_c1", DIRECT, 0.1),
            _latency("ns_c1", SLUICE, 0.7),
            _latency("rs_c1", DIRECT, 0.1),
            _latency("rs_c1", SLUICE, 0.7),
            _latency("msgst_c1", DIRECT, 0.2, first=0.1),
            _latency("msgst_c1", SLUICE, 5.0, first=1.3),
        ]
    )
    passthrough = _verdict(results, "pass-through non-stream, c=1: added latency p50 <= 0.5 ms")
    responses = _verdict(results, "Responses non-stream, c=1: added latency p50 <= 1 ms")
    messages = _verdict(results, "Messages stream, c=1: added time to first token p50 <= 1 ms")
    assert (passthrough.met, passthrough.measured) == (False, "+0.600 ms")
    assert (responses.met, responses.measured) == (True, "+0.600 ms")
    assert (messages.met, messages.measured) == (False, "+1.200 ms")


def test_throughput_needs_the_factor_and_no_sluice_errors() -> None:
    results = _results(
        [
            _rate("rs_c64", SLUICE, 1000),
            _rate("rs_c64", LITELLM, 90),
            _rate("msg_c64", SLUICE, 1000, errors=1),
            _rate("msg_c64", LITELLM, 50),
            _rate("ns_c64", SLUICE, 1000),
            _rate("ns_c64", LITELLM, 100),
        ]
    )
    assert _verdict(results, "Responses non-stream, c=64: req/s >= 10x LiteLLM Proxy, 0 errors").met is True
    messages = _verdict(results, "Messages non-stream, c=64: req/s >= 10x LiteLLM Proxy, 0 errors")
    assert messages.met is False
    assert messages.measured.endswith("1 errors")
    assert (
        _verdict(results, "pass-through non-stream, c=64: req/s >= 20x LiteLLM Proxy, 0 errors").met is False
    )


def test_unmeasured_targets_are_not_applicable() -> None:
    results = _results([_rate("ns_c64", SLUICE, 1000)])  # as with --skip-litellm
    assert all(v.met is None for v in report.verdicts(results))
    assert "| not run | n/a |" in "\n".join(report.targets_section(results))


def test_per_chunk_and_process_facts() -> None:
    cpu = {"cpu_ms_per_request": 40.0}
    results = _results(
        [
            _latency("trlong_c1", DIRECT, 3.0) | cpu,
            _latency("trlong_c1", SLUICE, 60.0) | cpu,
            _latency("trlong_c1", LITELLM, 900.0) | {"cpu_ms_per_request": 800.0},
        ],
        facts={
            SLUICE: {"startup_s": [1.0], "rss_load_mb": [300.0]},
            LITELLM: {"startup_s": [7.0], "rss_load_mb": [500.0]},
        },
    )
    per_chunk = _verdict(
        results, "translated stream: cost per chunk <= 50 µs (Sluice CPU, 1,000 chunks, c=1)"
    )
    assert (per_chunk.met, per_chunk.measured) == (True, "40.0 µs (wall: +57.0 µs over direct)")
    assert _verdict(results, "start-up to ready <= 0.2x LiteLLM Proxy's").met is True
    assert _verdict(results, "RSS after load <= 0.5x LiteLLM Proxy's").met is False
    table = "\n".join(report.main_table(results))
    assert (
        "| translated stream, added cost per chunk, gateway CPU (µs) | - | 40.00 | 800 | 0.050x | - |"
        in table
    )
    assert "| translated stream, added cost per chunk, wall (µs) | - | 57.00 | 897 |" in table
