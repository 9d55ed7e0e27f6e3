"""Whose fault a failure through litellm is, and which `UpstreamError` it becomes.

What belongs here: the mapping of litellm's exceptions onto Sluice's error tree
(`gateway/upstream/base.py`), decided once for every litellm provider. Each adapter call notes
whether a request reached Sluice's transport (`CURRENT_CALL`, set by `MarkSent`). A failure before
that is the translation refusing the input (an image it cannot read, a tool without a type, a
message order the provider's format cannot express): the client's fault (`UpstreamRequestRejected`,
a 400 that never counts against the deployment). After it, the transport failure in the exception
chain, or else the provider's status, decides, as for the pass-through. litellm itself is not
imported here: callers pass the loaded module (`gateway/upstream/litellm_adapter.py` is the one
module that imports it).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from types import ModuleType

import httpx

from gateway.upstream.base import (
    QUOTA_MARKERS,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRequestRejected,
    UpstreamStatusError,
    UpstreamTimeout,
    retry_after,
)
from gateway.upstream.causes import Cause, classify
from gateway.upstream.limits import AnswerRefused
from gateway.upstream.media import INLINE

NEVER_REACHED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, ConnectionRefusedError)
# What litellm's translation raises when it cannot carry an input (besides its BadRequestError and
# UnprocessableEntityError): a bare Exception with a message, or whatever a lookup on the input hit.
TRANSLATION_ERRORS = (ValueError, TypeError, KeyError, IndexError)
# litellm's exception classes as codes of the fixed vocabulary (`gateway/upstream/error_codes.py`).
LITELLM_CODES = {
    "BadRequestError": "invalid_request_error",
    "UnprocessableEntityError": "invalid_request_error",
    "ContextWindowExceededError": "context_length_exceeded",
    "ContentPolicyViolationError": "content_policy_violation",
    "ImageFetchError": "invalid_image_url",
    "NotFoundError": "not_found_error",
    "AuthenticationError": "authentication_error",
    "PermissionDeniedError": "permission_error",
    "RateLimitError": "rate_limit_error",
    "InternalServerError": "api_error",
    "ServiceUnavailableError": "service_unavailable_error",
}


class Call:
    """One adapter call: whether any request of it reached Sluice's transport (so, the provider).
    A call on a client without `MarkSent` (`marked=False`) counts as sent: unknown means the
    provider's verdict, never the client's fault."""

    def __init__(self, *, marked: bool = True) -> None:
        self.sent = not marked


CURRENT_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "sluice_litellm_call", default=None
)


class MarkSent(httpx.AsyncBaseTransport):
    """Notes on the current call that a request is going upstream. litellm runs some provider code
    in a worker thread with a copy of the context: the copy holds the same `Call`, so it is seen."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = CURRENT_CALL.get()
        if call is not None:
            call.sent = True
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _refused_input(litellm: ModuleType, exc: BaseException) -> UpstreamRequestRejected | None:
    """The translation's refusal of an input, for a failure before any request went upstream."""
    exceptions = litellm.exceptions
    if isinstance(exc, exceptions.ImageFetchError):
        return UpstreamRequestRejected(f"this model's provider cannot take this media URL here; {INLINE}")
    refused = isinstance(exc, exceptions.BadRequestError | exceptions.UnprocessableEntityError)
    seen: set[int] = set()
    cause: BaseException | None = exc
    while not refused and cause is not None and id(cause) not in seen and len(seen) < 16:
        seen.add(id(cause))
        refused = isinstance(cause, TRANSLATION_ERRORS) or type(cause) is Exception
        cause = cause.__cause__ or cause.__context__
    if not refused:
        return None
    return UpstreamRequestRejected(
        "the request cannot be translated for this model's provider (a content part, message order "
        "or tool it cannot carry); check the shapes of messages and tools"
    )


def _transport_cause(exc: BaseException) -> UpstreamError | None:
    """The transport failure behind a litellm exception, if any. litellm wraps a refused connection
    in whatever its provider module raises (an Anthropic connect failure arrives as a 500
    `InternalServerError`), so the status alone cannot tell "never reached" from "failed while
    working"; the exception chain can. The same goes for an answer litellm could not read: a broken,
    refused or capped read (an httpx request error), or a 200 it could not parse (a ValueError with
    no HTTP status error before it, which litellm reports as a made-up 422 for Gemini)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    unreadable = provider_status = False
    while cause is not None and id(cause) not in seen and len(seen) < 16:
        seen.add(id(cause))
        if isinstance(cause, NEVER_REACHED):
            why = classify(cause, Cause.CONNECT)
            return UpstreamConnectError(f"cannot connect to the upstream: {why}", cause=why)
        if isinstance(cause, httpx.TimeoutException):
            return UpstreamTimeout("the upstream did not answer in time", cause=Cause.READ_TIMEOUT)
        if isinstance(cause, AnswerRefused):
            return UpstreamProtocolError(str(cause))  # Sluice's own message
        if isinstance(cause, httpx.RequestError):  # aiohttp's failures arrive as the base class
            return UpstreamProtocolError(f"the upstream answer could not be read ({type(cause).__name__})")
        if isinstance(cause, httpx.HTTPStatusError):
            provider_status = True
        elif isinstance(cause, ValueError) and not provider_status:
            unreadable = True
        cause = cause.__cause__ or cause.__context__
    return UpstreamProtocolError("the upstream answer could not be read") if unreadable else None


def map_error(litellm: ModuleType, exc: Exception, *, sent: bool = True) -> UpstreamError:
    exceptions = litellm.exceptions
    if not sent:  # nothing reached the provider: the translation refused the input, or Sluice's setup
        refused = _refused_input(litellm, exc)
        if refused is not None:
            return refused
    transport = _transport_cause(exc)
    if transport is not None:
        return transport
    if isinstance(exc, exceptions.Timeout):
        return UpstreamTimeout("the upstream did not answer in time", cause=Cause.READ_TIMEOUT)
    if isinstance(exc, exceptions.APIConnectionError):
        # litellm also raises this for answers it could not parse: the provider may have worked.
        return UpstreamProtocolError("the upstream call failed (APIConnectionError)")
    # litellm folds several provider statuses into one class (an Anthropic 529 "overloaded" arrives
    # as a 500 InternalServerError); `provider_status_code` keeps the provider's own, when set.
    status = getattr(exc, "provider_status_code", None)
    if not isinstance(status, int):
        status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        # litellm keeps the provider's headers here; its `response` is often a stand-in without them.
        headers = getattr(exc, "litellm_response_headers", None) or getattr(
            getattr(exc, "response", None), "headers", None
        )
        wait = retry_after(headers) if isinstance(headers, Mapping) else None
        code = LITELLM_CODES.get(type(exc).__name__)
        if status == 429 and any(m in str(exc).lower() for m in QUOTA_MARKERS):
            code = "insufficient_quota"  # the marker only, never the message (it may echo input)
        return UpstreamStatusError(status, code=code, retry_after=wait)
    return UpstreamProtocolError(f"the upstream call failed ({type(exc).__name__})")
