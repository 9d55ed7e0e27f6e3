"""The one adapter interface every upstream implements, and the errors adapters raise.

What belongs here: `Adapter` (chat, chat_stream, embeddings, responses, responses_stream),
`UpstreamTarget` (where and with which credentials, from config only), `ChatStream` (headers and
the first chunk arrive before the client sees a byte, so failover can still happen), and the
upstream error hierarchy:

    UpstreamError                   the upstream failed; `retryable` says if failover may happen,
     │                              `client_fault` if the request itself was the problem
     ├── UpstreamRequestRejected    the translation refused the request before any upstream call
     │                              (an input it cannot carry): the client's fault
     ├── UpstreamConnectError       could not connect: the provider cannot have started work (retryable)
     ├── UpstreamStatusError        a non-2xx answer; retryable only for 429 (not quota or spend
     │                              limits), 503 and 529: the provider refused before starting work;
     │                              the client's fault for 400, 404, 409, 413 and 422
     ├── UpstreamTimeout            no answer in time: the provider may be working, so not retried
     ├── UpstreamProtocolError      an answer that is not what the wire promises (HTML, empty, bad JSON)
     └── UpstreamStreamError        the stream broke after it started; never retried

A client's fault is answered 400 and never counts against the deployment (breaker, holds, retry
budget: DESIGN.md invariant 6); everything else is the provider's and counts as before.

Messages are written by Sluice, never copied from an upstream body (which may echo prompts or keys);
an upstream's error code passes only through the fixed vocabulary of `gateway/upstream/error_codes.py`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from gateway.upstream.error_codes import known_code

# Answers that say the provider did not start the work: rate limited, unavailable, overloaded
# (Anthropic's 529). A 500, 502 or 504 may come after the model began (and billed) the call, and a
# timeout may still be running upstream, so neither is sent again anywhere.
RETRYABLE_STATUS = frozenset({429, 503, 529})
# A 429 that waiting will not clear: the account is out of credit or over its spend limit
# (OpenAI's `insufficient_quota`, Anthropic's spend-limit errors).
QUOTA_MARKERS = ("quota", "spend", "billing", "credit")
# Answers that say the request itself is invalid (malformed, unknown model or resource, too large,
# refused content): sending it again, here or elsewhere, fails the same way, and the provider is up.
CLIENT_ERROR_STATUS = frozenset({400, 404, 409, 413, 422})


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
    client_fault = False

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


class UpstreamRequestRejected(UpstreamError):
    """The request cannot be carried to this deployment as it is (the translation refused it before
    any upstream call). `message` is Sluice's own and names no content."""

    client_fault = True


class UpstreamStatusError(UpstreamError):
    def __init__(self, status: int, *, code: str | None = None, retry_after: float | None = None) -> None:
        # The quota markers are read from the raw code (a yes/no, nothing of it is kept); what is kept
        # and shown is only a code from the fixed vocabulary, or `other`.
        self.quota = status == 429 and code is not None and any(m in code.lower() for m in QUOTA_MARKERS)
        self.code = known_code(code)
        detail = f", code {self.code}" if self.code else ""
        super().__init__(
            f"upstream answered HTTP {status}{detail}",
            status=status,
            retry_after=retry_after,
            cause=f"HTTP {status}{detail}",
        )
        self.retryable = status in RETRYABLE_STATUS and not self.quota
        self.client_fault = status in CLIENT_ERROR_STATUS


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

    async def responses(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        """A non-stream OpenAI Responses call, as a Responses `response` object."""

    async def responses_stream(self, target: UpstreamTarget, body: dict[str, Any]) -> ChatStream:
        """Open a Responses stream and read its first event (`response.created`); the rest are
        relayed as named events (`sse.typed`)."""

    async def aclose(self) -> None: ...
