"""`sluice demo`: Sluice in front of a local fake upstream, on the packaged demo config.

What belongs here: choosing the demo's config (the packaged one unless `--config`) and the folder for
its state (`gateway.demo`), and the commands it prints to try. Every printed command works as
printed, from any folder: Python one-liners name the interpreter that runs Sluice (and, when the
`openai` SDK is not installed in it, the line that installs it), and `sluice keys ...` names the
demo's own config and database.
"""

from __future__ import annotations

import importlib.util
import shlex
import signal
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from gateway.cli.serve import HostOpt, PortOpt, _refuse_bad_config, _run, _settings
from gateway.demo import SPOOL_NAME, database_url, demo_config, state_folder
from gateway.settings import Settings

DEMO_KEY = "sk-sluice-demo"
CHAT = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'
SDK_CALL = (
    'from openai import OpenAI; c = OpenAI(base_url="{base}", api_key="{key}"); '
    "r = c.chat.completions.with_raw_response.create("
    'model="claude-sonnet", messages=[{{"role": "user", "content": "Hi"}}]); '
    'print(r.headers["x-privacy-badges"]); print(r.parse().choices[0].message.content)'
)


@dataclass(frozen=True, kw_only=True)
class Commands:
    """What the printed commands depend on: where the demo listens, and this installation."""

    base: str  # http://host:port/v1
    python: str  # the interpreter running Sluice
    sluice: list[str]  # how to run the `sluice` of this installation
    openai_installed: bool
    config: Path
    # None: the one SLUICE_DATABASE_URL names, never printed (it may hold a password).
    database_url: str | None


def sluice_command() -> list[str]:
    """The `sluice` console script of this installation (beside the interpreter), or `python -m`."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        script = Path(folder) / "sluice"
        if script.is_file():
            return [str(script)]
    return [sys.executable, "-m", "gateway.cli.main"]


def try_lines(c: Commands) -> list[str]:
    """The commands the demo prints, one per line, ready to paste into a POSIX shell."""
    q = shlex.quote
    lines = [
        "Try:",
        f"  curl -i {c.base}/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' "
        f"-H 'Content-Type: application/json' -d {q(CHAT)}",
        "  models: gpt-4o-mini, claude-sonnet, gemini-flash (allowed), gemini-flash-free (blocked),",
        "          deepseek-chat (rerouted to llama-local), llama-local (self-hosted)",
        "",
    ]
    if not c.openai_installed:
        lines += [
            "The openai SDK is not installed for this Python; to try it, first:",
            f"  {q(c.python)} -m pip install openai",
        ]
    lines += [f"  {q(c.python)} -c {q(SDK_CALL.format(base=c.base, key=DEMO_KEY))}", ""]
    database = ["--database-url", c.database_url] if c.database_url is not None else []
    keys = [*c.sluice, "keys", "create", "--config", str(c.config), *database]
    keys += ["--name", "my-key", "--models", "deepseek-chat,llama-local"]
    lines += [
        "A key of your own (kept in the demo's database, checked against the demo's config; "
        "use it in place of sk-sluice-demo):",
        "  " + shlex.join(keys),
        "The ledger: one record per request, where it went and why, never what was written:",
        "  " + shlex.join([*c.sluice, "audit", "tail", *database]),
    ]
    return lines


def _state_settings(explicit: set[str], folder: Path) -> dict[str, object]:
    """Database and spool in the demo's folder, unless SLUICE_DATABASE_URL / SLUICE_AUDIT_SPOOL say."""
    state: dict[str, object] = {}
    if "database_url" not in explicit:
        state["database_url"] = database_url(folder)
    if "audit_spool" not in explicit:
        state["audit_spool"] = folder / SPOOL_NAME
    return state


@contextmanager
def _chosen_config(config: Path | None) -> Iterator[Path]:
    if config is not None:
        yield config.resolve()
        return
    with demo_config() as path:
        yield path


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that the demo's folders are cleaned up on the way out
    (a BaseException, as KeyboardInterrupt: no `except Exception` on the way may swallow it)."""


@contextmanager
def _cleanup_on_sigterm() -> Iterator[None]:
    """Run the `with` blocks inside on SIGTERM, then die of SIGTERM as before.

    uvicorn catches SIGTERM, shuts down gracefully, then raises the signal again with the handler
    it found: the default one would end the process before the temporary folder is removed.
    """

    def terminated(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _fake_upstream(existing: str | None) -> Iterator[str]:
    if existing:
        yield existing
        return
    try:
        from sluice_fakes.fake_upstream import FakeUpstream
    except ModuleNotFoundError:
        raise typer.BadParameter(
            "the demo answers from the fake upstream, which is not installed with Sluice itself: "
            "install it from the checkout with `pip install --no-deps -e ./fakes`, "
            "or pass --upstream URL of one already running",
            param_hint="--upstream",
        ) from None
    with FakeUpstream.in_thread() as fake:
        yield fake.url


def demo(
    host: HostOpt = None,
    port: PortOpt = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="config file (default: the demo config in the package)")
    ] = None,
    upstream: Annotated[
        str | None, typer.Option(help="use this running fake upstream instead of starting one (benchmarks)")
    ] = None,
    workers: Annotated[int, typer.Option(help="worker processes (needs --upstream when more than 1)")] = 1,
) -> None:
    """Run Sluice in front of a local fake upstream: no keys, no network, nothing written to this folder.

    Its database and audit spool live in a temporary folder (printed, removed at exit) unless
    SLUICE_DATABASE_URL / SLUICE_AUDIT_SPOOL name others.
    """
    if config is not None and not config.is_file():
        typer.echo(f"sluice: {config} not found", err=True)
        raise typer.Exit(2)
    if workers > 1 and not upstream:
        typer.echo(
            "sluice: --workers above 1 needs --upstream (a fake upstream in its own process)", err=True
        )
        raise typer.Exit(2)
    explicit = set(_settings().model_fields_set)
    with (
        _cleanup_on_sigterm(),
        _chosen_config(config) as path,
        state_folder() as folder,
        _fake_upstream(upstream) as fake_url,
    ):
        state = _state_settings(explicit, folder)
        settings = _settings(
            config=path,
            host=host,
            port=port,
            workers=workers,
            allow_simulate=True,
            fake_upstream_url=fake_url,
            **state,
        )
        _refuse_bad_config(settings)
        _announce(settings, fake_url, folder=folder if state else None, own_database="database_url" in state)
        _run(settings)


def _announce(settings: Settings, fake_url: str, *, folder: Path | None, own_database: bool) -> None:
    base = f"http://{settings.host}:{settings.port}/v1"
    console = Console(stderr=True, soft_wrap=True)  # copy-pastable lines, never wrapped
    console.print(f"[bold]Sluice demo[/] on {base} (fake upstream at {fake_url}); key: {DEMO_KEY}")
    say(f"config:      {settings.config}")
    say(f"database:    {settings.database_url if own_database else 'the one SLUICE_DATABASE_URL names'}")
    say(f"audit spool: {settings.audit_spool}")
    if folder is not None:
        say(f"({folder} is a temporary folder, removed when the demo stops)")
    say("")
    commands = Commands(
        base=base,
        python=sys.executable,
        sluice=sluice_command(),
        openai_installed=importlib.util.find_spec("openai") is not None,
        config=settings.config,
        database_url=settings.database_url if own_database else None,
    )
    for line in [*try_lines(commands), ""]:
        say(line)


def say(line: str) -> None:
    typer.echo(line, err=True)
