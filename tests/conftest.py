"""Shared test fixtures: the fake upstream, settings on the demo config, and an app client.

Tests reach the gateway through `create_app(settings)` and real HTTP (httpx's ASGI transport or a
real process); fakes sit only at the seams (the fake upstream server, respx).

Every test runs under `loopback_only`: a DNS lookup or a connect to anything other than 127.0.0.1,
::1 or localhost fails at the socket layer, so no test can reach the internet, whatever it calls.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sluice_fakes.fake_upstream import FakeUpstream

from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "config" / "demo.yaml"
DEMO_KEY = "sk-sluice-demo"
LEGAL_KEY = "sk-sluice-demo-legal"
AUTH = {"authorization": f"Bearer {DEMO_KEY}"}


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _host_of(address: Any) -> str | None:
    if isinstance(address, tuple) and address:
        host = address[0]
        return host.decode() if isinstance(host, bytes) else str(host)
    return None  # a Unix socket path


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK_NAMES:
            raise OSError(f"test guard: DNS lookup of {name!r} refused (loopback only)")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(address: Any) -> None:
        host = _host_of(address)
        if host is not None and host not in LOOPBACK_NAMES:
            raise OSError(f"test guard: connection to {host!r} refused (loopback only)")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield


def require_service(reason: str) -> None:
    """Skip when a service (PostgreSQL) is missing, unless CI says it must be there."""
    if os.environ.get("SLUICE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def checkouts() -> list[Path]:
    """The repository root; when this is a `git worktree`, the main checkout it belongs to; when it
    is a clone of a local checkout (`git clone /work/main /tmp/fresh`), that checkout."""
    roots = [ROOT]
    common = _git("rev-parse", "--path-format=absolute", "--git-common-dir")
    if common is not None:
        roots.append(Path(common).parent)
    origin = _git("remote", "get-url", "origin")
    if origin is not None and Path(origin).is_absolute():
        roots.append(Path(origin))
    return list(dict.fromkeys(roots))


def shared_design() -> Path:
    """`../shared/DESIGN.md` beside the repository root (the contract the code is built to). Missing,
    it fails the test in CI (`SLUICE_TEST_REQUIRE_SERVICES=1`) and skips it elsewhere."""
    candidates = [root.parent / "shared" / "DESIGN.md" for root in checkouts()]
    for design in candidates:
        if design.is_file():
            return design
    require_service(f"DESIGN.md not found at {', '.join(map(str, candidates))}")
    raise AssertionError("unreachable: require_service fails or skips")


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
