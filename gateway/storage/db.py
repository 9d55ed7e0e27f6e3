"""The database: engine creation from `SLUICE_DATABASE_URL`, and the one schema.

What belongs here: the tables (SQLAlchemy Core `Table`s in one `metadata`, the same for SQLite and
PostgreSQL; Alembic's migrations in `gateway/migrations` create exactly these), turning a URL into an
async engine with the right driver and timeouts (statement parameters, key hashes among them,
never in logs or error messages: `hide_parameters`), and `Database`, the handle every storage module
takes. Queries live beside their use: keys in `keys`, the ledger in `ledger`, reports in `report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_CONNECT_TIMEOUT = 5.0
# The longest one statement may run before the writer gives up and spools (PostgreSQL).
DEFAULT_COMMAND_TIMEOUT = 15.0

# BIGINT on PostgreSQL; INTEGER on SQLite, where only `INTEGER PRIMARY KEY` is the rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# The schema: a declaration shared read-only by the code and the migrations, never changed at run time.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("key_hash", String(80), nullable=False, unique=True),
    Column("policy", JSON, nullable=False),
    Column("models", JSON, nullable=True),
    Column("on_violation", String(16), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # Limits (migration 0002); NULL: the server's default, 0: no limit.
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("max_concurrency", Integer, nullable=True),
)
# One active key per name; a revoked key's name may be reused.
Index(
    "uq_api_keys_active_name",
    api_keys.c.name,
    unique=True,
    sqlite_where=api_keys.c.revoked_at.is_(None),
    postgresql_where=api_keys.c.revoked_at.is_(None),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("writer", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("key_name", String(64), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("requested_model", String(256), nullable=False),
    Column("served_model", String(256), nullable=True),
    Column("deployment", String(256), nullable=True),
    Column("upstream_model", String(256), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("channel", String(128), nullable=True),
    Column("policy", JSON, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("badges", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("status", Integer, nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Column("stream", Boolean, nullable=False),
    Column("client_cancelled", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("simulated", Boolean, nullable=False),
    Column("extra", JSON, nullable=False),
    Column("prev_hash", String(80), nullable=False),
    Column("hash", String(80), nullable=False),
)
Index("uq_audit_events_writer_seq", audit_events.c.writer, audit_events.c.seq, unique=True)
Index("ix_audit_events_time", audit_events.c.time)
Index("ix_audit_events_key_name_time", audit_events.c.key_name, audit_events.c.time)

# The head of each writer's chain, updated in the same transaction as its records: a deleted tail
# (the newest records of a chain) shows as a chain that stops short of its head.
audit_writers = Table(
    "audit_writers",
    metadata,
    Column("writer", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_hash", String(80), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=True),
)


class DatabaseURLError(ValueError):
    """A `SLUICE_DATABASE_URL` that names neither SQLite nor PostgreSQL."""


def normalize_url(raw: str) -> URL:
    """The URL with Sluice's async driver: `sqlite+aiosqlite` or `postgresql+asyncpg`."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseURLError(f"SLUICE_DATABASE_URL is not a database URL ({type(exc).__name__})") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    raise DatabaseURLError(
        f"SLUICE_DATABASE_URL: unsupported database {backend!r} (use sqlite+aiosqlite or postgresql+asyncpg)"
    )


def safe_url(url: URL) -> str:
    """The URL for logs and messages: never the password."""
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read the ledger while a gateway writes it.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def json_text(value: Any) -> str:
    """A JSON column's text: orjson's (the ledger writes four JSON columns per row; the standard
    library's encoder cost more than the rest of a row's parameters), else the standard library's
    for what orjson does not take (integers past 64 bits, keys that are not strings)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def make_engine(
    url: URL,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        database = url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            # A directory that cannot be made is reported by the first connection, like a database
            # that is down: the gateway still starts, and spools.
            with contextlib.suppress(OSError):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # `timeout` is SQLite's busy timeout: how long a write waits for another writer's lock.
        engine = create_async_engine(
            url, hide_parameters=True, json_serializer=json_text, connect_args={"timeout": connect_timeout}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        hide_parameters=True,
        json_serializer=json_text,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=connect_timeout,
        connect_args={"timeout": connect_timeout, "command_timeout": command_timeout},
    )


class Database:
    """One engine over `SLUICE_DATABASE_URL`, and whether its schema is known to be current.

    Building it opens no connection: a gateway whose database is down still starts.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self.url = normalize_url(url) if isinstance(url, str) else url
        self.engine = make_engine(self.url, connect_timeout=connect_timeout, command_timeout=command_timeout)
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def display_url(self) -> str:
        return safe_url(self.url)

    async def ensure_schema(self) -> None:
        """Apply pending migrations once per process (idempotent; serialized across replicas)."""
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            from gateway.storage.migrate import upgrade  # alembic is loaded only when needed

            await upgrade(self.engine)
            self._schema_ready = True

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
