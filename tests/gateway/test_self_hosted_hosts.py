"""Issue 12, hole 1: a self-hosted channel runs on the operator's own host, or start-up refuses.

DESIGN.md (api-channel-only): loopback, RFC 1918 / RFC 4193 addresses (link-local excepted),
single-label or cluster-internal names, or a host the operator attests (`operator_host`); a
public provider's host is never self-hosted. `sluice check` says why, one line per problem.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app as cli
from gateway.config import check, parse_config
from policies.catalog import load_catalog


def _config(api_base: str, *, attest: str = "", channel: str = "self_hosted.openai_compatible") -> str:
    return f"""
models:
  - name: local
    deployments:
      - {{provider: self_hosted, channel: {channel}, model: hosted_vllm/llama, api_base: "{api_base}"}}
{attest}
"""


def _problems(text: str) -> list[str]:
    return check(parse_config(text), load_catalog())


@pytest.mark.parametrize(
    "api_base",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost:8000/v1",
        "http://[::1]:8000/v1",
        "http://10.0.4.2:8000/v1",
        "http://172.20.1.1/v1",
        "http://192.168.1.20:8000/v1",
        "http://[fd12:3456::1]:8000/v1",
        "http://gpu-box:8000/v1",
        "http://vllm.ml.svc.cluster.local:8000/v1",
        "http://vllm.ml.svc:8000/v1",
        "http://gpu.internal/v1",
        "http://studio.local:11434/v1",
    ],
)
def test_operator_hosts_pass(api_base: str) -> None:
    assert _problems(_config(api_base)) == []


@pytest.mark.parametrize(
    ("api_base", "why"),
    [
        ("https://api.deepseek.com/v1", "official host of deepseek.api, a public provider"),
        ("https://api.openai.com/v1", "official host of openai.api, a public provider"),
        ("https://ollama.com/v1", "official host of ollama.cloud, a public provider"),
        ("https://llm.example.com/v1", "no operator_host attestation names it"),
        ("http://8.8.8.8/v1", "no operator_host attestation names it"),
        ("http://169.254.169.254/v1", "link-local"),
        ("http://[fe80::1]/v1", "link-local"),
        ("http://100.64.1.1/v1", "no operator_host attestation names it"),
    ],
)
def test_other_hosts_fail_start_up_with_a_reason(api_base: str, why: str) -> None:
    (line,) = _problems(_config(api_base))
    assert line.startswith("models.local.deployments[0]: api_base: host ")
    assert why in line


def test_an_operator_host_attestation_admits_the_operators_own_public_name() -> None:
    attest = """attestations:
  - {provider: self_hosted, fact: operator_host, hosts: [llm.example.com], evidence: "our DC, rack 4"}
"""
    assert _problems(_config("https://llm.example.com/v1", attest=attest)) == []
    # ... and only that host.
    (line,) = _problems(_config("https://other.example.com/v1", attest=attest))
    assert "other.example.com" in line


def test_an_operator_host_attestation_never_covers_a_public_providers_host() -> None:
    attest = """attestations:
  - {provider: self_hosted, fact: operator_host, hosts: [api.deepseek.com], evidence: "claimed"}
"""
    problems = _problems(_config("https://api.deepseek.com/v1", attest=attest))
    assert any(
        p.startswith("attestations[0]: host api.deepseek.com is an official host of deepseek.api")
        for p in problems
    )
    assert any("models.local.deployments[0]" in p and "public provider" in p for p in problems)


def test_operator_host_needs_hosts_and_a_self_hosted_channel() -> None:
    no_hosts = """attestations:
  - {provider: self_hosted, fact: operator_host, evidence: "ours"}
"""
    assert any("must name the hosts" in p for p in _problems(_config("http://127.0.0.1/v1", attest=no_hosts)))
    api = """attestations:
  - {provider: openai, channel: openai.api, fact: operator_host, hosts: [x.example], evidence: "ours"}
"""
    assert any("not self-hosted" in p for p in _problems(_config("http://127.0.0.1/v1", attest=api)))


def test_sluice_check_explains_the_refusal(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(_config("https://api.deepseek.com/v1"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert (
        "api.deepseek.com is an official host of deepseek.api, a public provider: never self-hosted" in line
    )
