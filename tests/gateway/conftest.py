"""Fixtures shared by the gateway tests: a loopback-only network guard, and private storage.

Every gateway test runs under `loopback_only`: a DNS lookup or a connect to anything other than
127.0.0.1 / localhost fails at the socket layer. respx intercepts the upstream hosts these tests
name (api.openai.com, ...); if an interception ever failed, the request fails instead of leaving
the machine.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture(autouse=True)
def private_storage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`Settings()` built by a test points at a database and spool of its own, never ./sluice.db."""
    monkeypatch.setenv("SLUICE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}")
    monkeypatch.setenv("SLUICE_AUDIT_SPOOL", str(tmp_path / "audit.spool"))


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
