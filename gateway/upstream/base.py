"""The one adapter interface every upstream implements, and the errors adapters raise.

What belongs here: `Adapter` (chat, chat_stream, embeddings), `UpstreamTarget` (where and with
which credentials, from config only), `ChatStream` (headers and the first chunk arrive before
the client sees a byte, so failover can still happen), and the upstream error hierarchy:

    UpstreamError                   the upstream failed; `retryable` says if failover may happen
     ├── UpstreamConnectError       could not connect: the provider cannot have started work (retryable)
     ├── UpstreamStatusError        a non-2xx answer; retryable for 429 (not spend limits), 5xx, 529
     ├── UpstreamTimeout            no answer in time: the provider may be working, so not retried
     ├── UpstreamProtocolError      an answer that is not what the wire promises (HTML, empty, bad JSON)
     └── UpstreamStreamError        the stream broke after it started; never retried

Messages are written by Sluice, never copied from an upstream body (which may echo prompts or keys).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})


class UpstreamError(Exception):
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class UpstreamConnectError(UpstreamError):
    retryable = True


class UpstreamStatusError(UpstreamError):
    def __init__(self, status: int, *, code: str | None = None, retry_after: float | None = None) -> None:
        detail = f", code {code}" if code else ""
        super().__init__(f"upstream answered HTTP {status}{detail}", status=status, retry_after=retry_after)
        self.code = code
        spend_limit = status == 429 and code is not None and "spend" in code
        self.retryable = status in RETRYABLE_STATUS and not spend_limit


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
