"""Start-up checks: a config that does not check out stops `create_app` with one clear line per problem.

Also: a deployment whose key variable is unset is unavailable (not fatal), `sluice check` lists it,
the config schema forbids unknown fields, and Settings come from `SLUICE_*` variables.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import respx
from pydantic import ValidationError
from typer.testing import CliRunner

from gateway.cli.main import app as cli
from gateway.config import ConfigError, parse_config
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings
from tests.conftest import chat_body
from tests.gateway.support import bearer, build_app, error_of, key_hash, mocked_internet, outbound, serving

CLIENT_KEY = "sk-client-config-2Mn5"
KEYS = f"""
keys:
  - {{name: team, key_hash: "{key_hash(CLIENT_KEY)}"}}
"""
GOOD_DEPLOYMENT = (
    "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: CFG_OPENAI_KEY}"
)


def config_with(deployment: str, *, extra: str = "", server: str = "") -> str:
    return f"""
{server}
models:
  - name: m
    deployments:
      - {deployment}
{extra}
{KEYS}
"""


def startup_problems(text: str, *, settings: Settings | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        build_app(text, settings=settings)
    lines = str(raised.value).splitlines()
    assert lines and all(line.strip() for line in lines)
    return lines


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CFG_OPENAI_KEY",
        "CFG_UNSET_KEY",
        "SLUICE_CONFIG",
        "SLUICE_MASTER_KEY",
        "SLUICE_MAX_BODY_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            config_with("{provider: nosuch, channel: nosuch.api, model: openai/gpt-4o-mini}"),
            ["unknown provider 'nosuch'"],
        ),
        (
            config_with("{provider: openai, channel: openai.nosuch, model: openai/gpt-4o-mini}"),
            ["unknown channel 'openai.nosuch'"],
        ),
        (
            config_with("{provider: openai, channel: openai.chatgpt, model: openai/gpt-4o-mini}"),
            ["openai.chatgpt is a consumer channel", "never routable"],
        ),
        (
            config_with(
                "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, "
                "api_base: 'https://evil.example.com/v1'}"
            ),
            ["api_base host evil.example.com is not an official host"],
        ),
        (
            config_with(
                "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, "
                "api_base: 'http://api.openai.com/v1'}"
            ),
            ["must use https"],
        ),
        (
            config_with(GOOD_DEPLOYMENT, server="server: {default_policy: no-such-policy}"),
            ["server.default_policy", "unknown policy 'no-such-policy'"],
        ),
        (
            config_with(GOOD_DEPLOYMENT).replace(
                f'key_hash: "{key_hash(CLIENT_KEY)}"}}',
                f'key_hash: "{key_hash(CLIENT_KEY)}", policy: [nope]}}',
            ),
            ["keys.team.policy", "unknown policy 'nope'"],
        ),
        (
            config_with(GOOD_DEPLOYMENT).replace(
                "    deployments:", "    reroute_to: [ghost]\n    deployments:"
            ),
            ["models.m.reroute_to", "'ghost'"],
        ),
        (
            config_with(
                GOOD_DEPLOYMENT,
                extra="attestations:\n  - {provider: google, channel: google.gemini_api_free, "
                "fact: training_opted_out, evidence: 'we asked nicely'}",
            ),
            ["attestations[0]", "no training opt-out to attest"],
        ),
        (
            config_with("{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, simulate: true}"),
            ["simulate is for `sluice demo` only"],
        ),
        (
            config_with("{provider: anthropic, channel: anthropic.api, model: openai/gpt-4o}"),
            ["model prefix 'openai' does not reach provider 'anthropic'"],
        ),
        (
            config_with("{provider: anthropic, channel: openai.api, model: anthropic/claude-sonnet-4-5}"),
            ["channel openai.api belongs to provider openai, not anthropic"],
        ),
    ],
    ids=[
        "unknown-provider",
        "unknown-channel",
        "consumer-channel",
        "api-base-off-host",
        "api-base-http",
        "unknown-server-policy",
        "unknown-key-policy",
        "reroute-to-nowhere",
        "attestation-not-applicable",
        "simulate-outside-demo",
        "prefix-reaches-other-provider",
        "channel-of-other-provider",
    ],
)
def test_startup_refuses(text: str, expected: list[str]) -> None:
    lines = startup_problems(text)
    matching = [line for line in lines if all(part in line for part in expected)]
    assert len(matching) == 1, lines


def test_every_problem_is_reported_on_its_own_line() -> None:
    text = f"""
