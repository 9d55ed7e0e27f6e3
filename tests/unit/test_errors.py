"""gateway/errors.py: each error's status, type and code; the envelope; FastAPI's errors re-rendered."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from gateway import errors
from gateway.errors import (
    BadRequest,
    InvalidRequest,
    SluiceError,
    UpstreamFailure,
    install_handlers,
    render,
    validation_error,
)
from gateway.names import ErrorCode, ErrorType, Header

# DESIGN.md's errors table (and errors.py's tree): class -> (status, type, code).
TABLE: dict[type[SluiceError], tuple[int, ErrorType, ErrorCode]] = {
    errors.InvalidRequest: (400, ErrorType.INVALID_REQUEST, ErrorCode.INVALID_VALUE),
    errors.NameTaken: (409, ErrorType.INVALID_REQUEST, ErrorCode.INVALID_VALUE),
    errors.Unauthenticated: (401, ErrorType.AUTHENTICATION, ErrorCode.INVALID_API_KEY),
    errors.ModelNotAllowed: (403, ErrorType.PERMISSION, ErrorCode.MODEL_NOT_ALLOWED),
    errors.MasterKeyRequired: (403, ErrorType.PERMISSION, ErrorCode.MASTER_KEY_REQUIRED),
    errors.ClientKeyRequired: (403, ErrorType.PERMISSION, ErrorCode.CLIENT_KEY_REQUIRED),
    errors.PolicyViolation: (403, ErrorType.PRIVACY, ErrorCode.NO_COMPLIANT_DEPLOYMENT),
    errors.FeatureNotAllowed: (403, ErrorType.PRIVACY, ErrorCode.FEATURE_NOT_ALLOWED),
    errors.ModelNotFound: (404, ErrorType.INVALID_REQUEST, ErrorCode.MODEL_NOT_FOUND),
    errors.NotFound: (404, ErrorType.INVALID_REQUEST, ErrorCode.NOT_FOUND),
    errors.MethodNotAllowed: (405, ErrorType.INVALID_REQUEST, ErrorCode.METHOD_NOT_ALLOWED),
    errors.RequestTimeout: (408, ErrorType.INVALID_REQUEST, ErrorCode.REQUEST_TIMEOUT),
    errors.RequestTooLarge: (413, ErrorType.INVALID_REQUEST, ErrorCode.REQUEST_TOO_LARGE),
    errors.HeadersTooLarge: (431, ErrorType.INVALID_REQUEST, ErrorCode.HEADERS_TOO_LARGE),
    errors.UnsupportedMediaType: (415, ErrorType.INVALID_REQUEST, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    errors.RateLimited: (429, ErrorType.RATE_LIMIT, ErrorCode.RATE_LIMITED),
    errors.UpstreamFailure: (502, ErrorType.UPSTREAM, ErrorCode.UPSTREAM_UNAVAILABLE),
    errors.KeyStoreUnavailable: (503, ErrorType.SERVER, ErrorCode.INTERNAL),
    errors.UnknownKeysThrottled: (503, ErrorType.SERVER, ErrorCode.INTERNAL),
}


def every_error_class() -> set[type[SluiceError]]:
    found: set[type[SluiceError]] = set()
    todo = [SluiceError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__ == errors.__name__:
                found.add(sub)
                todo.append(sub)
    return found


def test_the_table_covers_every_error_class() -> None:
    assert every_error_class() - {BadRequest} == set(TABLE)


@pytest.mark.parametrize("cls", list(TABLE), ids=lambda c: c.__name__)
def test_each_error_has_its_status_type_and_code(cls: type[SluiceError]) -> None:
    error = cls("something went wrong")
    assert (error.status, error.type, error.code) == TABLE[cls]
    assert error.body() == {
        "error": {
            "message": "something went wrong",
            "type": TABLE[cls][1].value,
            "param": None,
            "code": TABLE[cls][2].value,
        }
    }


def test_code_param_headers_and_extra_ride_along() -> None:
    error = InvalidRequest(
        "bad",
        code=ErrorCode.FORBIDDEN_PARAMETER,
        param="api_base",
        headers={"x-a": "1"},
        extra={"privacy": {}},
    )
    assert error.body()["error"] == {
        "message": "bad",
        "type": "invalid_request_error",
        "param": "api_base",
        "code": "forbidden_parameter",
        "privacy": {},
    }
    assert error.headers == {"x-a": "1"}
    assert InvalidRequest("bad").code is ErrorCode.INVALID_VALUE  # the class default, untouched


def test_an_upstream_timeout_is_a_504() -> None:
    timeout = UpstreamFailure("slow", timeout=True)
    assert (timeout.status, timeout.code) == (504, ErrorCode.UPSTREAM_TIMEOUT)
    assert UpstreamFailure("down").status == 502  # the class keeps its own status
    assert BadRequest("odd", status=411).status == 411


def test_render_writes_the_envelope_with_the_request_id_and_headers() -> None:
    error = errors.RateLimited("slow down", headers={"retry-after": "2"})
    response = render(error, request_id="req-1", headers={"x-extra": "y"})
    assert response.status_code == 429
    assert response.media_type == "application/json"
    assert orjson.loads(response.body) == error.body()
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-extra"] == "y"
    assert response.headers[Header.REQUEST_ID] == "req-1"


class Item(BaseModel):
    name: str
    count: int


def validation_of(payload: Any) -> RequestValidationError:
    try:
        Item.model_validate(payload)
    except Exception as exc:  # pydantic's ValidationError, wrapped as FastAPI would
        errors_ = exc.errors()  # type: ignore[attr-defined]
        return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors_])
    raise AssertionError("the payload was valid")


def test_a_missing_field_is_missing_field() -> None:
    error = validation_error(validation_of({"count": 1}))
    assert (error.status, error.code, error.param) == (400, ErrorCode.MISSING_FIELD, "name")


def test_a_wrong_value_names_the_field_without_echoing_it() -> None:
    error = validation_error(validation_of({"name": "n", "count": "SECRET-CANARY"}))
    assert (error.code, error.param) == (ErrorCode.INVALID_VALUE, "count")
    assert "SECRET-CANARY" not in error.message


def test_invalid_json_from_fastapi_is_invalid_json() -> None:
    raw = RequestValidationError([{"type": "json_invalid", "loc": ("body", 1), "msg": "JSON decode error"}])
    assert validation_error(raw).code is ErrorCode.INVALID_JSON


async def test_the_handlers_answer_in_the_envelope_never_detail_or_traceback() -> None:
    app = FastAPI()
    install_handlers(app, endpoints=[("POST", "/v1/chat/completions")])

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("SECRET-CANARY in an exception message")

    @app.post("/items")
    async def items(item: Item) -> dict[str, str]:
        return {"name": item.name}

    @app.get("/refused")
    async def refused() -> None:
        raise errors.ModelNotAllowed("not for you")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit.test") as http:
        answers = {
            "boom": await http.get("/boom"),
            "missing": await http.post("/items", json={"count": 1}),
            "unknown": await http.get("/nowhere"),
            "method": await http.get("/items"),
            "refused": await http.get("/refused"),
        }
    expected = {
        "boom": (500, "internal_error"),
        "missing": (400, "missing_field"),
        "unknown": (404, "not_found"),
        "method": (405, "method_not_allowed"),
        "refused": (403, "model_not_allowed"),
    }
    for name, response in answers.items():
        body = response.json()
        assert set(body) == {"error"}, (name, body)
        assert (response.status_code, body["error"]["code"]) == expected[name], name
    assert "SECRET-CANARY" not in answers["boom"].text
    assert "/v1/chat/completions" in answers["unknown"].json()["error"]["message"]  # the hint
