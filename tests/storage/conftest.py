"""Fixtures for the storage tests: a throwaway PostgreSQL database, both backends, a served app.

`pg_url` creates `sluice_test_<random>` on the PostgreSQL at 127.0.0.1:5432 and drops it after the
test (skipped with a reason when none is reachable; CI's SLUICE_TEST_REQUIRE_SERVICES=1 turns the
skip into a failure). `db_url` runs a test once on SQLite and once on PostgreSQL.
`TcpProxy` stands between the gateway and PostgreSQL so a test can take the database away and
bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from gateway.app import create_app
from gateway.settings import Settings
from gateway.storage.db import Database, api_keys, audit_events, audit_writers
from tests.conftest import port_open, require_service

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_USERS = ("postgres", "root")
MASTER_KEY = "sk-sluice-master-test-0123456789"
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}


async def _admin_connection() -> asyncpg.Connection:
    last: Exception | None = None
    for user in PG_USERS:
        try:
            connection: asyncpg.Connection = await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=user, database="test", timeout=5
            )
            return connection
        except (OSError, asyncpg.PostgresError) as exc:
            last = exc
    raise ConnectionError(f"PostgreSQL at {PG_HOST}:{PG_PORT} refused users {PG_USERS}: {last}")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    if not port_open(PG_HOST, PG_PORT):
        require_service(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}")
    try:
        admin = await _admin_connection()
    except ConnectionError as exc:
        require_service(str(exc))
        raise
    name = f"sluice_test_{secrets.token_hex(6)}"
    user = await admin.fetchval("SELECT current_user")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def settings(demo_settings: Settings, db_url: str) -> Settings:
    """The demo config on the backend under test, with a master key."""
    return Settings.model_validate(
        {**demo_settings.model_dump(), "database_url": db_url, "master_key": MASTER_KEY}
    )


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


@contextlib.asynccontextmanager
async def asgi(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, over httpx's ASGI transport."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test", timeout=30) as http:
            yield http


async def ledger_rows(url: str) -> list[dict[str, Any]]:
    """Every audit record, by id, through a connection of its own."""
    database = Database(url)
    try:
        async with database.engine.connect() as conn:
            result = await conn.execute(select(audit_events).order_by(audit_events.c.id))
            return [dict(row._mapping) for row in result]
    finally:
        await database.dispose()


async def dump_tables(url: str) -> str:
    """Every row of every Sluice table, as text (for canary searches)."""
    database = Database(url)
    try:
        async with database.engine.connect() as conn:
            parts = []
            for table in (api_keys, audit_events, audit_writers):
                parts += [repr(tuple(row)) for row in await conn.execute(select(table))]
            return "\n".join(parts)
    finally:
        await database.dispose()


async def execute(url: str, statement: str, **params: Any) -> None:
    database = Database(url)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text(statement), params)
    finally:
        await database.dispose()


def app_on(settings: Settings, **kwargs: Any) -> FastAPI:
    return create_app(settings, **kwargs)


class TcpProxy:
    """A loopback TCP relay to PostgreSQL that a test can stop (dropping every connection) and restart."""

    def __init__(self, port: int, target: tuple[str, int] = (PG_HOST, PG_PORT)) -> None:
        self.port = port
        self._target = target
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass  # the other side went away: so does this direction
        finally:
            sink.transport.abort()
            self._writers.discard(sink)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
