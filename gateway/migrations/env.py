"""Alembic's environment for Sluice: runs on the connection `gateway.storage.migrate` hands over.

What belongs here: only the glue Alembic needs. Run from code, `config.attributes["connection"]`
holds a sync-facade connection of Sluice's async engine; offline mode (`--sql`) renders SQL from
`sqlalchemy.url`; the `alembic` command line with a `sqlalchemy.url` also works, for operators.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from gateway.storage.db import metadata

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine() -> None:
    engine = async_engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


given = config.attributes.get("connection")
if context.is_offline_mode():
    run_offline()
elif given is not None:
    run_on(given)
else:
    asyncio.run(run_with_own_engine())
