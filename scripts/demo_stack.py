"""A real `sluice demo` in front of a fake upstream, for the scripts in this folder; 127.0.0.1 only.

What belongs here: what more than one script needs to drive Sluice from outside: starting
`sluice demo --upstream` as its own process with its own database and audit spool, waiting for
`/healthz`, stopping it; the fake upstream as its own process (not recording, for long runs); the
demo key, a chat body and a percentile. Processes are started and stopped by `bench.procs`, which
only ever signals the process groups it started.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402

KEY = "sk-sluice-demo"
HOST = procs.HOST
DEMO_CONFIG = ROOT / "config" / "demo.yaml"


def chat_body(content: str, *, stream: bool = True, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}


def pct(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0-1) of `values`, rounded to 0.01."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


@contextmanager
def fake_upstream_process(workdir: Path) -> Iterator[procs.Server]:
    """The fake upstream in its own process (so it shares no interpreter lock with the caller)."""
    upstream = procs.start_upstream(sys.executable, cpus=None, workdir=workdir, env=_env(workdir, {}))
    try:
        yield upstream
    finally:
        procs.stop(upstream)


@contextmanager
def sluice_demo(
    upstream: str, *, workdir: Path, env: Mapping[str, str] | None = None, ready_timeout: float = 90.0
) -> Iterator[procs.Server]:
    """`sluice demo --upstream <upstream>` on a free port of 127.0.0.1, healthy and idle; SIGTERM at
    the end.

    Idle: Sluice imports litellm in a background thread once it is up, which holds the interpreter
    lock for a few seconds (requests then see tens of milliseconds of extra latency); figures start
    after it. `env` adds settings (`SLUICE_MAX_CONCURRENCY`, ...) on top of a database and spool in
    `workdir`.
    """
    if not upstream.startswith(f"http://{HOST}:"):
        raise SystemExit(f"refusing upstream {upstream!r}: only {HOST} is allowed")
    port = procs.free_port()
    command = [sys.executable, "-m", "gateway.cli.main", "demo", "--config", str(DEMO_CONFIG)]
    command += ["--host", HOST, "--port", str(port), "--upstream", upstream]
    server = procs.start_server("sluice", command, port=port, workdir=workdir, env=_env(workdir, env or {}))
    try:
        procs.wait_ready(server, "/healthz", ready_timeout)
        procs.wait_idle(server.proc.pid, longest=30)
        yield server
    finally:
        procs.stop(server)


def _env(workdir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'sluice.db'}",
        "SLUICE_AUDIT_SPOOL": str(workdir / "audit.spool"),
        **extra,
    }
