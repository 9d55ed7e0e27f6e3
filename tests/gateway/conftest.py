"""Fixtures shared by the gateway tests: private storage, litellm over httpx (for respx).

Like every test, these run under `loopback_only` (tests/conftest.py). respx intercepts the
upstream hosts these tests name (api.openai.com, ...); if an interception ever failed, the request
fails instead of leaving the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.support import RESPX_KEYS


@pytest.fixture(autouse=True)
def private_storage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`Settings()` built by a test points at a database and spool of its own, never ./sluice.db."""
    monkeypatch.setenv("SLUICE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}")
    monkeypatch.setenv("SLUICE_AUDIT_SPOOL", str(tmp_path / "audit.spool"))


@pytest.fixture
def respx_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The upstream keys `tests.gateway.support.DEPLOYMENTS` read, in the environment."""
    for name, value in RESPX_KEYS.items():
        monkeypatch.setenv(name, value)
    return RESPX_KEYS


@pytest.fixture
def litellm_over_httpx() -> Iterator[None]:
    """litellm on httpx for the test (respx cannot see its default aiohttp transport); restored after.

    Without this, a litellm deployment would bypass respx; `loopback_only` would then refuse the
    connection, so a forgotten fixture fails loudly instead of reaching the internet.
    """
    from gateway.upstream.litellm_adapter import load_litellm

    litellm = load_litellm()
    previous = getattr(litellm, "disable_aiohttp_transport", False)
    setattr(litellm, "disable_aiohttp_transport", True)  # noqa: B010 (not in litellm's stubs)
    try:
        yield
    finally:
        setattr(litellm, "disable_aiohttp_transport", previous)  # noqa: B010
