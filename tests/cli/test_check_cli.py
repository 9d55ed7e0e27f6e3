"""`sluice check`: a demo config is checked (and said to be one), every problem of a file comes in
one run (YAML syntax with line and column; schema errors together with the cross-check of the
rest), misspelled ids get the closest known ones, and the table fits a 100-column pipe.

In-process with Typer's CliRunner, whose output is not a terminal (as when piped).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.main import app
from tests.conftest import DEMO_CONFIG


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SLUICE_CONFIG", "SLUICE_MASTER_KEY", "COLUMNS", "CHECK_OPENAI_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLUICE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}")


def check(tmp_path: Path, text: str) -> Result:
    path = tmp_path / "sluice.yaml"
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(app, ["check", "--config", str(path)], env={"NO_COLOR": "1"})


def problems(result: Result) -> list[str]:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert all(line.startswith("sluice: ") for line in lines), lines
    return lines


OPENAI = "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: CHECK_OPENAI_KEY}"


def test_the_demo_config_is_checked_and_said_to_be_a_demo() -> None:
    result = CliRunner().invoke(app, ["check", "--config", str(DEMO_CONFIG)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "simulate is for" not in result.output
    assert "a demo config:" in result.stdout
    assert "simulated deployment(s)" in result.stdout
    assert f"sluice demo --config {DEMO_CONFIG}" in result.stdout
    assert "0 deployment(s) unavailable" in result.stdout  # simulated ones are not "unavailable"


def test_simulate_outside_a_demo_config_is_still_refused(tmp_path: Path) -> None:
    text = "models:\n  - name: m\n    deployments:\n"
    text += "      - {provider: openai, channel: openai.api, model: openai/gpt-4o-mini, simulate: true}\n"
    [line] = problems(check(tmp_path, text))
    assert "simulate is for `sluice demo` only (a demo config says `demo: true`)" in line


def test_every_problem_comes_in_one_run(tmp_path: Path) -> None:
    text = f"""
server: {{default_policy: [no-training-only, zero-retentio]}}
models:
  - name: a
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, timeout: -1}}
      - {{provider: openai, channel: openai.chatgpt, model: openai/gpt-4o-mini, api_kye_env: X}}
  - name: b
    deployments:
      - {{provider: openai, channel: openai.apii, model: openai/gpt-4o-mini}}
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o, api_base: "https://evil.example.com/v1"}}
    reroute_to: [nowhere]
  - name: c
    deployments: [{OPENAI}]
keys:
  - {{name: k, key_hash: "sha256:short", policy: [bogus]}}
"""
    lines = problems(check(tmp_path, text))
    expected = [
        # schema errors, each with its place as `check` spells places
        "models.a.deployments[0].timeout: Input should be greater than 0",
        "models.a.deployments[1].api_kye_env: Extra inputs are not permitted",
        "keys.k.key_hash: String should match pattern",
        # and, in the same run, the cross-check of everything else
        "server.default_policy: unknown policy 'zero-retentio'; did you mean zero-retention?",
        "models.a.deployments[1]: openai.chatgpt is a consumer channel",
        "models.b.deployments[0]: unknown channel 'openai.apii'; did you mean openai.api",
        "models.b.deployments[1]: api_base host evil.example.com is not an official host of OpenAI API",
        "models.b.reroute_to: no other model named 'nowhere'",
        "keys.k.policy: unknown policy 'bogus'",
    ]
    for part in expected:
        assert sum(part in line for line in lines) == 1, (part, lines)
    assert len(lines) == len(expected), lines
    assert all(line.startswith(f"sluice: {tmp_path / 'sluice.yaml'}: ") for line in lines)


def test_a_yaml_syntax_error_has_its_line_and_column(tmp_path: Path) -> None:
    text = "models:\n  - name: a\n    deployments:\n"
    text += "      - {provider: openai, channel: openai.api\n  - name: b\n"  # the } is missing
    [line] = problems(check(tmp_path, text))
    assert line.startswith(f"sluice: {tmp_path / 'sluice.yaml'}:5:9: not valid YAML: ")
    assert "while parsing a flow mapping at line 4, column 9" in line


def test_a_tab_is_reported_where_it_is(tmp_path: Path) -> None:
    [line] = problems(check(tmp_path, "server:\n\tdefault_policy: no-training-only\nmodels: []\n"))
    assert ":2:1: not valid YAML: " in line
    assert "tab" in line


@pytest.mark.parametrize(
    ("provider", "channel", "suggested"),
    [
        ("google", "gemini_api_paid", "google.gemini_api_paid"),  # the provider prefix forgotten
        ("google", "google.gemini_paid", "google.gemini_api_paid"),
        ("openai", "api", "openai.api"),
        ("anthropic", "anthropic.apis", "anthropic.api"),
    ],
)
def test_an_unknown_channel_suggests_the_closest_ids(
    tmp_path: Path, provider: str, channel: str, suggested: str
) -> None:
    text = f"models:\n  - name: m\n    deployments:\n      - {{provider: {provider}, channel: {channel}, "
    text += "model: openai/gpt-4o-mini}\n"
    lines = problems(check(tmp_path, text))
    [line] = [line for line in lines if "unknown channel" in line]
    assert f"did you mean {suggested}" in line


def test_an_unknown_channel_with_nothing_close_suggests_nothing(tmp_path: Path) -> None:
    text = "models:\n  - name: m\n    deployments:\n"
    text += "      - {provider: openai, channel: zzzzzz, model: openai/gpt-4o-mini}\n"
    [line] = problems(check(tmp_path, text))
    assert "unknown channel 'zzzzzz' (see `sluice catalog`)" in line


def test_the_table_fits_a_pipe(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", "--config", str(DEMO_CONFIG)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith(("│", "┃", "┏", "└"))]
    assert table and max(len(line) for line in table) <= 100
