"""`sluice init`: a starter config for the provider keys set in the environment, that `sluice check`
accepts as written.

In-process (Typer's CliRunner, with the environment it is given); the written file is then loaded,
checked and judged by the gateway's own code, and `sluice check` is run on it. Which channel each
provider gets is tested in tests/gateway/test_starter.py, on a fixed date.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.main import app
from gateway.cli.starter import OFFERS
from gateway.config import check, load_config
from gateway.core.deployments import build_deployments
from gateway.core.routing import PolicyRouter
from gateway.settings import Settings
from policies.catalog import load_catalog
from policies.policy import resolve

OPENAI_KEY = "sk-init-openai-4Fz8"
ANTHROPIC_KEY = "sk-ant-init-9Qp2"


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider key and no SLUICE_* setting from the shell; a test sets the keys it wants."""
    for name in [offer.env for offer in OFFERS] + ["SLUICE_MASTER_KEY", "SLUICE_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def active_models(path: Path) -> dict[str, list[str]]:
    """alias -> the channels of its deployments, as the gateway loads the file."""
    config = load_config(path)
    assert check(config, load_catalog()) == []
    return {m.name: [d.channel for d in m.deployments] for m in config.models}


def test_two_provider_keys_give_a_config_that_checks_and_complies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "config" / "sluice.yaml"
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    result = run("init", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out} for OPENAI_API_KEY, ANTHROPIC_API_KEY" in result.stdout
    text = out.read_text()
    assert OPENAI_KEY not in text and ANTHROPIC_KEY not in text, "keys stay in the environment"
    assert active_models(out) == {
        "gpt-4o-mini": ["openai.api"],
        "text-embedding-3-small": ["openai.api"],
        "claude-sonnet": ["anthropic.api"],
    }
    # Every deployment is available with these keys and complies with the file's default policy.
    config = load_config(out)
    catalog = load_catalog()
    deployments = build_deployments(config, catalog, Settings(config=out), date.today())
    router = PolicyRouter(config, deployments)
    policy = resolve(config.server.default_policy, config.policy_table())
    for dep in router.all_deployments():
        assert dep.available, dep.id
        assert router.judge(policy, dep)[0].allowed, dep.id
    # The comments say why, and show what was left out.
    assert "# openai.api complies with no-training-only: OpenAI API: not used for training" in text
    assert "  # - name: llama-local" in text, "the self-hosted example, commented out"
    assert "GEMINI_API_KEY: google.gemini_api_paid complies once you attest paid_tier" in text
    checked = run("check", "--config", str(out))
    assert checked.exit_code == 0, checked.output
    assert "0 deployment(s) unavailable" in checked.stdout


def test_without_keys_it_writes_a_commented_file_and_says_what_to_set(tmp_path: Path) -> None:
    out = tmp_path / "sluice.yaml"
    result = run("init", "--config", str(out))
    assert result.exit_code == 0, result.output
    assert "no provider key is set in this environment" in result.stdout
    assert "OPENAI_API_KEY" in result.stdout and "ANTHROPIC_API_KEY" in result.stdout
    text = out.read_text()
    # The one model a config needs is the self-hosted example; every provider is listed to choose from.
    assert active_models(out) == {"llama-local": ["self_hosted.ollama"]}
    for offer in OFFERS:
        assert f"#   {offer.env}: {offer.provider}." in text, offer.env
    assert "host.docker.internal" in text
    checked = run("check", "--config", str(out))
    assert checked.exit_code == 0, checked.output


def test_an_existing_file_is_kept_without_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sluice.yaml"
    out.write_text("# mine\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    refused = run("init", "-o", str(out))
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        f"sluice: {out} exists; pass --force to overwrite it, or --output another path"
    )
    assert out.read_text() == "# mine\n"
    forced = run("init", "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert active_models(out) == {"claude-sonnet": ["anthropic.api"]}


@pytest.mark.parametrize("bad", ["no-such-policy", "no-training-only,nope"])
def test_an_unknown_policy_is_refused(tmp_path: Path, bad: str) -> None:
    result = run("init", "-o", str(tmp_path / "x.yaml"), "--policy", bad)
    assert result.exit_code == 2
    assert "unknown policy" in result.stderr
    assert not (tmp_path / "x.yaml").exists()
