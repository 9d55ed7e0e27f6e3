"""What went wrong on the wire, as one short class an operator can act on.

What belongs here: `Cause` (name resolution, connection refused, TLS, connect timeout, read
timeout, connection reset, ...) and `classify()`, which finds it in an exception's chain. httpx
and httpcore wrap the socket's own error (`socket.gaierror`, `ConnectionRefusedError`,
`ssl.SSLError`), and litellm wraps httpx's; Sluice's transport raises httpx's types with the
socket error as context. Only types and well-known OS wordings are looked at: never a message
that could carry a URL with a key in its query, a prompt or an upstream's answer.
"""

from __future__ import annotations

import socket
import ssl
from enum import StrEnum

import httpx


class Cause(StrEnum):
    NAME_RESOLUTION = "name resolution failed"
    REFUSED = "connection refused"
    TLS = "TLS handshake failed"
    CONNECT_TIMEOUT = "connect timeout"
    POOL_TIMEOUT = "no free connection in time"
    READ_TIMEOUT = "read timeout"
    RESET = "connection reset"
    UNREACHABLE = "network unreachable"
    CONNECT = "connection failed"
    PROTOCOL = "unreadable answer"


# The OS's own wording, for errors that reach us as text only (httpcore re-raises some as strings).
_WORDINGS = (
    ("name or service not known", Cause.NAME_RESOLUTION),
    ("nodename nor servname", Cause.NAME_RESOLUTION),
    ("temporary failure in name resolution", Cause.NAME_RESOLUTION),
    ("getaddrinfo failed", Cause.NAME_RESOLUTION),
    ("connection refused", Cause.REFUSED),
    ("certificate verify failed", Cause.TLS),
    ("ssl", Cause.TLS),
    ("connection reset", Cause.RESET),
    ("network is unreachable", Cause.UNREACHABLE),
    ("no route to host", Cause.UNREACHABLE),
)


def _by_type(exc: BaseException) -> Cause | None:
    # Order matters: gaierror and SSLError are OSErrors, ConnectTimeout is a TimeoutException.
    if isinstance(exc, socket.gaierror):
        return Cause.NAME_RESOLUTION
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Cause.TLS
    if isinstance(exc, ConnectionRefusedError):
        return Cause.REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return Cause.RESET
    if isinstance(exc, httpx.ConnectTimeout):
        return Cause.CONNECT_TIMEOUT
    if isinstance(exc, httpx.PoolTimeout):
        return Cause.POOL_TIMEOUT
    if isinstance(exc, httpx.TimeoutException):
        return Cause.READ_TIMEOUT
    return None


def _by_wording(exc: BaseException) -> Cause | None:
    if not isinstance(exc, OSError | httpx.TransportError):
        return None
    text = str(exc).lower()
    return next((cause for words, cause in _WORDINGS if words in text), None)


def classify(exc: BaseException, default: Cause) -> Cause:
    """The most specific cause in `exc`'s chain (its `__cause__`/`__context__`), else `default`."""
    seen: set[int] = set()
    found: Cause | None = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        specific = _by_type(current)
        if specific is not None and specific not in (Cause.CONNECT_TIMEOUT, Cause.READ_TIMEOUT):
            return specific  # the socket's own error: as specific as it gets
        found = found or specific or _by_wording(current)
        current = current.__cause__ or current.__context__
    return found or default
