"""The `sluice` console script: one Typer app assembled from the command modules.

The command modules import about a thousand modules (FastAPI, SQLAlchemy, Alembic, pydantic, ...)
whose objects live as long as the process. With the cyclic GC on, every start walked them about
300 times on the way (twice in full): ~0.15 s of CPU to free ~1,500 objects. So the collector is
paused for these imports and what they built is frozen, kept out of every later collection, as
the app's lifespan does for what it builds (`gateway.app`). The garbage among them, a few hundred
kilobytes at most, stays.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import typer


@contextmanager
def _frozen_imports() -> Iterator[None]:
    """The GC off for the block; then everything tracked so far frozen and the GC as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


with _frozen_imports():
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
