"""Reading requests safely: body size limit, content type, request ids.

What belongs here: small helpers the routers share to read a request before parsing: the body
cap (413 before reading past the limit, chunked bodies included), the JSON content-type check
(415), and the request id.
"""

from __future__ import annotations

import uuid

from fastapi import Request

from gateway.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType

JSON_TYPES = ("application/json", "")
# Envoy's edge defaults: at most 100 request headers, about 60 KiB of them (uvicorn sets no limit).
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
HEADERS_LIMIT = f"at most {MAX_HEADERS} request headers and {MAX_HEADER_BYTES} bytes of them"


def new_request_id(request: Request) -> str:
    request_id = uuid.uuid4().hex
    request.state.request_id = request_id
    return request_id


def declared_size(request: Request, limit: int) -> int:
    """The body size the request announces (`Content-Length`), at most `limit`; `limit` when it
    announces none (a chunked body) or something that is not a size (`read_body` refuses that)."""
    declared = request.headers.get("content-length", "")
    return min(int(declared), limit) if declared.isdigit() else limit


async def read_body(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise UnsupportedMediaType("send the request body as application/json")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("invalid Content-Length")
        if int(declared) > limit:
            raise RequestTooLarge(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
