"""Alembic, driven from code: `upgrade` to the newest schema and `revisions` (current, head).

What belongs here: building Alembic's `Config` programmatically (the scripts are package data in
`gateway/migrations`, so this works from an installed wheel and from any working directory, with
no alembic.ini), and running it over Sluice's own async engine. Upgrades are serialized: an
advisory lock on PostgreSQL (several replicas start at once), `BEGIN IMMEDIATE` on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_xact_lock key: any constant that no other application on the cluster uses.
MIGRATION_LOCK_KEY = 0x51_55_1C_E0


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations package has no revision"
    return head


@dataclass(frozen=True)
class Revisions:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


async def _serialize(conn: AsyncConnection) -> None:
    """Take the lock that makes concurrent upgrades wait for each other, until commit."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        # The write lock now (other writers wait up to the busy timeout), and DDL inside the transaction.
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations up to `revision` in one transaction (PostgreSQL's DDL is transactional)."""
    async with engine.connect() as conn:
        await _serialize(conn)
        await conn.run_sync(_upgrade, revision)
        await conn.commit()


async def revisions(engine: AsyncEngine) -> Revisions:
    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    return Revisions(current=current, head=head_revision())
