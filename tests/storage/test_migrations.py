"""Migrations: Alembic's schema is the code's schema, on both databases, from any directory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from gateway.storage.db import Database, DatabaseURLError, metadata, normalize_url
from gateway.storage.migrate import SCRIPT_LOCATION, head_revision, revisions
from tests.storage.support import sluice


def _differences(conn: Connection) -> list[Any]:
    diffs: list[Any] = compare_metadata(MigrationContext.configure(conn), metadata)
    return diffs


async def test_migrations_build_the_tables_the_code_uses(db: Database) -> None:
    assert not (await revisions(db.engine)).up_to_date
    await db.ensure_schema()
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
    assert (await revisions(db.engine)).current == head_revision()


async def test_concurrent_upgrades_wait_for_each_other(db_url: str) -> None:
    replicas = [Database(db_url) for _ in range(4)]
    try:
        await asyncio.gather(*(r.ensure_schema() for r in replicas))
        assert (await revisions(replicas[0].engine)).up_to_date
    finally:
        for replica in replicas:
            await replica.dispose()


async def test_db_commands_from_another_directory(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no alembic.ini here: the scripts are found as package data
    assert SCRIPT_LOCATION.is_dir() and (SCRIPT_LOCATION / "env.py").exists()
    pending = await sluice("db", "check", url=db_url)
    assert pending.exit_code == 1 and "pending" in pending.stderr
    upgraded = await sluice("db", "upgrade", url=db_url)
    assert upgraded.exit_code == 0, upgraded.output
    current = await sluice("db", "check", url=db_url)
    assert current.exit_code == 0 and f"revision {head_revision()}" in current.stdout
    assert "password" not in current.stdout


def test_database_urls() -> None:
    assert normalize_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert normalize_url("postgresql://u@h/d").drivername == "postgresql+asyncpg"
    assert normalize_url("postgres://u@h/d").drivername == "postgresql+asyncpg"
    with pytest.raises(DatabaseURLError, match="unsupported"):
        normalize_url("mysql://u@h/d")
    with pytest.raises(DatabaseURLError, match="not a database URL"):
        normalize_url("::nope")
    shown = Database("postgresql+asyncpg://user:s3cret@127.0.0.1/db").display_url
    assert "s3cret" not in shown


async def test_an_unreachable_database_fails_fast(tmp_path: Path) -> None:
    from tests.storage.conftest import free_port

    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    run = await sluice("keys", "list", url=url)
    assert run.exit_code == 1 and "ConnectionRefusedError" in run.stderr
