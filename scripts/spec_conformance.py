"""Property-based conformance run at scale: spec-valid requests from the vendored specifications.

    .venv/bin/python scripts/spec_conformance.py [--count 2000] [--seed 0] [--api chat --api embeddings]

Draws `--count` requests per API from the vendored request schema (positive mode:
`tests/spec/strategies.py`), builds the demo app (config/demo.yaml) in front of the fake upstream on
127.0.0.1, sends them one at a time through httpx's ASGI transport, and checks each answer
(`tests/spec/conformance.py`): no 5xx, no refusal that is not documented, every 200 body and stream
chunk valid against the specification's response schema. Prints a JSON summary (statuses, documented
refusals by reason, problems by kind with samples) and exits 1 when any problem was found.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
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
from tests.conftest import DEMO_CONFIG  # noqa: E402
from tests.spec.conformance import TARGETS, Target, check  # noqa: E402


def draw(target: Target, count: int, seed_value: int) -> list[dict[str, Any]]:
    into: list[dict[str, Any]] = []

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(target.requests())
    def collect(body: dict[str, Any]) -> None:
        into.append(body)

    collect()
    return into


async def run(targets: list[Target], count: int, seed_value: int, samples: int) -> dict[str, Any]:
    started = time.perf_counter()
    bodies = {target.key: draw(target, count, seed_value) for target in targets}
    generated = time.perf_counter()
    summary: dict[str, Any] = {"seed": seed_value}
    with tempfile.TemporaryDirectory() as tmp:
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
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://sluice.test", timeout=60
                ) as http:
                    for target in targets:
                        statuses: Counter[int] = Counter()
                        refusals: Counter[str] = Counter()
                        problems: Counter[str] = Counter()
                        failing: list[dict[str, Any]] = []
                        fields: Counter[str] = Counter()
                        streams = 0
                        for body in bodies[target.key]:
                            fields.update(body.keys())
                            streams += body.get("stream") is True
                            outcome = await check(http, target, body)
                            statuses[outcome.status] += 1
                            if outcome.refusal is not None:
                                refusals[outcome.refusal] += 1
                            for problem in outcome.problems:
                                problems[problem[:90]] += 1
                            if outcome.problems and len(failing) < samples:
                                failing.append({"problems": outcome.problems, "body": body})
                        digest = hashlib.sha256(
                            json.dumps(bodies[target.key], sort_keys=True).encode()
                        ).hexdigest()[:16]
                        summary[target.key] = {
                            "requests": len(bodies[target.key]),
                            "draw_digest": digest,
                            "streams": streams,
                            "distinct_top_level_fields": len(fields),
                            "statuses": dict(sorted(statuses.items())),
                            "5xx": sum(n for status, n in statuses.items() if status >= 500),
                            "documented_refusals": dict(refusals),
                            "problems": dict(problems.most_common()),
                            "samples": failing,
                        }
    summary["seconds"] = {
        "generating": round(generated - started, 1),
        "sending": round(time.perf_counter() - generated, 1),
    }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--api", action="append", choices=sorted(TARGETS))
    args = parser.parse_args()
    targets = [TARGETS[name] for name in (args.api or sorted(TARGETS))]
    summary = asyncio.run(run(targets, args.count, args.seed, args.samples))
    print(json.dumps(summary, indent=2, default=str))
    return 1 if any(summary[t.key]["problems"] for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
