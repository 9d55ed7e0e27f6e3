"""`write_rows` sends the driver the statement compiled once with SQLAlchemy's own bind processors:
what it stores must be exactly what SQLAlchemy's `conn.execute(insert_rows(...), rows)` stores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from gateway.storage import ledger
from gateway.storage.chain import Chain, Row
from gateway.storage.db import Database, audit_events, audit_writers
from tests.storage.support import event


def _rows() -> list[Row]:
    chain = Chain("host-1-abcd")
    varied = [
        event(1),
        event(2, served_model="gpt-4o", deployment="d1", prompt_tokens=3, completion_tokens=None),
        event(3, stream=True, client_cancelled=True, simulated=True, attempts=2, error_code="upstream_error"),
        event(4, extra={"features": ["web_search"], "store_false": True}, reasons=("a\x00b",)),
    ]
    return [chain.append(item) for item in varied]


async def _stored(db: Database) -> list[tuple[Any, ...]]:
    async with db.engine.connect() as conn:
        found = (await conn.execute(select(audit_events).order_by(audit_events.c.seq))).all()
        heads = (await conn.execute(select(audit_writers.c.writer, audit_writers.c.last_seq))).all()
    return [tuple(row)[1:] for row in found] + [tuple(row) for row in heads]  # not the `id`


async def _clear(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(delete(audit_events))
        await conn.execute(delete(audit_writers))


async def test_rows_are_stored_as_sqlalchemy_stores_them(db: Database) -> None:
    await db.ensure_schema()
    rows = _rows()
    async with db.engine.begin() as conn:
        await conn.execute(ledger.insert_rows(conn.dialect.name), rows)
        await conn.execute(ledger.upsert_heads(conn.dialect.name), ledger.chain_heads(rows))
    expected = await _stored(db)
    await _clear(db)

    await ledger.write_rows(db, rows)
    await ledger.write_rows(db, rows)  # a replay: rows already present are skipped, as before

    assert await _stored(db) == expected
    assert len(expected) == len(rows) + 1