server: {{default_policy: [no-training-only, bogus]}}
models:
  - name: a
    deployments:
      - {{provider: openai, channel: openai.chatgpt, model: openai/gpt-4o-mini}}
  - name: b
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_base: "https://evil.example.com"}}
    reroute_to: [nowhere]
{KEYS}
"""
    lines = startup_problems(text)
    assert len(lines) == 4, lines
    assert any("bogus" in line for line in lines)
    assert any("consumer channel" in line for line in lines)
    assert any("evil.example.com" in line for line in lines)
    assert any("nowhere" in line for line in lines)


def test_simulate_is_accepted_in_the_demo_only() -> None:
    """Allowed (as `sluice demo` allows it), a simulated deployment keeps its channel's facts and
    goes to the fake upstream, without a key; not allowed, it is a start-up problem (the table
    above, `simulate-outside-demo`)."""
    text = config_with("{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, simulate: true}")
    settings = Settings(allow_simulate=True, fake_upstream_url="http://127.0.0.1:9")
    app = build_app(text, settings=settings)
    [deployment] = app.state.sluice.router.all_deployments()
    assert deployment.simulated and deployment.available
    assert deployment.channel.id == "openai.api"
    assert deployment.target.api_base == "http://127.0.0.1:9/v1"
    assert "simulate is for `sluice demo` only" in "\n".join(startup_problems(text))


@pytest.mark.parametrize(
    "text",
    [
        config_with(GOOD_DEPLOYMENT) + "\nunexpected: true\n",
        config_with(GOOD_DEPLOYMENT, server="server: {default_policy: no-training-only, loosen: yes}"),
        config_with(
            "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, "
            "api_key: sk-inline-secret-123}"
        ),
        config_with("{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, callbacks: [x]}"),
        config_with(GOOD_DEPLOYMENT).replace("keys:\n  - {", "keys:\n  - {allowed_routes: ['/admin'], "),
    ],
    ids=["top-level", "server", "inline-secret", "callbacks", "key-routes"],
)
def test_config_forbids_unknown_fields(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, origin="test.yaml")
    message = str(raised.value)
    assert "Extra inputs are not permitted" in message
    assert all(line.startswith("test.yaml: ") for line in message.splitlines())
    assert "sk-inline-secret-123" not in message


# -- unavailable deployments ----------------------------------------------------------------------
UNAVAILABLE = f"""
models:
  - name: needs-key
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: CFG_UNSET_KEY}}
  - name: has-key
    deployments:
      - {GOOD_DEPLOYMENT}
{KEYS}
"""


@pytest.fixture
def no_network() -> Iterator[respx.MockRouter]:
    with mocked_internet() as mock:
        yield mock


async def test_missing_key_makes_a_deployment_unavailable_not_fatal(
    monkeypatch: pytest.MonkeyPatch, no_network: respx.MockRouter
) -> None:
    monkeypatch.setenv("CFG_OPENAI_KEY", "sk-upstream-config-Z9y8")
    app = build_app(UNAVAILABLE)
    assert any("CFG_UNSET_KEY" in line and "unavailable" in line for line in app.state.sluice.warnings)
    async with serving(app) as http:
        ready = await http.get("/readyz")
        assert ready.json()["config"]["available_deployments"] == 1
        response = await http.post(
            "/v1/chat/completions", json=chat_body("needs-key"), headers=bearer(CLIENT_KEY)
        )
        error = error_of(response, 502, "upstream_unavailable")
        assert "credentials" in error["message"]
        assert outbound(no_network) == []
        models = await http.get("/v1/models/needs-key", headers=bearer(CLIENT_KEY))
        [dep] = models.json()["privacy"]["deployments"]
        assert dep["available"] is False
        assert models.json()["privacy"]["complies"] is False


async def test_unavailable_request_is_audited_with_badges(
    monkeypatch: pytest.MonkeyPatch, no_network: respx.MockRouter
) -> None:
    monkeypatch.setenv("CFG_OPENAI_KEY", "sk-upstream-config-Z9y8")
    audit = MemoryAuditSink()
    async with serving(build_app(UNAVAILABLE, audit=audit)) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body("needs-key"), headers=bearer(CLIENT_KEY)
        )
    error_of(response, 502, "upstream_unavailable")
    assert outbound(no_network) == []
    assert response.headers.get("X-Privacy-Decision")
    assert response.headers.get("X-Privacy-Channel") == "openai.api"
    assert response.headers["X-Privacy-Decision"] == "allowed"  # the policy allowed it; no key to call it
    [event] = audit.events
    assert (event.status, event.request_id) == (502, response.headers["X-Request-Id"])
    assert (event.decision, event.channel, event.error_code) == (
        "allowed",
        "openai.api",
        "upstream_unavailable",
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluice.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sluice_check_lists_unavailable_deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_OPENAI_KEY", "sk-upstream-config-Z9y8")
    result = CliRunner().invoke(cli, ["check", "--config", str(_write(tmp_path, UNAVAILABLE))])
    assert result.exit_code == 0, result.output
    assert "1 deployment(s) unavailable" in result.stdout
    assert "CFG_UNSET_KEY" in result.stdout
    assert "needs-key" in result.stdout and "has-key" in result.stdout
    assert "sk-upstream-config-Z9y8" not in result.output


def test_sluice_check_refuses_a_bad_config(tmp_path: Path) -> None:
    text = config_with(
        "{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_base: 'https://evil.example.com/v1'}"
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(_write(tmp_path, text))])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sluice: ") and "evil.example.com" in lines[0]


# -- settings -------------------------------------------------------------------------------------
def test_settings_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLUICE_CONFIG", str(tmp_path / "from-env.yaml"))
    monkeypatch.setenv("SLUICE_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("SLUICE_PORT", "9191")
    monkeypatch.setenv("SLUICE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("SLUICE_MASTER_KEY", "a-real-master-key-0123456789")
    monkeypatch.setenv("MAX_BODY_BYTES", "999999")  # no prefix: ignored
    settings = Settings()
    assert settings.config == tmp_path / "from-env.yaml"
    assert settings.max_body_bytes == 2048
    assert settings.port == 9191
    assert settings.log_level == "DEBUG"
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == "a-real-master-key-0123456789"
    assert "a-real-master-key" not in repr(settings)
    # Explicit arguments win over the environment.
    assert Settings(max_body_bytes=4096).max_body_bytes == 4096


@pytest.mark.parametrize("value", ["changeme", "CHANGEME", "secret", "sk-master", "short-key"])
def test_placeholder_master_key_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SLUICE_MASTER_KEY", value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert value not in str(raised.value).replace("SLUICE_MASTER_KEY", "")


def test_cli_reports_a_bad_setting_in_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLUICE_MASTER_KEY", "short-key-42")
    result = CliRunner().invoke(cli, ["check", "--config", str(_write(tmp_path, UNAVAILABLE))])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sluice: invalid settings: master_key")
    assert "placeholder or shorter than 16 characters" in lines[0]
    assert "short-key-42" not in result.output


def test_invalid_settings_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_MAX_BODY_BYTES", "10")
    with pytest.raises(ValidationError):
        Settings()


def test_no_traffic_while_starting(monkeypatch: pytest.MonkeyPatch, no_network: respx.MockRouter) -> None:
    monkeypatch.setenv("CFG_OPENAI_KEY", "sk-upstream-config-Z9y8")
    build_app(UNAVAILABLE)
    assert outbound(no_network) == []


async def test_lifespan_makes_no_upstream_call(
    monkeypatch: pytest.MonkeyPatch, no_network: respx.MockRouter
) -> None:
    monkeypatch.setenv("CFG_OPENAI_KEY", "sk-upstream-config-Z9y8")
    async with serving(build_app(UNAVAILABLE)) as http:
        assert (await http.get("/healthz")).status_code == 200
    assert outbound(no_network) == []


TOOL_HOSTS = """
tool_hosts:
  - {host: mcp.internal.example, evidence: "our own server", training: never, retention_days: 0}
"""


def test_tool_hosts_carry_the_operators_facts() -> None:
    config = parse_config(config_with(GOOD_DEPLOYMENT, extra=TOOL_HOSTS), origin="test.yaml")
    [host] = config.tool_host_table().values()
    assert (host.host, host.retention_days, host.training.value, host.human_review.value) == (
        "mcp.internal.example",
        0,
        "never",
        "unknown",  # unset facts are unknown, which fails closed
    )


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        (TOOL_HOSTS + "  - {host: mcp.internal.example, evidence: again}\n", "listed twice"),
        ("tool_hosts:\n  - {host: https://mcp.example/sse, evidence: a url}\n", "tool_hosts"),
        ("tool_hosts:\n  - {host: mcp.example, evidence: x, keeps: forever}\n", "Extra inputs"),
        ("tool_hosts:\n  - {host: mcp.example}\n", "evidence"),
    ],
    ids=["duplicate", "url-not-host", "unknown-fact", "no-evidence"],
)
def test_startup_refuses_a_bad_tool_host(hosts: str, expected: str) -> None:
    lines = startup_problems(config_with(GOOD_DEPLOYMENT, extra=hosts))
    assert any(expected in line for line in lines), lines
