"""`sluice serve` and `sluice check`, and what `sluice demo` shares with them.

What belongs here: turning command-line options into settings, refusing a bad config with one
line per problem before anything listens, and starting uvicorn with the app factory (and the HTTP
protocol with receive deadlines, `gateway.server.uvicorn_deadlines`).
"""

from __future__ import annotations

import logging
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from gateway.cli import output
from gateway.config import ConfigError
from gateway.core.deployments import build_deployments
from gateway.server.uvicorn_deadlines import deadline_protocol
from gateway.settings import Settings, export_env

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="config file (default: $SLUICE_CONFIG)")]
HostOpt = Annotated[
    str | None, typer.Option(help="address to listen on (default: $SLUICE_HOST or 127.0.0.1)")
]
PortOpt = Annotated[int | None, typer.Option(help="port (default: $SLUICE_PORT or 8080)")]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    # Client libraries log request lines (URLs with query keys for some providers), and aiosqlite
    # every statement with its parameters (its records are withheld anyway): keep them quiet.
    for name in ("httpx", "httpcore", "hpack", "aiosqlite"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.model_validate({k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # One line per problem; pydantic's own text ends with a documentation URL, not the problem.
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            typer.echo(f"sluice: invalid settings: {where}: {err['msg']}", err=True)
        raise typer.Exit(2) from None


def _refuse_bad_config(settings: Settings) -> None:
    from gateway.app import prepare
    from gateway.storage.runtime import require_writable_spool

    try:
        prepare(settings)
        require_writable_spool(settings)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            typer.echo(f"sluice: {line}", err=True)
        raise typer.Exit(2) from None


def _run(settings: Settings) -> None:
    export_env(
        config=str(settings.config),
        database_url=settings.database_url,
        audit_spool=str(settings.audit_spool),
        host=settings.host,
        port=str(settings.port),
        log_level=settings.log_level,
        allow_simulate="true" if settings.allow_simulate else "false",
        fake_upstream_url=settings.fake_upstream_url or "",
    )
    configure_logging(settings.log_level)
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=30,
        access_log=settings.access_log,
        # uvicorn's own protocol waits forever for headers and bodies (slowloris): ours has deadlines.
        http=deadline_protocol(settings),
        # Sluice serves no WebSocket; the WebSocket library logged every header of a handshake at DEBUG.
        ws="none",
    )


def serve(
    config: ConfigOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (default: $SLUICE_WORKERS or 1)")
    ] = None,
) -> None:
    """Run the gateway on a real config (keys from the environment)."""
    settings = _settings(config=config, host=host, port=port, workers=workers, allow_simulate=False)
    _refuse_bad_config(settings)
    _run(settings)


def check(config: ConfigOpt = None) -> None:
    """Validate a config against the catalog: every problem at once, or every deployment, available or not."""
    from gateway.config import check_file
    from gateway.core.routing import PolicyRouter
    from policies.catalog import load_catalog
    from policies.policy import resolve

    settings = _settings(config=config)
    catalog = load_catalog()
    try:
        # A demo config (`demo: true`) may simulate; any other may not, as `sluice serve` says.
        cfg = check_file(settings.config, catalog)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            typer.echo(f"sluice: {line}", err=True)
        raise typer.Exit(1) from None
    deployments = build_deployments(cfg, catalog, settings, date.today())
    router = PolicyRouter(cfg, deployments)
    policy = resolve(cfg.server.default_policy, cfg.policy_table())
    title = f"{settings.config}: OK; default policy {', '.join(p.name for p in policy)}"
    table = Table(title=title, expand=True, show_lines=True)
    # Ids keep their line; names and reasons share what is left (gateway/cli/output.py).
    table.add_column("model, upstream model", ratio=2, overflow="fold")
    table.add_column("channel", no_wrap=True)
    table.add_column("available", no_wrap=True)
    table.add_column("complies", no_wrap=True)
    table.add_column("why not", ratio=3, overflow="fold")
    unavailable = simulated = 0
    for dep in router.all_deployments():
        decision, _ = router.judge(policy, dep)
        simulated += dep.simulated
        unavailable += not dep.available and not dep.simulated
        why = list(decision.reasons())
        if dep.simulated:
            available = "simulated"
        elif dep.available:
            available = "yes"
        else:
            available = "[yellow]no[/]"
            why.insert(0, f"unavailable: {dep.unavailable}")
        table.add_row(
            escape(f"{dep.alias}\n{dep.config.model}"),
            dep.channel.id,
            available,
            "[green]yes[/]" if decision.allowed else "[red]no[/]",
            escape(output.reasons_cell(why)),
        )
    output.console().print(table)
    if cfg.demo:
        typer.echo(
            f"a demo config: {simulated} simulated deployment(s), answered by a local fake upstream.\n"
            f"`sluice demo --config {settings.config}` runs it; `sluice serve` refuses `simulate`."
        )
    typer.echo(f"{unavailable} deployment(s) unavailable")
