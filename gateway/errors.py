"""Sluice's one error hierarchy and its rendering as the OpenAI (and Anthropic) error envelope.

What belongs here: `SluiceError` and its subclasses (each knows its status, type and code),
the envelope renderers (`render`; `render_anthropic` for the Messages API, whose error type is
decided by status in `ANTHROPIC_TYPES`, DESIGN.md "Three APIs, one policy"), and the exception
handlers `create_app` installs so that no response is ever FastAPI's `{"detail": ...}`, a 422,
or a traceback. Messages never echo request content.

    SluiceError
     ├── InvalidRequest (400)      invalid_json, missing_field, invalid_value,
     │    │                        forbidden_parameter, unknown_policy
     │    ├── BadRequest (4xx)     invalid_value (another 4xx Starlette raised, its status kept)
     │    └── NameTaken (409)      invalid_value (a key name already in use)
     ├── Unauthenticated (401)     invalid_api_key
     ├── ModelNotAllowed (403)     model_not_allowed
     ├── MasterKeyRequired (403)   master_key_required (an admin or metrics route, another key)
     ├── ClientKeyRequired (403)   client_key_required (a model route, the master key)
     ├── PolicyViolation (403)     no_compliant_deployment (carries error.privacy)
 │    └── FeatureNotAllowed (403) feature_not_allowed (a data path; error.privacy.feature names it)
     ├── ModelNotFound (404)       model_not_found
     ├── NotFound (404)            not_found
     ├── MethodNotAllowed (405)    method_not_allowed
     ├── RequestTimeout (408)      request_timeout (headers or body too slow; closes the connection)
     ├── RequestTooLarge (413)     request_too_large
     ├── HeadersTooLarge (431)     headers_too_large
     ├── UnsupportedMediaType (415)
     ├── RateLimited (429)         rate_limited
     ├── UpstreamFailure (502/504) upstream_unavailable, upstream_timeout
     ├── KeyStoreUnavailable (503) internal_error (the database holding keys did not answer)
     └── UnknownKeysThrottled (503) internal_error (too many unknown keys this second to check)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from gateway.core.misses import endpoint_hint
from gateway.names import AnthropicErrorType, ErrorCode, ErrorType, Header

log = logging.getLogger("sluice.errors")


class SluiceError(Exception):
    status = 500
    type = ErrorType.SERVER
    code = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type.value,
            "param": self.param,
            "code": self.code.value,
        }
        error.update(self.extra)
        return {"error": error}


class InvalidRequest(SluiceError):
    status = 400
    type = ErrorType.INVALID_REQUEST
    code = ErrorCode.INVALID_VALUE


class BadRequest(InvalidRequest):
    """Another 4xx that Starlette raised itself, with its status (400 for anything else)."""

    def __init__(self, message: str, *, status: int = 400, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status if 400 <= status < 500 else 400


class Unauthenticated(SluiceError):
    status = 401
    type = ErrorType.AUTHENTICATION
    code = ErrorCode.INVALID_API_KEY


class ModelNotAllowed(SluiceError):
    status = 403
    type = ErrorType.PERMISSION
    code = ErrorCode.MODEL_NOT_ALLOWED


class MasterKeyRequired(SluiceError):
    status = 403
    type = ErrorType.PERMISSION
    code = ErrorCode.MASTER_KEY_REQUIRED


class ClientKeyRequired(SluiceError):
    """The master key administers Sluice; it is never a key for model requests (least privilege)."""

    status = 403
    type = ErrorType.PERMISSION
    code = ErrorCode.CLIENT_KEY_REQUIRED


class PolicyViolation(SluiceError):
    status = 403
    type = ErrorType.PRIVACY
    code = ErrorCode.NO_COMPLIANT_DEPLOYMENT


class FeatureNotAllowed(PolicyViolation):
    """A request feature (DESIGN.md, Data paths) that no compliant deployment can serve;
    `error.privacy.feature` names it."""

    code = ErrorCode.FEATURE_NOT_ALLOWED


class ModelNotFound(SluiceError):
    status = 404
    type = ErrorType.INVALID_REQUEST
    code = ErrorCode.MODEL_NOT_FOUND


class NotFound(SluiceError):
    status = 404
    type = ErrorType.INVALID_REQUEST
    code = ErrorCode.NOT_FOUND


class MethodNotAllowed(SluiceError):
    status = 405
    type = ErrorType.INVALID_REQUEST
    code = ErrorCode.METHOD_NOT_ALLOWED


class RequestTimeout(SluiceError):
    """The request's headers or body did not arrive in time (slowloris).

    The answer closes the connection: the rest of a late body would otherwise keep it busy.
    """

    status = 408
    type = ErrorType.INVALID_REQUEST
    code = ErrorCode.REQUEST_TIMEOUT

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("connection", "close")


class NameTaken(InvalidRequest):
    """A name that must be unique (a key's) is already in use."""

    status = 409


class RequestTooLarge(SluiceError):
    status = 413
    type = ErrorType.INVALID_REQUEST
    code = ErrorCode.REQUEST_TOO_LARGE


class HeadersTooLarge(SluiceError):
    status = 431
    type = ErrorType.INVALID_REQUEST
    code = ErrorCode.HEADERS_TOO_LARGE


class UnsupportedMediaType(SluiceError):
    status = 415
    type = ErrorType.INVALID_REQUEST
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class RateLimited(SluiceError):
    status = 429
    type = ErrorType.RATE_LIMIT
    code = ErrorCode.RATE_LIMITED


class UpstreamFailure(SluiceError):
    status = 502
    type = ErrorType.UPSTREAM
    code = ErrorCode.UPSTREAM_UNAVAILABLE

    def __init__(self, message: str, *, timeout: bool = False, **kwargs: Any) -> None:
        super().__init__(message, code=ErrorCode.UPSTREAM_TIMEOUT if timeout else None, **kwargs)
        if timeout:
            self.status = 504


class KeyStoreUnavailable(SluiceError):
    """The database holding keys did not answer: the key cannot be checked, so it is not accepted."""

    status = 503
    type = ErrorType.SERVER
    code = ErrorCode.INTERNAL


class UnknownKeysThrottled(SluiceError):
    """Too many unknown keys this second: this one could not be checked, so it is not accepted."""

    status = 503
    type = ErrorType.SERVER
    code = ErrorCode.INTERNAL


# Anthropic's error type for each status Sluice answers (DESIGN.md "Three APIs, one policy"); any
# other 4xx is an invalid request, any other 5xx an API error.
ANTHROPIC_TYPES: dict[int, AnthropicErrorType] = {
    400: AnthropicErrorType.INVALID_REQUEST,
    401: AnthropicErrorType.AUTHENTICATION,
    403: AnthropicErrorType.PERMISSION,
    404: AnthropicErrorType.NOT_FOUND,
    413: AnthropicErrorType.REQUEST_TOO_LARGE,
    429: AnthropicErrorType.RATE_LIMIT,
    502: AnthropicErrorType.API,
    504: AnthropicErrorType.API,
    529: AnthropicErrorType.OVERLOADED,
}


def anthropic_type(status: int) -> AnthropicErrorType:
    found = ANTHROPIC_TYPES.get(status)
    if found is not None:
        return found
    return AnthropicErrorType.INVALID_REQUEST if status < 500 else AnthropicErrorType.API


def anthropic_body(error: SluiceError) -> dict[str, Any]:
    """`{"type": "error", "error": {"type", "message", "code", ...}}`: Anthropic's envelope, with
    Sluice's code, param and extensions (`privacy`) inside `error`."""
    inner: dict[str, Any] = {
        "type": anthropic_type(error.status).value,
        "message": error.message,
        "code": error.code.value,
    }
    if error.param is not None:
        inner["param"] = error.param
    inner.update(error.extra)
    return {"type": "error", "error": inner}


def _respond(
    error: SluiceError, body: dict[str, Any], request_id: str | None, headers: Mapping[str, str] | None
) -> Response:
    merged = {**error.headers, **(headers or {})}
    if request_id:
        merged[Header.REQUEST_ID] = request_id
    return Response(
        orjson.dumps(body), status_code=error.status, headers=merged, media_type="application/json"
    )


def render(
    error: SluiceError, *, request_id: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    return _respond(error, error.body(), request_id, headers)


def render_anthropic(
    error: SluiceError, *, request_id: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """`error` in Anthropic's envelope, for the Messages API (and `GET /v1/models` asked by an
    Anthropic client); status and headers as `render`'s."""
    return _respond(error, anthropic_body(error), request_id, headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _location(loc: tuple[int | str, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def validation_error(exc: RequestValidationError) -> InvalidRequest:
    """FastAPI's 422 as a 400 naming the first bad field, without echoing the input."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "type": "value_error", "msg": "invalid request"}
    param = _location(tuple(first.get("loc", ())))
    if first.get("type") == "missing":
        return InvalidRequest(f"missing required field: {param}", code=ErrorCode.MISSING_FIELD, param=param)
    if first.get("type") == "json_invalid":
        return InvalidRequest("the request body is not valid JSON", code=ErrorCode.INVALID_JSON)
    message = str(first.get("msg", "invalid value")).split("\n")[0][:200]
    return InvalidRequest(f"invalid value for {param or 'request'}: {message}", param=param)


def install_handlers(app: FastAPI, *, endpoints: Sequence[tuple[str, str]] = ()) -> None:
    """`endpoints`: (method, path) of the public API, which a 404 lists (`gateway/core/misses.py`)."""

    async def sluice_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SluiceError)
        return render(exc, request_id=_request_id(request))

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return render(validation_error(exc), request_id=_request_id(request))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: SluiceError
        if exc.status_code == 404:
            hint = endpoint_hint(request.method, request.url.path, endpoints)
            error = NotFound(f"no such endpoint; {hint}")
        elif exc.status_code == 405:
            error = MethodNotAllowed("method not allowed on this endpoint")
        else:
            error = BadRequest("bad request", status=exc.status_code)
        return render(error, request_id=_request_id(request))

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client left (or the protocol's body deadline cut it off, and answered 408 itself)
        # while a route read its body: nobody to answer, and nothing went wrong in Sluice. The hot
        # path handles the same case for chat and embeddings.
        assert isinstance(exc, ClientDisconnect)
        log.debug("client disconnected before its request body arrived")
        gone = RequestTimeout("the request body did not arrive")
        return render(gone, request_id=_request_id(request))

    async def unexpected(request: Request, exc: Exception) -> Response:
        # The type only: the message of an arbitrary exception may carry request content.
        log.error("unhandled error %s on %s", type(exc).__name__, request.url.path)
        return render(SluiceError("internal error"), request_id=_request_id(request))

    app.add_exception_handler(SluiceError, sluice_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected)
