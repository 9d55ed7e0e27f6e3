"""Helpers for the storage tests: synthetic events, a writer run to completion, the CLI in a thread."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from gateway.cli.main import app as cli
from gateway.observability.audit import AuditEvent
from gateway.storage.db import Database
from gateway.storage.ledger import LedgerSink
from tests.conftest import DEMO_CONFIG
from tests.helpers import until


def event(i: int, **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "request_id": f"req-{i:04d}",
        "time": datetime.now(UTC),
        "key_name": "demo",
        "endpoint": "chat",
        "requested_model": "gpt-4o-mini",
        "policy": ("api-channel-only", "no-training-only"),
        "decision": "allowed",
        "status": 200,
        "provider": "openai",
        "channel": "openai.api",
        "badges": ("api-channel", "no-training"),
        "latency_ms": 12.5 + i / 1000,
    }
    values.update(fields)
    return AuditEvent(**values)


async def write_events(url: str, spool: Path, events: list[AuditEvent]) -> str:
    """Record `events` through a writer of their own, wait until they are stored; the writer id."""
    db = Database(url)
    sink = LedgerSink(db, spool)
    await sink.start()
    try:
        for item in events:
            sink.record(item)
        await until(lambda: sink.backlog == 0 and sink.stats.written == len(events), "the writer")
    finally:
        await sink.stop()
        await db.dispose()
    return sink.writer


async def sluice(*args: str, url: str, config: Path = DEMO_CONFIG, **env: str) -> Result:
    """`sluice ARGS` with SLUICE_DATABASE_URL=url, in a thread (each command runs its own event loop)."""
    environment = {"SLUICE_DATABASE_URL": url, "SLUICE_CONFIG": str(config), **env}
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=environment)
