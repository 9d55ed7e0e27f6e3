"""`sensitive:` in the config: its schema (extra="forbid") and the start-up check, one line per problem."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from gateway.core.sensitive.detectors import DetectorId
from tests.gateway.support import build_app, key_hash

KEY = f'keys:\n  - {{name: team, key_hash: "{key_hash("sk-sensitive-config")}"}}\n'
BASE = """
models:
  - name: m
    deployments:
      - {provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: CFG_SENSITIVE_KEY}
"""


def problems(sensitive: str, keys: str = KEY) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        build_app(BASE + sensitive + "\n" + keys)
    return str(raised.value).splitlines()


@pytest.mark.parametrize(
    ("sensitive", "expected"),
    [
        ("sensitive: {rules: [{detectors: [secrets], require: [zero-retentoin]}]}", "zero-retentoin"),
        ("sensitive: {rules: [{detectors: [custom], require: [zero-retention]}]}", "detector custom needs"),
        (
            "sensitive: {rules: [{detectors: [custom], require: [zero-retention]}],"
            " custom: {patterns: ['(a+)+b']}}",
            "sensitive.custom.patterns[0]: a repeat inside a repeat",
        ),
        ("sensitive: {custom: {patterns: ['[A-Z]+-[0-9]+']}}", "sensitive.custom.patterns[0]: unbounded"),
        ("sensitive: {custom: {patterns: ['(x']}}", "not a valid regular expression"),
    ],
    ids=["unknown-policy", "custom-without-patterns", "nested-repeat", "unbounded", "invalid"],
)
def test_startup_refuses(sensitive: str, expected: str) -> None:
    lines = problems(sensitive)
    assert len([line for line in lines if expected in line]) == 1, lines


def test_a_keys_rule_is_checked_too() -> None:
    keys = (
        f'keys:\n  - {{name: team, key_hash: "{key_hash("sk-sensitive-config")}", '
        "sensitive: [{detectors: [pii], require: [bogus]}]}\n"
    )
    lines = problems("", keys)
    assert any(line.startswith("keys.team.sensitive[0].require") and "bogus" in line for line in lines), lines


@pytest.mark.parametrize(
    "sensitive",
    [
        "sensitive: {rules: [{detectors: [secrets], require: [zero-retention], remove: [x]}]}",
        "sensitive: {loosen: true}",
        "sensitive: {custom: {regex: [x]}}",
        "sensitive: {rules: [{detectors: [passwords], require: [zero-retention]}]}",
        "sensitive: {mode: dry-run}",
        "sensitive: {rules: [{detectors: [], require: [zero-retention]}]}",
        "sensitive: {rules: [{detectors: [secrets], require: []}]}",
    ],
    ids=["rule-field", "section-field", "custom-field", "detector", "mode", "no-detector", "no-policy"],
)
def test_schema_refuses(sensitive: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(BASE + sensitive + "\n" + KEY, origin="test.yaml")


def test_a_good_section_builds_its_rules() -> None:
    config = parse_config(
        BASE
        + "sensitive:\n  mode: report\n"
        + "  rules: [{detectors: [secrets], require: zero-retention, mode: enforce}, "
        + "{detectors: [pii, custom], require: [self-hosted-only]}]\n"
        + "  custom: {keywords: [bluebird]}\n"
        + KEY.replace("}\n", ", sensitive: [{detectors: [pii], require: [zero-retention]}]}\n"),
        origin="test.yaml",
    )
    tightening = config.tightening()
    assert [(sorted(r.detectors), r.require, r.enforce) for r in tightening.rules] == [
        ([DetectorId.SECRETS], ("zero-retention",), True),
        ([DetectorId.CUSTOM, DetectorId.PII], ("self-hosted-only",), False),  # the section's mode
    ]
    assert set(tightening.per_key) == {"team"}
    assert DetectorId.CUSTOM in tightening.detectors
