"""The one adapter interface every upstream implements, and the errors adapters raise.

What belongs here: `Adapter` (chat, chat_stream, embeddings), `UpstreamTarget` (where and with
which credentials, from config only), `ChatStream` (headers and the first chunk arrive before
the client sees a byte, so failover can still happen), and the upstream error hierarchy:

    UpstreamError                   the upstream failed; `retryable` says if failover may happen
     ├── UpstreamConnectError       could not connect: the provider cannot have started work (retryable)
     ├── UpstreamStatusError        a non-2xx answer; retryable only for 429 (not quota or spend
     │                              limits), 503 and 529: the provider refused before starting work
     ├── UpstreamTimeout            no answer in time: the provider may be working, so not retried
     ├── UpstreamProtocolError      an answer that is not what the wire promises (HTML, empty, bad JSON)
     └── UpstreamStreamError        the stream broke after it started; never retried

Messages are written by Sluice, never copied from an upstream body (which may echo prompts or keys).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

# Answers that say the provider did not start the work: rate limited, unavailable, overloaded
# (Anthropic's 529). A 500, 502 or 504 may come after the model began (and billed) the call, and a
# timeout may still be running upstream, so neither is sent again anywhere.
RETRYABLE_STATUS = frozenset({429, 503, 529})
# A 429 that waiting will not clear: the account is out of credit or over its spend limit
# (OpenAI's `insufficient_quota`, Anthropic's spend-limit errors).
QUOTA_MARKERS = ("quota", "spend", "billing", "credit")


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the upstream asked us to wait: `retry-after-ms`, else `retry-after` in seconds or
    as an HTTP date; None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = float("nan")
        if value >= 0:  # NaN fails this too
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return max(0.0, when - (time.time() if now is None else now))
    return value if value >= 0 else None


class UpstreamError(Exception):
    """`cause`: what went wrong on the wire, in a few words for the log (`gateway/upstream/causes.py`,
    or the HTTP status); never text from the upstream."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.cause = cause or (f"HTTP {status}" if status is not None else None)


class UpstreamConnectError(UpstreamError):
    retryable = True


class UpstreamStatusError(UpstreamError):
    def __init__(self, status: int, *, code: str | None = None, retry_after: float | None = None) -> None:
        detail = f", code {code}" if code else ""
        super().__init__(f"upstream answered HTTP {status}{detail}", status=status, retry_after=retry_after)
        self.code = code
        self.quota = status == 429 and code is not None and any(m in code.lower() for m in QUOTA_MARKERS)
        self.retryable = status in RETRYABLE_STATUS and not self.quota


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamProtocolError(UpstreamError):
    pass


class UpstreamStreamError(UpstreamError):
    pass


@dataclass(frozen=True)
class UpstreamTarget:
    """One deployment's upstream, built from config: never from a request."""

    model: str  # the litellm-style model id, e.g. "anthropic/claude-sonnet-4-5"
    upstream_model: str  # the id the provider sees, e.g. "claude-sonnet-4-5"
    api_base: str | None
    api_key: str | None = field(default=None, repr=False)
    api_version: str | None = None
    vertex_project: str | None = None
    vertex_location: str | None = None
    aws_region_name: str | None = None
    timeout: float = 120.0
    connect_timeout: float = 5.0
    idle_timeout: float = 60.0


class ChatStream(Protocol):
    """An opened stream: `first` is the first chunk; iterating yields the rest as SSE-framed bytes."""

    first: dict[str, Any]
    usage: dict[str, Any] | None

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Adapter(Protocol):
    async def chat(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        """A non-stream chat completion, as an OpenAI response object."""

    async def chat_stream(self, target: UpstreamTarget, body: dict[str, Any]) -> ChatStream:
        """Open a stream and read its first chunk; raise UpstreamError before anything is sent."""

    async def embeddings(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI embeddings response object."""

    async def aclose(self) -> None: ...
