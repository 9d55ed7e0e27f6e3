"""The ledger survives a database outage: nothing is lost, order and chain hold.

PostgreSQL is reached through a TCP relay the test controls (down from start-up; down mid-run,
every open connection dropped); SQLite is "down" while another process holds its write lock.
While the database is away the gateway serves and spools; when it is back the spool is replayed
in order. When the spool cannot be written either, `/readyz` turns unready.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.observability.audit import AuditEvent
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.ledger import LedgerSink
from gateway.storage.report import verify
from tests.conftest import AUTH, LEGAL_KEY, chat_body
from tests.helpers import until
from tests.storage.conftest import TcpProxy, asgi, free_port, ledger_rows

LEGAL = {"authorization": f"Bearer {LEGAL_KEY}"}
# (model, content suffix, headers, expected status): allowed, rerouted, blocked, upstream failure.
KINDS = (
    ("gpt-4o-mini", "", AUTH, 200),
    ("deepseek-chat", "", AUTH, 200),
    ("gemini-flash-free", "", LEGAL, 403),
    ("gpt-4o-mini", " [[fake:status=503]]", AUTH, 502),
)


def spool_lines(path: Path) -> int:
    files = [path, *path.parent.glob(path.name + ".replay-*")]
    return sum(len(f.read_bytes().splitlines()) for f in files if f.exists())


def fast_sink(url: str, spool: Path, **kwargs: Any) -> LedgerSink:
    """The production writer with short retry intervals (the test waits on conditions, not time)."""
    db = Database(url, connect_timeout=1.0)
    return LedgerSink(db, spool, retry_initial=0.02, retry_max=0.1, **kwargs)


async def send(http: httpx.AsyncClient, count: int, canary: str) -> list[str]:
    """`count` requests cycling through every kind; their request ids, in the order served."""
    ids = []
    for i in range(count):
        model, suffix, headers, status = KINDS[i % len(KINDS)]
        reply = await http.post(
            "/v1/chat/completions", headers=headers, json=chat_body(model, canary + suffix)
        )
        assert reply.status_code == status, reply.text[:300]
        ids.append(reply.headers["x-request-id"])
    return ids


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[TcpProxy, str]]:
    proxy = TcpProxy(free_port())
    yield proxy, pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


async def check_ledger(url: str, ids: list[str]) -> None:
    rows = await ledger_rows(url)
    assert [r["request_id"] for r in rows] == ids, "every record, once, in the order served"
    assert [r["seq"] for r in rows] == list(range(1, len(ids) + 1))
    db = Database(url)
    try:
        result = await verify(db)
    finally:
        await db.dispose()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.records == len(ids)


async def test_postgres_down_at_start_up_then_back(
    demo_settings: Settings, proxied: tuple[TcpProxy, str], pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy, url = proxied
    settings = demo_settings.model_copy(update={"database_url": url})
    sink = fast_sink(url, settings.audit_spool)
    canary = f"CANARY-{uuid.uuid4().hex}"
    served = 40
    try:
        app = create_app(settings, audit=sink)
        async with asgi(app) as http:
            await until(lambda: "unavailable" in sink.status()[1], "the writer to notice")
            ready = await http.get("/readyz")
            assert ready.status_code == 200, "a spooling gateway is ready"
            assert "unavailable" in ready.json()["database"]["detail"]
            ids = await send(http, served, canary)
            await until(lambda: sink.backlog == 0, "the queue to reach the spool")
            assert spool_lines(settings.audit_spool) == served
            spooled = "".join(p.read_text() for p in settings.audit_spool.parent.glob("audit.spool*"))
            assert canary not in spooled and "sk-sluice" not in spooled

            await proxy.start()  # the database is back
            await until(lambda: sink.stats.replayed == served, "the spool to be replayed")
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["database"]["detail"].startswith("ok")
        await check_ledger(pg_url, ids)
        print(f"outage from start-up: {served} requests served while down, {len(ids)} records after")
        assert spool_lines(settings.audit_spool) == 0
    finally:
        await proxy.stop()
        await sink.stop()
        await sink._db.dispose()


async def test_postgres_lost_mid_run_then_back(
    demo_settings: Settings, proxied: tuple[TcpProxy, str], pg_url: str
) -> None:
    proxy, url = proxied
    settings = demo_settings.model_copy(update={"database_url": url})
    sink = fast_sink(url, settings.audit_spool, batch_size=7)
    await proxy.start()
    try:
        app = create_app(settings, audit=sink)
        async with asgi(app) as http:
            before = await send(http, 12, "before")
            await until(lambda: sink.backlog == 0 and sink.stats.written == 12, "the first records")
            await proxy.stop()  # every connection dropped, nothing listens
            during = await send(http, 33, "during")
            await until(lambda: spool_lines(settings.audit_spool) == 33, "the outage's records in the spool")
            assert sink.status()[0] and "unavailable" in sink.status()[1]
            await proxy.start()
            after = await send(http, 5, "after")
            await until(
                lambda: sink.backlog == 0 and sink.stats.written + sink.stats.replayed == 50, "catch-up"
            )
        await check_ledger(pg_url, before + during + after)
    finally:
        await proxy.stop()
        await sink.stop()
        await sink._db.dispose()


async def test_sqlite_locked_then_released(demo_settings: Settings) -> None:
    url = demo_settings.database_url
    path = url.split("///", 1)[1]
    sink = LedgerSink(
        Database(url, connect_timeout=0.05), demo_settings.audit_spool, retry_initial=0.02, retry_max=0.1
    )
    app = create_app(demo_settings, audit=sink)
    async with asgi(app) as http:
        first = await send(http, 4, "x")
        await until(lambda: sink.backlog == 0 and sink.stats.written == 4, "the first records")
        lock = sqlite3.connect(path, timeout=5)
        lock.execute("BEGIN EXCLUSIVE")  # another process writing for a long time
        try:
            during = await send(http, 21, "y")
            await until(lambda: spool_lines(demo_settings.audit_spool) == 21, "the spool")
        finally:
            lock.rollback()
            lock.close()
        await until(lambda: sink.stats.replayed == 21, "the replay")
    await check_ledger(url, first + during)
    await sink._db.dispose()


def event(i: int) -> AuditEvent:
    return AuditEvent(
        request_id=f"req-{i:04d}",
        time=datetime.now(UTC),
        key_name="demo",
        endpoint="chat",
        requested_model="gpt-4o-mini",
        policy=("api-channel-only",),
        decision="allowed",
        status=200,
    )


async def test_a_full_queue_spills_in_order_from_record(demo_settings: Settings) -> None:
    url = demo_settings.database_url
    path = url.split("///", 1)[1]
    db = Database(url, connect_timeout=0.05)
    await db.ensure_schema()
    sink = LedgerSink(
        db, demo_settings.audit_spool, queue_size=5, batch_size=3, retry_initial=0.02, retry_max=0.1
    )
    await sink.start()
    lock = sqlite3.connect(path, timeout=5)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(1, 61):
            sink.record(event(i))  # no await between: the writer cannot run, the queue overflows
        assert sink.backlog < 5, "record() spooled the full queue itself"
        assert spool_lines(demo_settings.audit_spool) >= 55
    finally:
        lock.rollback()
        lock.close()
    await until(lambda: sink.backlog == 0 and spool_lines(demo_settings.audit_spool) == 0, "the replay")
    await sink.stop()
    await check_ledger(url, [f"req-{i:04d}" for i in range(1, 61)])
    await db.dispose()


async def test_a_spool_left_by_a_previous_process_is_replayed(
    demo_settings: Settings, tmp_path: Path
) -> None:
    dead = f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x' / 'ledger.db'}"
    (tmp_path / "missing-dir").write_text("a file where a directory should be")
    old = LedgerSink(Database(dead, connect_timeout=0.05), demo_settings.audit_spool)
    await old.start()
    for i in range(1, 8):
        old.record(event(i))
    await old.stop()
    await old._db.dispose()
    assert spool_lines(demo_settings.audit_spool) == 7

    url = demo_settings.database_url
    new = LedgerSink(Database(url), demo_settings.audit_spool)
    await new.start()
    new.record(event(8))
    await until(lambda: new.backlog == 0 and new.stats.written == 1, "the new process's record")
    await new.stop()
    await new._db.dispose()
    rows = await ledger_rows(url)
    assert [r["request_id"] for r in rows] == [f"req-{i:04d}" for i in range(1, 9)], "the old spool first"
    assert {r["writer"] for r in rows[:7]} == {old.writer} and rows[7]["writer"] == new.writer
    db = Database(url)
    assert (await verify(db)).ok
    await db.dispose()


async def test_unwritable_spool_makes_the_gateway_unready(
    demo_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    spool = blocker / "audit.spool"
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = demo_settings.model_copy(update={"audit_spool": spool})
    sink = LedgerSink(Database(dead, connect_timeout=0.5), spool, retry_initial=0.02, retry_max=0.1)
    caplog.set_level(logging.ERROR, logger="sluice.audit")
    app = create_app(settings, audit=sink)
    async with asgi(app) as http:
        reply = await http.post("/v1/chat/completions", headers=AUTH, json=chat_body())
        assert reply.status_code == 200, "requests are still served"
        await until(lambda: not sink.status()[0], "the sink to turn unready")
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"]["status"] == "error"
        assert "not writable" in ready.json()["database"]["detail"]
        assert sink.backlog == 1, "held in memory, not lost"
    assert any("AUDIT RECORDS AT RISK" in r.getMessage() for r in caplog.records)
    await sink._db.dispose()


async def test_an_idle_writer_notices_the_database_going_and_coming_back(
    demo_settings: Settings, proxied: tuple[TcpProxy, str]
) -> None:
    proxy, url = proxied
    sink = LedgerSink(
        Database(url, connect_timeout=1.0), demo_settings.audit_spool, heartbeat=0.05, retry_max=0.1
    )
    await proxy.start()
    await sink.start()
    try:
        await until(lambda: sink.status()[1].startswith("ok"), "the first heartbeat")
        await proxy.stop()
        await until(lambda: "unavailable" in sink.status()[1], "the outage to show in status()")
        assert sink.status()[0], "ready: the spool is writable"
        await proxy.start()
        await until(lambda: sink.status()[1].startswith("ok"), "the recovery to show in status()")
    finally:
        await sink.stop()
        await proxy.stop()
        await sink._db.dispose()
