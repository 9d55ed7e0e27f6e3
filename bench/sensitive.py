"""Detection time of content-aware tightening: realistic prompts of 1 KB, 32 KB and 1 MB, and
inputs built to make each pattern work hardest (tests/sensitive/adversarial.py).

    .venv/bin/python bench/sensitive.py            # print the table
    .venv/bin/python bench/sensitive.py --write    # and write it into docs/sensitive.md

What is timed is what the service adds per request: `Tightening.check()` on a parsed chat body
(extracting every message's text, one pass of the `secrets` and `pii` detectors), with the
demo's rule plus a `pii` rule so that both detectors run to the end (no finding: the slowest case,
nothing stops early). A benchmark, not a test: nothing asserts on these numbers.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.core.sensitive.detectors import DetectorId  # noqa: E402
from gateway.core.sensitive.rules import Rule, Tightening  # noqa: E402
from tests.sensitive.adversarial import UNITS, build  # noqa: E402

DOC = ROOT / "docs" / "sensitive.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
RULES = (
    Rule(frozenset({DetectorId.SECRETS}), ("zero-retention",)),
    Rule(frozenset({DetectorId.PII}), ("self-hosted-only",)),
)
# A developer's prompt: prose, code, JSON, numbers, a stack trace, with no secret and no personal
# datum in it (the case where every pattern scans to the end).
PARAGRAPH = """Our deploy of release 2.14.3 fails since Tuesday. The worker logs show:
Traceback (most recent call last):
  File "/srv/app/jobs/export.py", line 212, in run
    rows = fetch(batch_id=batch.id, since=cursor.updated_at, limit=5000)
  File "/srv/app/db.py", line 88, in fetch
    raise TimeoutError(f"query {query_id} took {elapsed:.1f}s > {budget}s")
TimeoutError: query 7f9c2b1e-4d3a-4c1b-9e2f-0a8b7c6d5e4f took 31.2s > 30s
config = {"pool_size": 20, "timeout": 30, "retries": 3, "region": "eu-west-1", "version": "1.4.2"}
for item in items: total += item.price * item.quantity  # 1299.99 * 3 = 3899.97
Could you explain why the pool is exhausted and how to fix it without raising the limits? Thanks!
"""


def chat(size: int) -> dict[str, Any]:
    text = (PARAGRAPH * (size // len(PARAGRAPH) + 1))[:size]
    return {
        "messages": [
            {"role": "system", "content": "You are a careful engineer."},
            {"role": "user", "content": text},
        ]
    }


def timed(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def rows() -> list[str]:
    tightening = Tightening(RULES)
    lines = [
        f"Python {platform.python_version()} on {platform.machine()}, one core shared with other work;",
        "`Tightening.check()` on a chat body, both detectors to the end (no finding).",
        "",
        "| input | size | p50 ms | p99 ms | p50 µs per KB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, size, repeats in (
        ("prompt", 1024, 2000),
        ("prompt", 32 * 1024, 200),
        ("prompt", 1024 * 1024, 10),
    ):
        body = chat(size)
        p50, p99 = timed(lambda body=body: tightening.check("chat", body, None), repeats)
        lines.append(
            f"| {label} | {size // 1024} KB | {p50:.3f} | {p99:.3f} | {p50 * 1000 / (size / 1024):.1f} |"
        )
    worst: list[tuple[float, str]] = []
    for unit in sorted(UNITS):
        for size, repeats in ((32 * 1024, 20), (1024 * 1024, 3)):
            body = {"messages": [{"role": "user", "content": build(UNITS[unit], size)}]}
            p50, p99 = timed(lambda body=body: tightening.check("chat", body, None), repeats)
            worst.append(
                (
                    p50,
                    f"| worst case `{unit}` | {size // 1024} KB | {p50:.3f} | {p99:.3f} "
                    f"| {p50 * 1000 / (size / 1024):.1f} |",
                )
            )
    slowest = {line.split("`")[1] for p50, line in sorted(worst, reverse=True)[:8]}
    lines += [line for _, line in worst if line.split("`")[1] in slowest]
    lines += [
        "",
        f"(The eight slowest of {len(UNITS)} adversarial inputs; all are in"
        " `tests/sensitive/adversarial.py`.)",
    ]
    return lines


def main() -> int:
    table = "\n".join(rows())
    print(table)
    if "--write" in sys.argv:
        text = DOC.read_text(encoding="utf-8")
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
