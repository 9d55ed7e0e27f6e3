"""`sluice init`: write a starter config for the provider keys set in the environment.

What belongs here: the command's options, asking the settings module which key variables are set,
checking the rendered file as `sluice check` would before it is written, refusing to overwrite an
existing file without `--force`, and telling the operator what was written and what to do next.
Choosing channels and rendering the YAML is `gateway.cli.starter`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.starter import OFFERS, render
from gateway.config import ConfigError, check, parse_config
from gateway.settings import Settings
from policies.catalog import load_catalog
from policies.policy import BUILTIN_POLICIES, UnknownPolicyError, resolve

DEFAULT_OUTPUT = Path("config/sluice.yaml")


def init(
    output: Annotated[
        Path,
        typer.Option("--output", "--config", "-o", help="where to write the config", dir_okay=False),
    ] = DEFAULT_OUTPUT,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="the server's default policy (repeatable); channels are chosen to comply with it"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a starter config for the providers whose API keys are set in the environment."""
    names = [n.strip() for raw in policy or ["no-training-only"] for n in raw.split(",") if n.strip()]
    try:
        chosen = resolve(names, BUILTIN_POLICIES)
    except UnknownPolicyError as exc:
        typer.echo(
            f"sluice: unknown policy {exc.name!r} (known: {', '.join(sorted(BUILTIN_POLICIES))})", err=True
        )
        raise typer.Exit(2) from None
    if output.exists() and not force:
        typer.echo(
            f"sluice: {output} exists; pass --force to overwrite it, or --output another path", err=True
        )
        raise typer.Exit(1)
    catalog = load_catalog()
    keys_set = [offer.env for offer in OFFERS if Settings.read_secret(offer.env) is not None]
    starter = render(catalog, keys_set=keys_set, policy=chosen, policy_names=names, today=date.today())
    # The file must pass `sluice check`: a starter that does not is a bug here, not the operator's.
    try:
        problems = check(parse_config(starter.text, origin=str(output)), catalog)
    except ConfigError as exc:
        problems = str(exc).splitlines()
    if problems:
        for line in problems:
            typer.echo(f"sluice: init would write a config that does not check out: {line}", err=True)
        raise typer.Exit(1)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(starter.text, encoding="utf-8")
    _report(output, keys_set, starter.active, starter.pending, starter.refused)


def _report(
    output: Path,
    keys_set: list[str],
    active: tuple[str, ...],
    pending: tuple[str, ...],
    refused: tuple[str, ...],
) -> None:
    say = typer.echo
    if keys_set:
        say(f"wrote {output} for {', '.join(keys_set)}")
    else:
        say(f"wrote {output}: no provider key is set in this environment, so it has only a self-hosted model")
        say(f"  set one of {', '.join(o.env for o in OFFERS)}, then run `sluice init --force` again")
    if active:
        say(f"  models: {', '.join(active)}")
    for line in pending:
        say(f"  commented out: {line} (see the comments in the file)")
    for line in refused:
        say(f"  not written: {line}")
    say(f"next: `sluice check --config {output}`, then `sluice serve --config {output}`")
    say("  (SLUICE_MASTER_KEY administers keys; `sluice keys create --name <team>` makes a client key)")
