"""`sluice serve`, `sluice demo` and `sluice check`.

What belongs here: turning command-line options into settings, refusing a bad config with one
line per problem before anything listens, and starting uvicorn with the app factory (and the HTTP
protocol with receive deadlines, `gateway.uvicorn_protocol`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gateway.config import ConfigError
from gateway.deployments import build_deployments
from gateway.settings import Settings, export_env
from gateway.uvicorn_protocol import deadline_protocol

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="config file (default: $SLUICE_CONFIG)")]
HostOpt = Annotated[
    str | None, typer.Option(help="address to listen on (default: $SLUICE_HOST or 127.0.0.1)")
]
PortOpt = Annotated[int | None, typer.Option(help="port (default: $SLUICE_PORT or 8080)")]
DEMO_CONFIG = Path("config/demo.yaml")
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

    try:
        prepare(settings)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            typer.echo(f"sluice: {line}", err=True)
        raise typer.Exit(2) from None


def _run(settings: Settings) -> None:
    export_env(
        config=str(settings.config),
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


@contextmanager
def _fake_upstream(existing: str | None) -> Iterator[str]:
    if existing:
        yield existing
        return
    from gateway.testing.fake_upstream import FakeUpstream

    with FakeUpstream.in_thread() as fake:
        yield fake.url


def demo(
    host: HostOpt = None,
    port: PortOpt = None,
    config: ConfigOpt = None,
    upstream: Annotated[
        str | None, typer.Option(help="use this running fake upstream instead of starting one (benchmarks)")
    ] = None,
    workers: Annotated[int, typer.Option(help="worker processes (needs --upstream when more than 1)")] = 1,
) -> None:
    """Run Sluice in front of a local fake upstream: no keys, no network."""
    path = config or DEMO_CONFIG
    if not path.exists():
        typer.echo(f"sluice: {path} not found; run `sluice demo` from the Sluice checkout", err=True)
        raise typer.Exit(2)
    if workers > 1 and not upstream:
        typer.echo(
            "sluice: --workers above 1 needs --upstream (a fake upstream in its own process)", err=True
        )
        raise typer.Exit(2)
    with _fake_upstream(upstream) as fake_url:
        settings = _settings(
            config=path,
            host=host,
            port=port,
            workers=workers,
            allow_simulate=True,
            fake_upstream_url=fake_url,
        )
        _refuse_bad_config(settings)
        base = f"http://{settings.host}:{settings.port}/v1"
        console = Console(stderr=True, soft_wrap=True)  # copy-pastable lines, never wrapped
        console.print(f"[bold]Sluice demo[/] on {base} (fake upstream at {fake_url}); key: sk-sluice-demo\n")
        console.print("Try:")
        console.print(
            f"  curl -i {base}/chat/completions -H 'Authorization: Bearer sk-sluice-demo' "
            "-H 'Content-Type: application/json' "
            '-d \'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}\''
        )
        console.print(
            "  models: gpt-4o-mini, claude-sonnet, gemini-flash (allowed), gemini-flash-free (blocked),"
        )
        console.print("          deepseek-chat (rerouted to llama-local), llama-local (self-hosted)\n")
        console.print(
            "  python -c \"from openai import OpenAI; c = OpenAI(base_url='"
            + base
            + "', api_key='sk-sluice-demo'); r = c.chat.completions.with_raw_response.create("
            "model='claude-sonnet', messages=[{'role': 'user', 'content': 'Hi'}]); "
            "print(r.headers['x-privacy-badges']); print(r.parse().choices[0].message.content)\"\n"
        )
        _run(settings)


def check(config: ConfigOpt = None) -> None:
    """Validate a config against the catalog and list every deployment, available or not."""
    from gateway.app import prepare
    from gateway.routing import Router
    from policies.policy import resolve

    settings = _settings(config=config)
    try:
        catalog, cfg = prepare(settings)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            typer.echo(f"sluice: {line}", err=True)
        raise typer.Exit(1) from None
    deployments = build_deployments(cfg, catalog, settings, date.today())
    router = Router(cfg, deployments)
    policy = resolve(cfg.server.default_policy, cfg.policy_table())
    table = Table(title=f"{settings.config}: OK; default policy {', '.join(p.name for p in policy)}")
    for column in ("model", "deployment", "channel", "available", "complies", "why not"):
        table.add_column(column, overflow="fold")
    unavailable = 0
    for dep in router.all_deployments():
        decision, _ = router.judge(policy, dep)
        unavailable += not dep.available
        table.add_row(
            dep.alias,
            dep.config.model,
            dep.channel.id,
            "yes" if dep.available else f"[yellow]no[/]: {dep.unavailable}",
            "[green]yes[/]" if decision.allowed else "[red]no[/]",
            escape("\n".join(decision.reasons())),
        )
    Console(width=200).print(table)
    typer.echo(f"{unavailable} deployment(s) unavailable")
