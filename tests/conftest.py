"""Shared test fixtures: the fake upstream, settings on the demo config, and an app client.

Tests reach the gateway through `create_app(settings)` and real HTTP (httpx's ASGI transport or a
real process); fakes sit only at the seams (the fake upstream server, respx).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.audit import MemoryAuditSink
from gateway.settings import Settings
from gateway.testing.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "config" / "demo.yaml"
DEMO_KEY = "sk-sluice-demo"
LEGAL_KEY = "sk-sluice-demo-legal"
AUTH = {"authorization": f"Bearer {DEMO_KEY}"}


def require_service(reason: str) -> None:
    """Skip when a service (PostgreSQL, Redis) is missing, unless CI says it must be there."""
    if os.environ.get("SLUICE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def chat_body(model: str = "gpt-4o-mini", content: str = "Hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def demo_settings(fake: FakeUpstream, tmp_path: Path) -> Settings:
    return Settings(
        config=DEMO_CONFIG,
        allow_simulate=True,
        fake_upstream_url=fake.url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
        audit_spool=tmp_path / "audit.spool",
    )


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


AppClient = Callable[..., Any]


@pytest.fixture
async def client(demo_settings: Settings, audit: MemoryAuditSink) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a demo app (lifespan run) in front of the fake upstream."""
    app = create_app(demo_settings, audit=audit)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test") as http:
            yield http
