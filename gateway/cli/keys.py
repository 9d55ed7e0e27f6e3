"""`sluice keys ...`: client keys (`hash` for the config file; `create`, `list`, `update` (limits),
`revoke` in the database).

What belongs here: options and rendering. The key lifecycle lives in `gateway.storage.keys`;
the database is the one `--database-url` or `SLUICE_DATABASE_URL` names, and `create` checks names,
policies and models against the config `--config` or `SLUICE_CONFIG` names, as for the gateway.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli.db import ConfigOpt, DatabaseOpt, cli_settings, with_database
from gateway.config import ConfigError, load_config
from gateway.core.auth import hash_key
from gateway.core.limits import KeyLimits
from gateway.names import OnViolation
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.keys import (
    KeyNameTaken,
    KeyNotFound,
    StoredKey,
    create_key,
    key_problems,
    list_keys,
    revoke_key,
    update_limits,
)
from gateway.storage.timespec import parse_moment
from policies.policy import BUILTIN_POLICIES

keys_app = typer.Typer(help="Client keys.")
RpmOpt = Annotated[int | None, typer.Option("--rpm", min=0, help="requests per minute (0: no limit)")]
TpmOpt = Annotated[
    int | None, typer.Option("--tpm", min=0, help="tokens per minute, as upstreams report them (0: no limit)")
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option("--max-concurrency", min=0, help="requests in flight (0: no limit)")
]


@keys_app.command("hash")
def keys_hash(
    key: Annotated[str | None, typer.Argument(help="the key; read from stdin when omitted")] = None,
) -> None:
    """Print the hash to put in an environment variable named by `key_hash_env` in the config."""
    value = key if key is not None else sys.stdin.readline().strip()
    if not value:
        typer.echo("sluice: no key given", err=True)
        raise typer.Exit(2)
    typer.echo(hash_key(value))


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _known(settings: Settings) -> tuple[Collection[str], Collection[str] | None, set[str]]:
    """(policy names, model names or None, config key names) from the config file, if there is one."""
    if not settings.config.exists():
        typer.echo(
            f"sluice: {settings.config} not found: policies checked against the built-in ones, "
            "models and config key names not checked",
            err=True,
        )
        return set(BUILTIN_POLICIES), None, set()
    try:
        config = load_config(settings.config)
    except ConfigError as exc:
        typer.echo(f"sluice: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    return config.policy_table(), {m.name for m in config.models}, {k.name for k in config.keys}


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="who holds the key, e.g. legal")],
    policy: Annotated[
        str | None, typer.Option("--policy", help="policy names, comma-separated (default: the server's)")
    ] = None,
    models: Annotated[str | None, typer.Option("--models", help="allowed models, comma-separated")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="90d, 12h, 2w, or a date")] = None,
    on_violation: Annotated[
        OnViolation | None, typer.Option("--on-violation", help="block or reroute (default: the server's)")
    ] = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_concurrency: ConcurrencyOpt = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a key in the database and print it, once; only its hash is stored. Limits left out
    are the server's (SLUICE_KEY_RPM, SLUICE_KEY_TPM, SLUICE_KEY_MAX_CONCURRENCY)."""
    settings = cli_settings(config=config, database_url=database_url)
    known_policies, known_models, reserved = _known(settings)
    policies, allowed = _split(policy), (_split(models) if models is not None else None)
    problems = key_problems(
        name,
        policies,
        allowed,
        known_policies=known_policies,
        known_models=known_models,
        reserved_names=reserved,
    )
    now = datetime.now(UTC)
    try:
        expires_at = parse_moment(expires, now=now, direction="future") if expires else None
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        for line in problems:
            typer.echo(f"sluice: {line}", err=True)
        raise typer.Exit(2)

    async def job(db: Database) -> tuple[str, StoredKey]:
        return await create_key(
            db,
            name=name,
            policy=policies,
            models=allowed,
            on_violation=on_violation,
            expires_at=expires_at,
            now=now,
            limits=KeyLimits(rpm, tpm, max_concurrency),
        )

    try:
        key, stored = with_database(job, settings)
    except KeyNameTaken as exc:
        typer.echo(f"sluice: {exc}", err=True)
        raise typer.Exit(1) from None
    expiry = f", expires {stored.expires_at:%Y-%m-%d %H:%M} UTC" if stored.expires_at else ""
    typer.echo(
        f"created key {name!r} (policy {', '.join(stored.policy) or 'server default'}{expiry}). "
        "It is shown only now; Sluice keeps only its hash:",
        err=True,
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Database keys (never their plaintext): active, expired and revoked."""
    found = with_database(list_keys, cli_settings(database_url=database_url))
    now = datetime.now(UTC)
    if as_json:
        typer.echo(json.dumps([k.as_dict(now) for k in found], indent=2))
        return
    table = Table(title=f"{len(found)} database key(s)")
    columns = ["name", "status", "policy", "models", "on violation", "limits"]
    columns += ["created", "expires", "revoked"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for key in found:
        data = key.as_dict(now)
        table.add_row(
            key.name,
            data["status"],
            ", ".join(key.policy) or "(server default)",
            ", ".join(key.models) if key.models is not None else "(all)",
            data["on_violation"] or "(server default)",
            _limits(key.limits),
            data["created_at"],
            data["expires_at"] or "-",
            data["revoked_at"] or "-",
        )
    Console(width=200).print(table)


def _limits(limits: KeyLimits) -> str:
    shown = [f"{name} {value}" for name, value in limits.as_dict().items() if value is not None]
    return ", ".join(shown) or "(server default)"


@keys_app.command("update")
def keys_update(
    name: Annotated[str, typer.Argument(help="the key's name")],
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_concurrency: ConcurrencyOpt = None,
    default: Annotated[
        str | None,
        typer.Option("--default", help="limits back to the server's default, e.g. rpm,tpm"),
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Change a database key's limits; every replica applies them on the key's next request."""
    changes: dict[str, int | None] = {n: None for n in _split(default)}
    given = {"rpm": rpm, "tpm": tpm, "max_concurrency": max_concurrency}
    changes |= {n: v for n, v in given.items() if v is not None}
    unknown = sorted(set(changes) - set(given))
    if unknown or not changes:
        why = f"not a limit: {', '.join(unknown)}" if unknown else "give a limit to change"
        typer.echo(f"sluice: {why}", err=True)
        raise typer.Exit(2)

    async def job(db: Database) -> StoredKey:
        return await update_limits(db, name, **changes)

    try:
        stored = with_database(job, cli_settings(database_url=database_url))
    except KeyNotFound as exc:
        typer.echo(f"sluice: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"key {name!r}: {_limits(stored.limits)}")


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="the key's name")], database_url: DatabaseOpt = None
) -> None:
    """Revoke a database key: refused on the next request, on every replica."""

    async def job(db: Database) -> StoredKey:
        return await revoke_key(db, name)

    try:
        with_database(job, cli_settings(database_url=database_url))
    except KeyNotFound as exc:
        typer.echo(f"sluice: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked key {name!r}")
