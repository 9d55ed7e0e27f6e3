"""`classify()`: the class of a wire failure, found in an exception chain as httpx, httpcore,
litellm and Sluice's own transport build it."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from gateway.upstream.causes import Cause, classify
from gateway.upstream.transport import FastTransport


def chained(outer: BaseException, *inner: BaseException) -> BaseException:
    """`outer` raised `from` each of `inner` in turn (outermost first), as the libraries do."""
    current = outer
    for exc in inner:
        current.__cause__ = exc
        current = exc
    return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (chained(httpx.ConnectError("x"), socket.gaierror(-2, "unknown name")), Cause.NAME_RESOLUTION),
        (chained(httpx.ConnectError("x"), ConnectionRefusedError(111, "refused")), Cause.REFUSED),
        (chained(httpx.ConnectError("x"), ssl.SSLCertVerificationError("bad cert")), Cause.TLS),
        (chained(httpx.ReadError("x"), ConnectionResetError(104, "reset by peer")), Cause.RESET),
        (httpx.ConnectTimeout("x"), Cause.CONNECT_TIMEOUT),
        (httpx.ReadTimeout("x"), Cause.READ_TIMEOUT),
        (httpx.PoolTimeout("x"), Cause.POOL_TIMEOUT),
        # litellm wraps httpx's error in its own; the socket error is still at the bottom
        (chained(RuntimeError("wrapped"), httpx.ConnectError("x"), ConnectionRefusedError()), Cause.REFUSED),
        # httpcore sometimes keeps only the OS's text
        (httpx.ConnectError("[Errno -2] Name or service not known"), Cause.NAME_RESOLUTION),
        (httpx.ConnectError("[Errno 111] Connection refused"), Cause.REFUSED),
        (httpx.ConnectError("something else"), Cause.CONNECT),
    ],
)
def test_classify_finds_the_socket_level_cause(exc: BaseException, expected: Cause) -> None:
    assert classify(exc, Cause.CONNECT) is expected


def test_classify_survives_a_cycle_in_the_chain() -> None:
    a, b = httpx.ConnectError("a"), httpx.ConnectError("b")
    a.__cause__, b.__cause__ = b, a
    assert classify(a, Cause.CONNECT) is Cause.CONNECT


async def test_sluice_transport_keeps_the_refusal_in_the_chain() -> None:
    """A closed loopback port: Sluice's own transport raises httpx.ConnectError `from None`, and the
    socket's ConnectionRefusedError stays reachable as its context."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connects are refused
        transport = FastTransport()
        try:
            with pytest.raises(httpx.ConnectError) as raised:
                await transport.handle_async_request(httpx.Request("GET", f"http://127.0.0.1:{port}/"))
        finally:
            await transport.aclose()
    assert classify(raised.value, Cause.CONNECT) is Cause.REFUSED
