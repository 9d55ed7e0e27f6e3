"""CLI commands agree about the config and the database: `--config` and `--database-url` on every
command that reads them, over `SLUICE_CONFIG` and `SLUICE_DATABASE_URL`, in-process (CliRunner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.main import app
from gateway.demo import demo_config

ROOT = Path(__file__).resolve().parents[2]
REAL_CONFIG = ROOT / "config" / "sluice.yaml"  # has no deepseek-chat


def sluice(*args: str, **env: str) -> Result:
    return CliRunner().invoke(
        app, list(args), env={"SLUICE_CONFIG": None, "SLUICE_DATABASE_URL": None, **env}
    )


def url(tmp_path: Path, name: str = "sluice.db") -> str:
    return f"sqlite+aiosqlite:///{tmp_path / name}"


def test_keys_create_checks_models_against_the_config_named_by_config(tmp_path: Path) -> None:
    with demo_config() as demo:
        created = sluice(
            "keys", "create", "--config", str(demo), "--database-url", url(tmp_path),
            "--name", "mine", "--models", "deepseek-chat",
            SLUICE_CONFIG=str(REAL_CONFIG),
        )  # fmt: skip
        assert created.exit_code == 0, created.output
        assert created.stdout.strip().startswith("sk-sluice-")
        refused = sluice(
            "keys", "create", "--config", str(demo), "--database-url", url(tmp_path),
            "--name", "other", "--models", "gpt-4o",
        )  # fmt: skip
    assert refused.exit_code == 2 and "gpt-4o" in refused.stderr, refused.output


def test_keys_create_reads_sluice_config_without_the_option(tmp_path: Path) -> None:
    with demo_config() as demo:
        accepted = sluice(
            "keys", "create", "--database-url", url(tmp_path), "--name", "mine", "--models", "deepseek-chat",
            SLUICE_CONFIG=str(demo),
        )  # fmt: skip
    assert accepted.exit_code == 0, accepted.output
    refused = sluice(
        "keys", "create", "--database-url", url(tmp_path), "--name", "other", "--models", "deepseek-chat",
        SLUICE_CONFIG=str(REAL_CONFIG),
    )  # fmt: skip
    assert refused.exit_code == 2 and "deepseek-chat" in refused.stderr, refused.output


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["db", "check"],
        ["keys", "list", "--json"],
        ["keys", "revoke", "mine"],
        ["audit", "tail", "--json"],
        ["audit", "report", "--json"],
        ["audit", "verify", "--json"],
    ],
)
def test_database_commands_take_database_url_over_the_environment(tmp_path: Path, command: list[str]) -> None:
    """SLUICE_DATABASE_URL names a folder that does not exist: only --database-url can work."""
    chosen = url(tmp_path)
    prepared = sluice(
        "keys", "create", "--config", str(REAL_CONFIG), "--database-url", chosen, "--name", "mine"
    )
    assert prepared.exit_code == 0, prepared.output
    run = sluice(*command, "--database-url", chosen, SLUICE_DATABASE_URL=url(tmp_path / "missing"))
    assert run.exit_code == 0, run.output
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", [["serve"], ["demo"], ["check"], ["keys", "create"]])
def test_every_command_that_reads_the_config_takes_config(command: list[str]) -> None:
    assert "--config" in sluice(*command, "--help").stdout
