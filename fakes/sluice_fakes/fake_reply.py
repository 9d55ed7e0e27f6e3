"""Value objects shared by the fake upstream's wire builders and its sender.

What belongs here: `Call` (a routed request: wire, operation, model, parsed body, faults),
`Reply` (what to send: status, headers, a body or a list of stream frames), SSE frame encoders and
each wire's real error-body shape.  Pure data and encoding, no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Final, Literal

import orjson

from sluice_fakes.fake_directives import Faults
from sluice_fakes.fake_http import chunk, last_chunk

Wire = Literal["openai", "anthropic", "gemini"]
JSON_TYPE: Final = "application/json"
SSE_TYPE: Final = "text/event-stream"
OPENAI_DONE: Final = b"data: [DONE]\n\n"


@dataclasses.dataclass(slots=True)
class Call:
    """One routed wire request, parsed once."""

    wire: Wire
    op: str
    model: str
    body: Mapping[str, Any]
    raw: bytes
    headers: Mapping[str, str]
    query: str
    stream: bool
    faults: Faults


@dataclasses.dataclass(frozen=True)
class Reply:
    """A response to send: ``frames`` (one per stream event, sent chunked) or a plain ``body``."""

    status: int = 200
    content_type: str = JSON_TYPE
    body: bytes = b""
    frames: tuple[bytes, ...] | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @functools.cached_property
    def chunked_blob(self) -> bytes:
        """All frames in HTTP chunked framing plus the last chunk, for the one-write fast path."""
        frames = self.frames or ()
        return b"".join(chunk(f) for f in frames if f) + last_chunk()


def json_reply(value: object, status: int = 200) -> Reply:
    return Reply(status=status, body=orjson.dumps(value))


def sse(value: object) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


def sse_event(name: str, value: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(value) + b"\n\n"


def sse_crlf(value: object) -> bytes:
    """Gemini frames its SSE events with CRLF pairs."""
    return b"data: " + orjson.dumps(value) + b"\r\n\r\n"


_OPENAI_ERRORS: Final[Mapping[int, tuple[str, str | None]]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}
_ANTHROPIC_ERRORS: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GEMINI_STATUSES: Final[Mapping[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_value(wire: Wire, status: int, message: str) -> dict[str, Any]:
    """The error body each provider really sends for ``status``."""
    if wire == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if wire == "gemini":
        state = _GEMINI_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": state}}
    default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    kind, code = _OPENAI_ERRORS.get(status, default)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_reply(wire: Wire, status: int, message: str) -> Reply:
    return Reply(status=status, body=orjson.dumps(error_value(wire, status, message)))


_STREAM_ERROR_STATUS: Final[Mapping[str, int]] = {"openai": 500, "anthropic": 529, "gemini": 503}


def stream_error_frame(wire: Wire, op: str = "chat") -> bytes:
    """The in-band error event a provider sends when it fails after the stream started."""
    status = _STREAM_ERROR_STATUS[wire]
    value = error_value(wire, status, f"Simulated mid-stream error (HTTP {status}).")
    if op == "responses":  # OpenAI's Responses API: an `error` event of its own shape
        error = value["error"]
        event = {"type": "error", "code": "server_error", "message": error["message"], "param": None}
        return sse_event("error", event)
    if wire == "anthropic":
        return sse_event("error", value)
    return sse_crlf(value) if wire == "gemini" else sse(value)
