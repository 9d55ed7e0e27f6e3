"""Settings from the environment (prefix `SLUICE_`), and the one place that reads it.

What belongs here: the `Settings` model, its sources and validators, and `read_secret()`, the
only way the rest of Sluice looks up an environment variable (deployment keys, key hashes).
Source order (highest first): explicit init arguments, environment variables, defaults. No `.env`
file is read here: the shell (`set -a; . ./.env`) or Docker Compose's `env_file` exports it.
An empty variable means unset, for settings and for `read_secret()` alike: the example `.env` has
empty lines (`SLUICE_MASTER_KEY=`) for the operator to fill in, and they must not count as values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "sk-...", "master", "sk-master"}


class Settings(BaseSettings):
    # hide_input_in_errors: a refused master key (too short, say) must not be echoed in the error.
    # env_ignore_empty: `SLUICE_MASTER_KEY=` (as in config/.env.example) is unset, not a short key.
    model_config = SettingsConfigDict(
        env_prefix="SLUICE_",
        extra="ignore",
        env_file=None,
        env_ignore_empty=True,
        hide_input_in_errors=True,
    )

    config: Path = Path("config/sluice.yaml")
    master_key: SecretStr | None = None
    database_url: str = "sqlite+aiosqlite:///./sluice.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = Field(default=False, description="uvicorn access log (the ledger has it all)")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_concurrency: int = Field(default=1024, ge=1, description="requests in flight per process")
    max_concurrency_per_key: int = Field(default=0, ge=0, description="per key and process; 0: no limit")
    # What the bodies of requests in flight may hold in memory, parsed (docs/reliability.md).
    max_inflight_body_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="per process, estimated, all requests together"
    )
    # Slowloris: uvicorn itself waits for a request forever (gateway/server/uvicorn_deadlines.py).
    header_timeout: float = Field(default=10.0, gt=0, description="request line and headers, in all")
    body_timeout: float = Field(default=30.0, gt=0, description="the whole request body, after its headers")
    # A client that stops reading a response (gateway/server/uvicorn_deadlines.py): its connection is aborted.
    client_write_timeout: float = Field(
        default=60.0, gt=0, description="longest a response may wait on a full send buffer"
    )
    connect_timeout: float = Field(default=5.0, gt=0)
    # The pass-through's connections to one upstream host (gateway/upstream/transport.py).
    upstream_max_connections_per_host: int = Field(
        default=1024, ge=1, description="open connections to one upstream host, busy and idle"
    )
    read_timeout: float = Field(default=120.0, gt=0, description="whole non-stream call / first stream byte")
    stream_idle_timeout: float = Field(default=60.0, gt=0, description="longest gap between stream chunks")
    breaker_failures: int = Field(default=5, ge=1, description="provider failures in a row to open")
    breaker_cooldown: float = Field(default=30.0, gt=0, description="first open period, doubling to 300 s")
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1, description="retries per request, 10 s window")
    # Per-key limits (DESIGN.md "Several replicas"): the default for keys that set none; 0: no limit.
    key_rpm: int = Field(default=0, ge=0, description="requests per minute per key, unless the key says")
    key_tpm: int = Field(default=0, ge=0, description="tokens per minute per key, unless the key says")
    key_max_concurrency: int = Field(default=0, ge=0, description="requests in flight per key, all replicas")
    # Shared by every replica when set: limits, circuit breakers, Retry-After holds, the retry budget.
    redis_url: str | None = Field(default=None, description="redis://host:6379/0; unset: per process")
    redis_prefix: str = Field(default="sluice", pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")
    redis_timeout: float = Field(default=0.1, gt=0, le=5, description="longest wait for Redis per call")
    limit_lease_seconds: float = Field(
        default=600.0, gt=0, description="a concurrency slot left by a vanished process frees after this"
    )
    metrics_public: bool = Field(default=False, description="GET /metrics without the master key")
    # The transparency pages (gateway/api/pages.py): GET /, /catalog and /admin/report; `off` removes them.
    pages: bool = Field(default=True, description="serve the transparency pages (SLUICE_PAGES=off: not)")
    pages_session_hours: float = Field(
        default=8.0, gt=0, le=168, description="how long a browser sign-in to /admin/report lasts"
    )
    allow_simulate: bool = Field(default=False, description="set by `sluice demo` only")
    fake_upstream_url: str | None = Field(default=None, description="where simulated deployments go (demo)")
    # How translated deployments are called (gateway/upstream/litellm_transform.py): `auto` drives
    # litellm's provider transformations over Sluice's transport where they are usable (Anthropic,
    # Gemini, Vertex Gemini, Mistral, Cohere) and `litellm.acompletion` elsewhere; `litellm` sends
    # every translated call through `litellm.acompletion` (the slower path, kept as a switch back).
    translation: Literal["auto", "litellm"] = Field(
        default="auto", description="auto: transformations on Sluice's transport; litellm: acompletion"
    )
    audit_spool: Path = Path("sluice-audit.spool")
    # Database keys are cached (gateway/storage/key_cache.py); these bound it when changes may be missed.
    key_cache_fallback_ttl: float = Field(
        default=5.0, ge=0, description="seconds a cached key is trusted while LISTEN is down (0: no cache)"
    )
    unknown_key_lookups_per_second: float = Field(
        default=20.0, ge=1, description="database lookups for unknown keys, per second and process"
    )
    env_file: Path | None = None

    @field_validator("master_key")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value()
        if raw.lower() in PLACEHOLDER_SECRETS or len(raw) < 16:
            raise ValueError("SLUICE_MASTER_KEY is a placeholder or shorter than 16 characters")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings)

    @staticmethod
    def read_secret(name: str) -> str | None:
        """The value of environment variable `name` (deployment keys, key hashes), or None if unset/empty.
        Static: `sluice init` asks which provider keys are set without building settings."""
        value = os.environ.get(name)
        return value or None


def export_env(**values: str) -> None:
    """Hand settings to uvicorn's workers, which build their own `Settings()` from the environment."""
    for name, value in values.items():
        os.environ[f"SLUICE_{name.upper()}"] = value
