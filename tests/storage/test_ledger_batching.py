"""The ledger writer batches under steady load: rows recorded while a batch is being written wait for
the next cycle (`flush_interval`) instead of starting a transaction of their own at once, unless a
whole batch is waiting or the writer is stopping; every row is still written, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.storage import ledger
from gateway.storage.chain import Row
from gateway.storage.db import Database
from gateway.storage.ledger import LedgerSink
from tests.helpers import until
from tests.storage.support import event

FLUSH = 0.1
LOAD_SECONDS = 0.6


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the writer sends to the database."""
    sizes: list[int] = []
    write = ledger.write_rows

    async def counted(db: Database, rows: Sequence[Row]) -> None:
        sizes.append(len(rows))
        await write(db, rows)

    monkeypatch.setattr(ledger, "write_rows", counted)
    return sizes


async def test_steady_load_is_written_once_per_interval(tmp_path: Path, transactions: list[int]) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    sink = LedgerSink(db, tmp_path / "audit.spool", flush_interval=FLUSH)
    await sink.start()
    try:
        await until(lambda: sink.status()[1].startswith("ok"), "the writer's first cycle")
        loop = asyncio.get_running_loop()
        end, count = loop.time() + LOAD_SECONDS, 0
        while loop.time() < end:  # one request finishing every 2 ms, as at one request in flight
            sink.record(event(count))
            count += 1
            await asyncio.sleep(0.002)
        await until(lambda: sink.stats.written == count, "every row written")
    finally:
        await sink.stop()
        await db.dispose()
    assert sum(transactions) == count
    # One cycle per flush interval (and the last rows): not one transaction per few rows.
    assert len(transactions) <= LOAD_SECONDS / FLUSH + 3, transactions


async def test_a_whole_batch_waiting_is_written_at_once(tmp_path: Path, transactions: list[int]) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    sink = LedgerSink(db, tmp_path / "audit.spool", batch_size=10, flush_interval=3600)
    for i in range(25):
        sink.record(event(i))
    await sink.start()
    try:
        await until(lambda: sink.stats.written >= 20, "the whole batches")  # no flush interval to wait
        assert transactions[:2] == [10, 10]
    finally:
        await sink.stop()  # the rest on the way out
        await db.dispose()
    assert sum(transactions) == 25
