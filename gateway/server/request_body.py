"""Reading requests safely: body size limit, content type, request ids.

What belongs here: small helpers the API handlers share to read a request before parsing: the body
cap (413 before reading past the limit, chunked bodies included; the answer closes the connection),
the JSON content-type check and the refusal of any Content-Encoding Sluice does not decode (415),
the request id, and `BodyDeadline`, the body deadline the HTTP protocol hands a route through the
ASGI scope. Headers that are one value (Content-Type, Content-Length) are refused when
repeated (400), never read from their first line only; a list header (Content-Encoding) is read
from every line (RFC 9110).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi import Request

from gateway.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType
from gateway.names import ErrorCode

JSON_TYPES = ("application/json", "")
# Envoy's edge defaults: at most 100 request headers, about 60 KiB of them (uvicorn sets no limit).
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
HEADERS_LIMIT = f"at most {MAX_HEADERS} request headers and {MAX_HEADER_BYTES} bytes of them"


# The ASGI scope extension under which the protocol puts the request's `BodyDeadline`.
BODY_DEADLINE = "sluice.body_deadline"


@dataclass
class BodyDeadline:
    """The one body deadline of a request: `SLUICE_BODY_TIMEOUT` from its headers' end, timed by
    the HTTP protocol (`gateway.server.uvicorn_deadlines`), which puts this object in the scope's
    extensions. A route that answers the deadline itself (the edge's pipeline routes, with the
    request id) sets `claimed`; when the deadline passes with the body incomplete, the protocol
    sets `expired` and wakes the route's pending receive. Unclaimed, the protocol answers the 408."""

    seconds: float
    claimed: bool = False
    expired: bool = False


def new_request_id(request: Request) -> str:
    request_id = uuid.uuid4().hex
    request.state.request_id = request_id
    return request_id


def _single(request: Request, name: str) -> str | None:
    """The value of a header that is one value; repeated lines are refused, never chosen between."""
    lines = request.headers.getlist(name)
    if len(lines) > 1:
        raise InvalidRequest(f"the request has more than one {name} header", code=ErrorCode.MALFORMED_REQUEST)
    return lines[0] if lines else None


def _too_large(limit: int) -> RequestTooLarge:
    # The rest of the body is not wanted: the answer closes the connection instead of reading on.
    return RequestTooLarge(f"the request body is larger than {limit} bytes", headers={"connection": "close"})


def declared_size(request: Request, limit: int) -> int:
    """The body size the request announces (`Content-Length`), at most `limit`; `limit` when it
    announces none (a chunked body) or something that is not a size (`read_body` refuses that)."""
    declared = request.headers.get("content-length", "")
    return min(int(declared), limit) if declared.isdigit() else limit


async def read_body(request: Request, limit: int) -> bytes:
    content_type = (_single(request, "content-type") or "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise UnsupportedMediaType("send the request body as application/json")
    codings = [
        c.strip().lower() for line in request.headers.getlist("content-encoding") for c in line.split(",")
    ]
    if any(coding not in ("", "identity") for coding in codings):
        raise UnsupportedMediaType(
            "Sluice does not decode a Content-Encoding: send the JSON body uncompressed"
        )
    declared = _single(request, "content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("invalid Content-Length")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
