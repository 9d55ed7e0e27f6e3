"""`sluice keys ...`: client keys."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gateway.auth import hash_key

keys_app = typer.Typer(help="Client keys.")


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
