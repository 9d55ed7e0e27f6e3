"""gateway/settings.py: an empty variable means unset, for every `SLUICE_*` setting and for the
variables the config names (`api_key_env`, `key_hash_env`).

`config/.env.example` has empty lines (`SLUICE_MASTER_KEY=`, `OPENAI_API_KEY=`) for the operator to
fill in; once exported (`set -a; . ./.env`) they must read as "not set", never as a value.
"""

from __future__ import annotations

import pytest

from gateway.settings import Settings
from tests.gateway.support import build_app, key_hash

SETTING_NAMES = sorted(Settings.model_fields)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_NAMES:
        monkeypatch.delenv(f"SLUICE_{name.upper()}", raising=False)


@pytest.mark.parametrize("name", SETTING_NAMES)
def test_an_empty_setting_is_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"SLUICE_{name.upper()}", "")
    assert getattr(Settings(), name) == Settings.model_fields[name].get_default(call_default_factory=True)


def test_every_setting_empty_at_once_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_NAMES:
        monkeypatch.setenv(f"SLUICE_{name.upper()}", "")
    settings = Settings()
    assert settings.master_key is None
    assert settings.model_dump() == Settings.model_construct().model_dump()


def test_a_set_master_key_is_still_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_MASTER_KEY", "short")
    with pytest.raises(ValueError, match="placeholder or shorter than 16 characters"):
        Settings()


CLIENT_KEY = "sk-client-settings-7Qw2"
REFERENCES = f"""
models:
  - name: m
    deployments:
      - {{provider: openai, channel: openai.api, model: openai/gpt-4o-mini, api_key_env: SETTINGS_EMPTY_KEY}}
keys:
  - {{name: from-env, key_hash_env: SETTINGS_EMPTY_HASH}}
  - {{name: inline, key_hash: "{key_hash(CLIENT_KEY)}"}}
"""


def test_empty_config_references_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTINGS_EMPTY_KEY", "")
    monkeypatch.setenv("SETTINGS_EMPTY_HASH", "")
    settings = Settings()
    assert settings.read_secret("SETTINGS_EMPTY_KEY") is None
    app = build_app(REFERENCES, settings=settings)
    warnings = app.state.sluice.warnings
    # An empty provider key: the deployment is unavailable (never called with an empty key).
    assert any("SETTINGS_EMPTY_KEY is not set" in line and "unavailable" in line for line in warnings)
    # An empty key-hash variable: that key is disabled, not "must hold 'sha256:<hex>'".
    assert any("SETTINGS_EMPTY_HASH is not set; key disabled" in line for line in warnings)
    assert not any("must hold" in line for line in warnings)
