"""`sluice db ...`: the schema (Alembic migrations), and how every CLI command opens the database.

What belongs here: `db upgrade` and `db check`, and the helpers the `keys` and `audit` commands
share: settings from the environment with the `--config` and `--database-url` options on top, a
`Database` over that URL that is always disposed, and one clear line when the database does not
answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from gateway.settings import Settings
from gateway.storage.db import Database, DatabaseURLError
from gateway.storage.ledger import DB_ERRORS, describe
from gateway.storage.migrate import revisions

T = TypeVar("T")
db_app = typer.Typer(help="The database: schema migrations.", no_args_is_help=True)
DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="database URL (default: $SLUICE_DATABASE_URL, else ./sluice.db)"),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="config file (default: $SLUICE_CONFIG)")]


def cli_settings(*, config: Path | None = None, database_url: str | None = None) -> Settings:
    """Settings from the environment, with what the command line names on top."""
    overrides = {"config": config, "database_url": database_url}
    try:
        return Settings.model_validate({k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        typer.echo(f"sluice: invalid settings: {str(exc).splitlines()[-1].strip()}", err=True)
        raise typer.Exit(2) from None


def with_database(job: Callable[[Database], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run `job` on the database named by the settings; exit 1 with one line when it fails."""
    settings = settings or cli_settings()
    try:
        db = Database(settings.database_url)
    except DatabaseURLError as exc:
        typer.echo(f"sluice: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> T:
        try:
            return await job(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except DB_ERRORS as exc:
        typer.echo(f"sluice: database {db.display_url}: {describe(exc)}", err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def upgrade(database_url: DatabaseOpt = None) -> None:
    """Apply pending migrations (the gateway also applies them at start-up)."""

    async def job(db: Database) -> str:
        await db.ensure_schema()
        return (await revisions(db.engine)).head

    head = with_database(job, cli_settings(database_url=database_url))
    typer.echo(f"schema at revision {head} (newest)")


@db_app.command("check")
def check(database_url: DatabaseOpt = None) -> None:
    """Say which schema revision the database has; exit 1 when migrations are pending."""

    async def job(db: Database) -> tuple[str | None, str, str]:
        found = await revisions(db.engine)
        return found.current, found.head, db.display_url

    current, head, url = with_database(job, cli_settings(database_url=database_url))
    typer.echo(f"{url}: schema revision {current or 'none'}, newest {head}")
    if current != head:
        typer.echo("sluice: migrations pending; run `sluice db upgrade`", err=True)
        raise typer.Exit(1)
