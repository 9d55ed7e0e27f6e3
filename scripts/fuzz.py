"""Fuzz the gateway at scale, in-process: the generators of `tests/gateway/fuzzing.py` over ASGI.

    .venv/bin/python scripts/fuzz.py [--count 10000] [--seed 0] [--samples 5]

Builds the demo app (config/demo.yaml, simulated deployments) in front of a local fake upstream on
127.0.0.1, runs its lifespan, and sends `--count` generated requests one at a time through httpx's
ASGI transport. A logging handler on the root logger captures every record at DEBUG. Prints a JSON
summary: requests, status histogram, 5xx, non-envelope error bodies, canary leaks (headers, error
bodies, log records), upstream calls made by requests refused as invalid, and a few failing samples.
Exit status 1 when any of those counts is not zero.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from sluice_fakes.fake_upstream import FakeUpstream  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.observability.audit import MemoryAuditSink  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.gateway.fuzzing import (  # noqa: E402
    CANARY,
    FuzzRequest,
    Outcome,
    envelope_problem,
    fuzz_requests,
    known_issues,
    problems,
    send,
)

DEMO_CONFIG = ROOT / "config" / "demo.yaml"


class Capture(logging.Handler):
    """Every log record, formatted; only the ones carrying the canary are kept."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records = 0
        self.leaks: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            text = self.format(record)
        except Exception as exc:  # a record that cannot format is reported, not fatal
            text = f"{record.name} unformattable record: {exc!r} msg={record.msg!r} args={record.args!r}"
        if CANARY in text or CANARY in repr(record.args):
            self.leaks.append(text[:500])


class Tally:
    def __init__(self, samples: int) -> None:
        self.total = 0
        self.statuses: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.errors = 0
        self.counts: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []
        self.max_samples = samples

    def add(self, request: FuzzRequest, outcome: Outcome) -> None:
        self.total += 1
        self.statuses[outcome.status] += 1
        self.kinds[request.kind] += 1
        if outcome.status >= 400:
            self.errors += 1
        found = problems(outcome)
        labels = {
            "5xx": outcome.status >= 500,
            "non_envelope": outcome.status >= 400 and envelope_problem(outcome) is not None,
            "canary_in_headers": "canary in headers" in found,
            "canary_in_error_body": "canary in error body" in found,
            "canary_in_2xx_body": outcome.status < 400 and CANARY.encode() in outcome.body,
            "upstream_calls_by_invalid": any(f.startswith("upstream called") for f in found),
        }
        for name, hit in labels.items():
            self.counts[name] += int(hit)
        if found and len(self.samples) < self.max_samples:
            self.samples.append(
                {
                    "problems": found,
                    "status": outcome.status,
                    "body": outcome.body[:300].decode("utf-8", "replace"),
                    "request": request.describe(),
                }
            )


async def run(count: int, seed_value: int, samples: int) -> dict[str, Any]:
    # Generate first, before the app and its background threads run: the draw is then the same for a seed.
    started = time.perf_counter()
    requests: list[FuzzRequest] = []
    round_ = 0
    while len(requests) < count:
        generate(requests, count - len(requests), seed_value + round_)
        round_ += 1
    del requests[count:]
    generated = time.perf_counter() - started
    digest = hashlib.sha256(b"".join(repr(r).encode() for r in requests)).hexdigest()[:16]
    capture = Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    tally = Tally(samples)
    detached: list[logging.Logger] = []
    known: list[dict[str, Any]] = []
    sent = 0.0
    with tempfile.TemporaryDirectory(prefix="sluice-fuzz-") as tmp:
        async with FakeUpstream() as fake:
            app_settings = Settings(
                config=DEMO_CONFIG,
                allow_simulate=True,
                fake_upstream_url=fake.url,
                database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'sluice.db'}",
                audit_spool=Path(tmp) / "audit.spool",
            )
            app = create_app(app_settings, audit=MemoryAuditSink())
            async with app.router.lifespan_context(app):
                detached = attach_everywhere(capture)
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://sluice.test", timeout=60
                ) as http:
                    sending = time.perf_counter()
                    for request in requests:
                        tally.add(request, await send(http, request, lambda: len(fake.requests)))
                    sent = time.perf_counter() - sending
                    for request in known_issues():
                        outcome = await send(http, request, lambda: len(fake.requests))
                        known.append(
                            {"case": request.kind, "status": outcome.status, "problems": problems(outcome)}
                        )
            upstream_total = len(fake.requests)
    elapsed = time.perf_counter() - started
    root.removeHandler(capture)
    for logger in detached:
        logger.removeHandler(capture)
    errors = tally.errors
    compliant = errors - tally.counts["non_envelope"]
    return {
        "requests": tally.total,
        "seed": seed_value,
        "requests_sha256_16": digest,
        "run_time_s": round(elapsed, 1),
        "generation_s": round(generated, 1),
        "sending_s": round(sent, 1),
        "requests_per_s_sending": round(tally.total / max(sent, 1e-9), 1),
        "by_generator": dict(sorted(tally.kinds.items())),
        "status_histogram": {str(k): v for k, v in sorted(tally.statuses.items())},
        "error_responses": errors,
        "5xx": tally.counts["5xx"],
        "non_envelope_error_bodies": tally.counts["non_envelope"],
        "envelope_compliance_pct": round(100.0 * compliant / errors, 3) if errors else 100.0,
        "canary_leaks": {
            "headers": tally.counts["canary_in_headers"],
            "error_bodies": tally.counts["canary_in_error_body"],
            "log_records": len(capture.leaks),
            "2xx_bodies (informational)": tally.counts["canary_in_2xx_body"],
        },
        "log_records_scanned": capture.records,
        "upstream_calls_by_invalid_requests": tally.counts["upstream_calls_by_invalid"],
        "upstream_calls_total": upstream_total,
        "samples": tally.samples,
        "deep_nesting_regressions (not counted above)": known,
        "log_leak_samples": capture.leaks[:samples],
    }


def attach_everywhere(handler: logging.Handler) -> list[logging.Logger]:
    """Also attach to loggers that do not propagate to the root (litellm's, some libraries')."""
    found = []
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and not logger.propagate and handler not in logger.handlers:
            logger.addHandler(handler)
            found.append(logger)
    return found


def generate(into: list[FuzzRequest], count: int, seed_value: int) -> None:
    """Draw up to `count` requests from the shared strategy (generation only: no shrinking)."""

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz_requests())
    def draw(request: FuzzRequest) -> None:
        into.append(request)

    draw()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="requests to send (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    parser.add_argument("--samples", type=int, default=5, help="failing samples to include")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args.count, args.seed, args.samples))
    print(json.dumps(summary, indent=2))
    bad = (
        summary["5xx"]
        + summary["non_envelope_error_bodies"]
        + summary["canary_leaks"]["headers"]
        + summary["canary_leaks"]["error_bodies"]
        + summary["canary_leaks"]["log_records"]
        + summary["upstream_calls_by_invalid_requests"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
