"""The `sluice` console script: one Typer app assembled from the command modules."""

from __future__ import annotations

import typer

from gateway.cli.audit import audit_app
from gateway.cli.catalog import catalog_app, policy_app
from gateway.cli.db import db_app
from gateway.cli.demo import demo
from gateway.cli.init import init
from gateway.cli.keys import keys_app
from gateway.cli.serve import check, serve

app = typer.Typer(
    name="sluice",
    help="Sluice: an OpenAI-compatible gateway that routes chats only where your privacy policy allows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(serve)
app.command()(demo)
app.command()(check)
app.command()(init)
app.add_typer(catalog_app, name="catalog")
app.add_typer(policy_app, name="policy")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")


if __name__ == "__main__":
    app()
