"""Smoke test of the benchmark harness: its quickest mode runs end to end and writes its table.

The benchmark is not a test: nothing here asserts on time or throughput. This only checks that
`bench/run.py --quick --skip-litellm` starts the fake upstream and Sluice, drives every scenario
with the portable load generator, stops everything and writes RESULTS.md and its JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_quick_run_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--skip-litellm",
            "--loadgen",
            "python",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "| scenario | direct | Sluice | LiteLLM Proxy | Sluice/LiteLLM | Sluice - direct |" in text
    for label in ("non-stream, c=1, latency p50", "stream (20 chunks), c=64, throughput", "RSS after load"):
        assert label in text
    assert "## Targets" in text

    results = json.loads(out.with_suffix(".json").read_text())
    cells = results["cells"]
    assert {(c["scenario"], c["target"]) for c in cells} == {
        (s.id, t) for s in SCENARIOS for t in ("direct", "sluice")
    }
    assert all(c["errors"] == 0 for c in cells), [c for c in cells if c["errors"]]
    assert all(c["requests"] > 0 for c in cells if c["mode"] == "latency")
    assert results["facts"]["sluice"]["rss_load_mb"][0] > 0
