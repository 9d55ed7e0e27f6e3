"""`Storage` start-up (gateway/storage/runtime.py) and what readiness says right after it."""

from __future__ import annotations

from pathlib import Path

from gateway.storage.db import Database
from gateway.storage.ledger import LedgerSink
from gateway.storage.runtime import Storage


async def test_readiness_is_ok_as_soon_as_start_up_reached_the_database(tmp_path: Path) -> None:
    """/readyz used to say `connecting to sqlite` until the writer's first cycle, after start-up had
    already applied the migrations. The writer here waits an hour before its first cycle."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}")
    ledger = LedgerSink(db, tmp_path / "audit.spool", flush_interval=3600, stop_timeout=0.05)
    storage = Storage(db, ledger)
    assert ledger.status() == (True, "sqlite: waiting for the audit writer's first contact")
    await storage.start()
    await ledger.start()
    try:
        assert ledger.status() == (True, "ok (sqlite)")
    finally:
        await ledger.stop()
        await storage.stop()
